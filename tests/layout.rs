//! The house rules of `src/` (docs/design.md, "The map"), checked on the
//! source text:
//!
//! - the core (`src/core`) imports neither wing; the machine wing
//!   (`src/activation`) and the issuer wing (`src/issuer`) never import each
//!   other;
//! - no import circle between files, direct or through others (a `mod.rs`
//!   facade re-exports its children; a child that reached its siblings
//!   through the facade would close a circle, so children name the sibling);
//! - library code names modules, not the crate root's re-exports;
//! - no string in the library names a command-line flag (`--days`) or a
//!   command to run (`` `tka trust add` ``): flags and hints belong to
//!   `src/bin/tka`.
//!
//! Imports are read from `use` items (with `{...}` groups) and from inline
//! paths (`crate::a::b::f()`), and resolved to the file of the deepest module
//! they name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

struct SourceFile {
    /// Path relative to the crate root, e.g. `src/core/keys.rs`.
    rel: String,
    /// Module path, e.g. `["core", "keys"]`; empty for lib.rs.
    module: Vec<String>,
    text: String,
}

fn library_files() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut stack = vec![root.join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path != root.join("src/bin") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                let module = module_of(path.strip_prefix(root.join("src")).unwrap());
                let text = std::fs::read_to_string(&path).unwrap();
                out.push(SourceFile { rel, module, text });
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    out
}

fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// Removes comments and the contents of string and char literals (keeping
/// the quotes), so braces and paths are only seen in code.
fn strip(text: &str, keep_strings: bool) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == '/' && b.get(i + 1) == Some(&'/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && b.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == '*' && b[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r'
            && (b.get(i + 1) == Some(&'"') || b.get(i + 1) == Some(&'#'))
            && (i == 0 || !b[i - 1].is_alphanumeric() && b[i - 1] != '_')
        {
            // raw string r"..." or r#"..."#
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            out.push('"');
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                if keep_strings {
                    out.push(b[j]);
                }
                j += 1;
            }
            out.push('"');
            i = j;
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    if keep_strings {
                        out.push(b[i]);
                    }
                    i += 1;
                }
                if keep_strings && i < b.len() {
                    out.push(b[i]);
                }
                i += 1;
            }
            out.push('"');
            i += 1;
        } else if c == '\'' {
            // char literal or lifetime
            if b.get(i + 2) == Some(&'\'') {
                out.push_str("' '");
                i += 3;
            } else if b.get(i + 1) == Some(&'\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                out.push_str("' '");
                i = j + 1;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into full paths.
fn expand_use(tree: &str) -> Vec<String> {
    // Drop renames (`x as y`), then whitespace.
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut kept = String::new();
    let mut i = 0;
    while i < words.len() {
        if words[i] == "as" && i + 1 < words.len() {
            // keep any punctuation glued to the new name (`y,` or `y}`)
            kept.extend(words[i + 1].chars().filter(|c| !c.is_alphanumeric() && *c != '_'));
            i += 2;
        } else {
            kept.push_str(words[i]);
            i += 1;
        }
    }
    let tree = kept;
    fn go(prefix: &str, t: &str, out: &mut Vec<String>) {
        if let Some(open) = t.find('{') {
            let head = &t[..open];
            let inner = &t[open + 1..t.len() - 1];
            let mut depth = 0;
            let mut start = 0;
            let base = format!("{prefix}{head}");
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        go(&base, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            go(&base, &inner[start..], out);
        } else if !t.is_empty() {
            out.push(format!("{prefix}{t}"));
        }
    }
    let mut out = Vec::new();
    go("", &tree, &mut out);
    out.into_iter().map(|p| p.trim_end_matches("::self").to_string()).collect()
}

struct Tree {
    /// Module path → file.
    files: BTreeMap<Vec<String>, String>,
}

impl Tree {
    fn has(&self, m: &[String]) -> bool {
        self.files.contains_key(m)
    }
    /// The file of the deepest module that `segments` (absolute) names.
    fn resolve(&self, segments: &[String]) -> Option<String> {
        let mut cur: Vec<String> = Vec::new();
        for s in segments {
            let mut next = cur.clone();
            next.push(s.clone());
            if self.has(&next) {
                cur = next;
            } else {
                break;
            }
        }
        self.files.get(&cur).cloned()
    }
}

/// Module paths each inline `mod x {` opens at a byte offset: used to
/// resolve `super` inside `mod tests { ... }`.
fn inline_depth_at(code: &str, offset: usize) -> usize {
    let before = &code[..offset];
    let mut stack: Vec<bool> = Vec::new(); // true = brace opened by an inline mod
    let bytes = before.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => {
                let head = before[..i].trim_end();
                let last_line = head.rsplit(['\n', ';', '}', '{']).next().unwrap_or("");
                let words: Vec<&str> = last_line.split_whitespace().collect();
                let is_mod = words.len() >= 2 && words[words.len() - 2] == "mod";
                stack.push(is_mod);
            }
            b'}' => {
                stack.pop();
            }
            _ => {}
        }
        i += 1;
    }
    stack.iter().filter(|m| **m).count()
}

fn imports(f: &SourceFile, tree: &Tree) -> BTreeSet<String> {
    let code = strip(&f.text, false);
    let mut paths: Vec<(usize, String)> = Vec::new();
    // `use` items
    let mut search = 0;
    while let Some(pos) = code[search..].find("use ") {
        let at = search + pos;
        search = at + 4;
        let prev = code[..at].chars().last();
        if prev.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = code[at..].find(';') else { break };
        let body = &code[at + 4..at + end];
        if body.contains('(') || body.contains('=') {
            continue;
        }
        for p in expand_use(body) {
            paths.push((at, p));
        }
    }
    // inline paths starting at crate:: or super::
    for key in ["crate::", "super::"] {
        let mut s = 0;
        while let Some(pos) = code[s..].find(key) {
            let at = s + pos;
            s = at + key.len();
            if code[..at].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String =
                code[at..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            paths.push((at, path));
        }
    }
    let mut out = BTreeSet::new();
    for (at, p) in paths {
        let segs: Vec<String> = p.split("::").filter(|s| !s.is_empty() && *s != "*").map(String::from).collect();
        if segs.is_empty() {
            continue;
        }
        let depth = inline_depth_at(&code, at);
        let abs: Vec<String> = match segs[0].as_str() {
            "crate" => segs[1..].to_vec(),
            "super" | "self" => {
                let mut base = f.module.clone();
                let mut inline = depth;
                let mut rest = &segs[..];
                while let Some(first) = rest.first() {
                    match first.as_str() {
                        "super" if inline > 0 => inline -= 1,
                        "super" => {
                            base.pop();
                        }
                        "self" => {}
                        _ => break,
                    }
                    rest = &rest[1..];
                }
                if inline > 0 {
                    continue; // inside an inline module of this file
                }
                base.extend(rest.iter().cloned());
                base
            }
            first => {
                // a relative path naming a child module of this one
                let mut child = f.module.clone();
                child.push(first.to_string());
                if depth == 0 && tree.has(&child) {
                    let mut base = f.module.clone();
                    base.extend(segs.iter().cloned());
                    base
                } else {
                    continue;
                }
            }
        };
        if let Some(target) = tree.resolve(&abs) {
            if target != f.rel {
                out.insert(target);
            }
        }
    }
    out
}

fn graph() -> (Vec<SourceFile>, BTreeMap<String, BTreeSet<String>>) {
    let files = library_files();
    let tree = Tree { files: files.iter().map(|f| (f.module.clone(), f.rel.clone())).collect() };
    let edges = files.iter().map(|f| (f.rel.clone(), imports(f, &tree))).collect();
    (files, edges)
}

fn wing(rel: &str) -> &'static str {
    if rel.starts_with("src/core/") {
        "core"
    } else if rel.starts_with("src/activation/") {
        "machine wing"
    } else if rel.starts_with("src/issuer/") {
        "issuer wing"
    } else {
        "root"
    }
}

#[test]
fn the_layout_reader_sees_imports() {
    // The checks below are only as good as the reader: it must find the
    // imports it is meant to police.
    let (_, edges) = graph();
    let verify = &edges["src/core/verify.rs"];
    assert!(verify.contains("src/core/jws.rs"), "{verify:?}");
    assert!(verify.contains("src/core/machine/mod.rs"), "{verify:?}");
    let activate = &edges["src/activation/activate.rs"];
    assert!(activate.contains("src/activation/store/mod.rs"), "{activate:?}");
    // a facade re-exports its children
    assert!(edges["src/activation/store/mod.rs"].contains("src/activation/store/lock.rs"));
    assert_eq!(
        expand_use("crate::a::{b, c::{d, e as f}, g::self}"),
        ["crate::a::b", "crate::a::c::d", "crate::a::c::e", "crate::a::g"]
    );
}

#[test]
fn the_core_imports_no_wing_and_the_wings_not_each_other() {
    let (_, edges) = graph();
    let mut bad = Vec::new();
    for (from, tos) in &edges {
        for to in tos {
            let (a, b) = (wing(from), wing(to));
            let allowed = a == b || b == "core" || a == "root";
            if !allowed {
                bad.push(format!("{from} ({a}) imports {to} ({b})"));
            }
        }
    }
    assert!(bad.is_empty(), "imports across the wings:\n{}", bad.join("\n"));
}

#[test]
fn library_code_names_modules_not_the_crate_root() {
    let (_, edges) = graph();
    let bad: Vec<String> = edges
        .iter()
        .filter(|(from, tos)| from.as_str() != "src/lib.rs" && tos.contains("src/lib.rs"))
        .map(|(f, _)| f.clone())
        .collect();
    assert!(
        bad.is_empty(),
        "these files import through the crate root's re-exports (name the module instead): {bad:?}"
    );
}

#[test]
fn no_import_circles() {
    let (_, edges) = graph();
    // Tarjan's strongly connected components.
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        sccs: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        if let Some(tos) = t.edges.get(v) {
            for w in tos {
                let w = w.as_str();
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let l = t.low[w].min(t.low[v]);
                    t.low.insert(v, l);
                } else if t.on.contains(w) {
                    let l = t.index[w].min(t.low[v]);
                    t.low.insert(v, l);
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w);
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.sccs.push(scc);
            }
        }
    }
    let mut t = T {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        sccs: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    let report: Vec<String> = t
        .sccs
        .iter()
        .map(|scc| {
            let inner: Vec<String> = scc
                .iter()
                .flat_map(|a| {
                    edges[*a].iter().filter(|b| scc.contains(&b.as_str())).map(move |b| format!("  {a} -> {b}"))
                })
                .collect();
            format!("circle of {} files:\n{}", scc.len(), inner.join("\n"))
        })
        .collect();
    assert!(report.is_empty(), "{}", report.join("\n"));
}

#[test]
fn no_library_string_names_a_flag() {
    let mut bad = Vec::new();
    for f in library_files() {
        let code = strip(&f.text, true);
        for (n, line) in code.lines().enumerate() {
            let mut rest = line;
            while let Some(start) = rest.find('"') {
                let after = &rest[start + 1..];
                let Some(end) = after.find('"') else { break };
                let lit = &after[..end];
                let names_flag = lit
                    .match_indices("--")
                    .any(|(pos, _)| lit[pos + 2..].chars().next().is_some_and(|c| c.is_ascii_lowercase()));
                // A command to run (`tka trust add ...`) is a hint too.
                if names_flag || lit.contains("`tka ") {
                    bad.push(format!("{}:{}: \"{lit}\"", f.rel, n + 1));
                }
                rest = &after[end + 1..];
            }
        }
    }
    assert!(
        bad.is_empty(),
        "library strings that name a flag (flags and hints belong to src/bin/tka):\n{}",
        bad.join("\n")
    );
}
