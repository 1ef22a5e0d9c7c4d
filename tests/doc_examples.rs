//! Every command example in README.md and docs/*.md is run, read from the
//! files themselves, so an edited example is an example tested.
//!
//! The rule for the documentation:
//!
//! - **Every fenced block carries a tag.** ```` ```sh ```` is an example and
//!   runs here; ```` ```sh norun ```` is shell that cannot run in a test
//!   (hardware tokens, `cargo`, release builds, timing, scripts over a
//!   release binary) and is counted; anything else (`text` for diagrams and
//!   output, `json`, `toml`, `rust,ignore`) is not shell. `bash`, `shell`,
//!   `console`, `zsh` and an untagged block are refused, so no example is
//!   skipped silently. [`EXPECTED`] lists, per file, how many blocks run and
//!   how many are `norun`: adding either means saying so there.
//! - **A `sh` block** runs in a fresh sandbox (below), one command at a time
//!   (`sh -c`, lines ending in `\` joined, blank and `#` lines skipped), in
//!   order, so later commands see what earlier ones made; no `export` or
//!   variable carries from one line to the next. Each command must exit 0,
//!   or N when the line carries a `# exit N` comment.
//! - **The sandbox** every `sh` block starts from: `tka` on `PATH` is the
//!   binary under test; the working directory is a temporary directory
//!   holding `root.pem` (the root of the issuer home, already trusted by the
//!   store), `request.txt` (this machine's activation request for
//!   `example-pro`, text form) and `reqs/` (three requests: this
//!   machine's and two others);
//!   `~/tka-issuer` is that issuer home (`HOME` is the sandbox's);
//!   `TKA_STORE` the machine's store, `TKA_PASSPHRASE` the keys' passphrase,
//!   the machine a fake one (`TKA_SYSROOT`, as in tests/sandbox). Examples
//!   use these names and no others for what they need to exist.
//! - **Inline commands** (a code span starting with `tka `), and the `tka`
//!   commands of `sh norun` blocks, are synopses:
//!   their subcommand words (lowercase, `a|b` for alternatives) must name a
//!   command (`tka WORDS --help` exits 0) and every `--flag` in the span must
//!   be one that command's help lists.

mod sandbox;
mod tools;

use sandbox::{Sandbox, BIN, PRODUCT};
use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// Per documentation file: (`sh` blocks run, `sh norun` blocks counted).
const EXPECTED: &[(&str, usize, usize)] = &[
    ("README.md", 2, 2),
    ("docs/agent.md", 0, 3),
    ("docs/benchmarks.md", 0, 4),
    ("docs/design.md", 0, 0),
    ("docs/host.md", 0, 6),
    ("docs/json.md", 0, 0),
    ("docs/ledger.md", 0, 0),
    ("docs/machine-identity.md", 0, 0),
    ("docs/online.md", 0, 2),
    ("docs/pkcs11.md", 0, 6),
    ("docs/rotation.md", 0, 0),
    ("docs/threat-model.md", 0, 0),
    ("docs/verification.md", 0, 0),
];

/// Tags that would be shell under another name: refused.
const SHELL_ALIASES: &[&str] = &["bash", "shell", "console", "zsh", "shell-session"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and docs/*.md, relative to the crate root, sorted.
fn doc_files() -> Vec<String> {
    let mut files = vec!["README.md".to_string()];
    let mut docs: Vec<String> = fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

struct Block {
    /// The info string after the opening fence.
    tag: String,
    /// 1-based line of the opening fence.
    line: usize,
    /// (1-based line, text without the fence's indentation).
    body: Vec<(usize, String)>,
}

/// The fenced blocks of a Markdown text, and the text outside them (fenced
/// lines blanked, so line numbers stay).
fn split(text: &str) -> (Vec<Block>, String) {
    let mut blocks = Vec::new();
    let mut outside = String::new();
    let mut open: Option<(usize, Block)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match open.take() {
            None if trimmed.starts_with("```") => {
                let tag = trimmed.trim_start_matches('`').trim().to_string();
                open = Some((indent, Block { tag, line: i + 1, body: Vec::new() }));
                outside.push('\n');
            }
            None => {
                outside.push_str(line);
                outside.push('\n');
            }
            Some((_, block)) if trimmed.trim_end() == "```" => {
                blocks.push(block);
                outside.push('\n');
            }
            Some((ind, mut block)) => {
                let cut = line.char_indices().take_while(|&(j, c)| j < ind && c == ' ').count();
                block.body.push((i + 1, line[cut..].to_string()));
                open = Some((ind, block));
                outside.push('\n');
            }
        }
    }
    assert!(open.is_none(), "an unclosed fenced block");
    (blocks, outside)
}

/// The commands of a `sh` block: (line, command), continuations joined.
fn commands(block: &Block) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (n, line) in &block.body {
        let (start, mut cmd) = pending.take().unwrap_or((*n, String::new()));
        let t = line.trim();
        if cmd.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cmd.push_str(head);
            cmd.push(' ');
            pending = Some((start, cmd));
        } else {
            cmd.push_str(t);
            out.push((start, cmd));
        }
    }
    assert!(pending.is_none(), "block at line {}: a continuation runs off its end", block.line);
    out
}

/// The exit code a command's `# exit N` comment names, else 0.
fn expected_exit(cmd: &str) -> i32 {
    match cmd.split_once("# exit ") {
        Some((_, rest)) => {
            let n: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            n.parse().unwrap_or_else(|_| panic!("`# exit` without a number in {cmd:?}"))
        }
        None => 0,
    }
}

/// The sandbox every `sh` block starts from (see the module documentation).
fn prepared() -> Sandbox {
    let s = Sandbox::new();
    s.ok(&[
        "issuer",
        "init",
        "--org",
        "tka",
        "--home",
        "user-home/tka-issuer",
        "--root-bits",
        "2048",
        "--ca-bits",
        "2048",
    ]);
    fs::copy(s.path("user-home/tka-issuer/root.pem"), s.path("root.pem")).unwrap();
    s.ok(&["trust", "add", "root.pem"]);
    s.ok(&["request", "create", "--product", PRODUCT, "--text", "--out", "request.txt"]);
    fs::create_dir(s.path("reqs")).unwrap();
    fs::copy(s.path("request.txt"), s.path("reqs/this-machine.txt")).unwrap();
    s.ok(&["request", "generate-test", "--product", PRODUCT, "--count", "2", "--out", "others.txt"]);
    for (i, line) in s.read("others.txt").lines().enumerate() {
        s.write(&format!("reqs/other-{i}.txt"), format!("{line}\n"));
    }
    fs::remove_file(s.path("others.txt")).unwrap();
    let bin = s.path(".bin");
    fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("tka")).unwrap();
    s
}

/// Runs one `sh` block in a fresh sandbox; returns how many commands ran,
/// or what the first command that did not exit as the doc implies printed.
fn run_block(file: &str, block: &Block) -> Result<usize, String> {
    let s = prepared();
    let path = format!("{}:{}", s.path(".bin").display(), std::env::var("PATH").unwrap_or_default());
    let cmds = commands(block);
    assert!(!cmds.is_empty(), "{file}:{}: a `sh` block without a command", block.line);
    for (line, cmd) in &cmds {
        let r = sandbox::run(s.command("sh", &["-c", cmd]).env("PATH", &path));
        let want = expected_exit(cmd);
        if r.0 != want {
            return Err(format!(
                "{file}:{line}: `{cmd}` exited {} (the doc implies {want})\nstdout: {}\nstderr: {}",
                r.0, r.1, r.2
            ));
        }
    }
    Ok(cmds.len())
}

#[test]
fn every_fenced_block_is_tagged_and_every_sh_block_runs() {
    let mut counted = BTreeMap::new();
    for file in doc_files() {
        let text = fs::read_to_string(root().join(&file)).unwrap();
        let (blocks, _) = split(&text);
        let (mut run, mut norun, mut commands_run) = (0, 0, 0);
        for block in &blocks {
            let words: Vec<&str> = block.tag.split_whitespace().collect();
            assert!(
                !words.is_empty(),
                "{file}:{}: an untagged fenced block (tag it sh, `sh norun` or text)",
                block.line
            );
            let lang = words[0].split(',').next().unwrap();
            assert!(
                !SHELL_ALIASES.contains(&lang),
                "{file}:{}: shell tagged {lang:?}: use sh or `sh norun`",
                block.line
            );
            match (lang, &words[1..]) {
                ("sh", []) => {
                    run += 1;
                    commands_run += run_block(&file, block).unwrap_or_else(|e| panic!("{e}"));
                }
                ("sh", ["norun"]) => norun += 1,
                ("sh", other) => panic!("{file}:{}: unknown sh tag {other:?}", block.line),
                _ => {}
            }
        }
        println!("{file}: {run} sh blocks run ({commands_run} commands), {norun} sh norun blocks");
        counted.insert(file, (run, norun));
    }
    let expected: BTreeMap<String, (usize, usize)> =
        EXPECTED.iter().map(|&(f, r, n)| (f.to_string(), (r, n))).collect();
    assert_eq!(counted, expected, "blocks per file (run, norun): update EXPECTED when adding a block");
}

/// The `tka ...` code spans outside fenced blocks, with their line, pipes
/// unescaped and line breaks inside a span made spaces.
fn inline_commands(outside: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut rest = outside;
    let mut line = 1;
    while let Some(start) = rest.find('`') {
        line += rest[..start].matches('\n').count();
        let after = &rest[start + 1..];
        if let Some(past) = after.strip_prefix('`') {
            // A double-backtick span or a stray fence: skip the pair.
            rest = past;
            continue;
        }
        let Some(end) = after.find('`') else { break };
        let span = &after[..end];
        if !span.contains("\n\n") {
            let span = span.replace('\n', " ").replace("\\|", "|");
            if let Some(cmd) = span.strip_prefix("tka ") {
                out.push((line, cmd.to_string()));
            }
            line += after[..end].matches('\n').count();
            rest = &after[end + 1..];
        } else {
            rest = after;
        }
    }
    out
}

fn is_word(w: &str) -> bool {
    !w.is_empty()
        && w.split('|').all(|a| {
            a.starts_with(|c: char| c.is_ascii_lowercase())
                && a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// `tka --help` texts by subcommand path, each run once.
#[derive(Default)]
struct Helps(BTreeMap<Vec<String>, Option<String>>);

impl Helps {
    fn get(&mut self, path: &[String]) -> Option<&str> {
        self.0
            .entry(path.to_vec())
            .or_insert_with(|| {
                let out = Command::new(BIN).args(path).arg("--help").output().unwrap();
                out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            })
            .as_deref()
    }
}

/// What is wrong with the inline command `tka {cmd}`: a subcommand path
/// that is no command, a flag its help does not list.
fn inline_problem(cmd: &str, helps: &mut Helps) -> Option<String> {
    // Alternatives (`rotate-signer|rotate-ca`) expand to every path.
    let mut paths: Vec<Vec<String>> = vec![Vec::new()];
    for w in cmd.split_whitespace().take_while(|w| is_word(w)) {
        paths =
            paths.iter().flat_map(|p| w.split('|').map(move |a| [p.clone(), vec![a.to_string()]].concat())).collect();
    }
    let flags: Vec<&str> = cmd
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|t| t.starts_with("--") && t.len() > 2)
        .collect();
    for path in &paths {
        let name = path.join(" ");
        let Some(help) = helps.get(path) else { return Some(format!("`tka {name}` is not a command")) };
        let listed: Vec<&str> = help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).collect();
        if let Some(flag) = flags.iter().find(|f| !listed.contains(f)) {
            return Some(format!("`tka {name}` has no {flag}"));
        }
    }
    None
}

#[test]
fn every_inline_tka_command_names_a_command_and_its_flags() {
    let mut helps = Helps::default();
    let mut checked = 0;
    for file in doc_files() {
        let text = fs::read_to_string(root().join(&file)).unwrap();
        let (blocks, outside) = split(&text);
        // The `tka` commands of `sh norun` blocks, which cannot run, are at least synopses.
        let norun = blocks.iter().filter(|b| b.tag == "sh norun").flat_map(commands);
        let norun =
            norun.filter_map(|(n, c)| c.trim_start_matches("time ").strip_prefix("tka ").map(|c| (n, c.to_string())));
        for (line, cmd) in inline_commands(&outside).into_iter().chain(norun) {
            if let Some(problem) = inline_problem(&cmd, &mut helps) {
                panic!("{file}:{line}: `tka {cmd}`: {problem}");
            }
            checked += 1;
        }
    }
    println!("{checked} inline and norun tka commands checked");
    assert!(checked > 50, "the inline commands were not found ({checked})");
}

#[test]
fn a_misspelled_inline_command_or_flag_is_reported() {
    let mut helps = Helps::default();
    let spans =
        inline_commands("a `tka status --jsn` and\n`tka\ntrust ad ROOT.pem` and `tka token verify T --trust R\\|D`\n");
    let cmds: Vec<&str> = spans.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(cmds, ["status --jsn", "trust ad ROOT.pem", "token verify T --trust R|D"]);
    assert_eq!(inline_problem(cmds[0], &mut helps).as_deref(), Some("`tka status` has no --jsn"));
    assert_eq!(inline_problem(cmds[1], &mut helps).as_deref(), Some("`tka trust ad` is not a command"));
    assert_eq!(inline_problem(cmds[2], &mut helps), None);
}

#[test]
fn a_misspelled_flag_in_a_sh_block_fails_it() {
    let block = Block { tag: "sh".into(), line: 1, body: vec![(2, "tka status --product example-pro --jsn".into())] };
    let message = run_block("example.md", &block).expect_err("a misspelled flag must fail the block");
    assert!(
        message.starts_with("example.md:2: `tka status --product example-pro --jsn` exited 2 (the doc implies 0)"),
        "{message}"
    );
}

/// The leaf commands of `tka`, each as its subcommand words, from the
/// `Commands:` sections of the helps.
fn leaf_commands(helps: &mut Helps) -> Vec<Vec<String>> {
    let mut leaves = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let help = helps.get(&path).unwrap_or_else(|| panic!("`tka {} --help` failed", path.join(" "))).to_string();
        let subs: Vec<String> = help
            .split("Commands:\n")
            .nth(1)
            .map(|list| {
                list.lines()
                    .take_while(|l| !l.trim().is_empty())
                    .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
                    .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                    .filter(|n| n != "help")
                    .collect()
            })
            .unwrap_or_default();
        if subs.is_empty() {
            leaves.push(path);
        } else {
            todo.extend(subs.into_iter().map(|n| [path.clone(), vec![n]].concat()));
        }
    }
    leaves.sort();
    leaves
}

/// The example lines of a help: the `tka ...` lines after `EXAMPLE:` or
/// `EXAMPLES:`, up to the next blank line.
fn help_examples(help: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        let t = line.trim();
        if t == "EXAMPLES:" || t == "EXAMPLE:" {
            inside = true;
        } else if t.is_empty() {
            inside = false;
        } else if inside {
            // `VAR=value tka ...`: the command after the environment.
            let cmd = t.split_whitespace().skip_while(|w| w.contains('=') && !w.starts_with('-')).collect::<Vec<_>>();
            match out.last_mut() {
                // clap wraps a long example: the rest of it is on the next line.
                Some(prev) if cmd.first() != Some(&"tka") => {
                    prev.push(' ');
                    prev.push_str(t);
                }
                _ => out.push(cmd.join(" ")),
            }
        }
    }
    out
}

/// Every leaf command's help has an EXAMPLES section, and every example in
/// it names a real command and only flags that command's help lists
/// (a synopsis check: the examples name files a reader has, such as
/// `req.json` or a ledger serial, so they are checked, not run).
#[test]
fn every_command_help_has_examples_that_name_real_commands_and_flags() {
    let mut helps = Helps::default();
    let leaves = leaf_commands(&mut helps);
    assert!(leaves.len() > 40, "only {} commands found", leaves.len());
    let (mut missing, mut checked) = (Vec::new(), 0);
    for path in &leaves {
        let help = helps.get(path).unwrap().to_string();
        let examples = help_examples(&help);
        if examples.is_empty() {
            missing.push(path.join(" "));
        }
        for ex in examples {
            let cmd = ex.strip_prefix("tka ").unwrap_or_else(|| panic!("`tka {}`: example {ex:?}", path.join(" ")));
            if let Some(problem) = inline_problem(cmd, &mut helps) {
                panic!("`tka {} --help`: example `{ex}`: {problem}", path.join(" "));
            }
            checked += 1;
        }
    }
    assert!(missing.is_empty(), "commands without EXAMPLES in their help: {missing:?}");
    println!("{checked} help examples of {} commands checked", leaves.len());
}

/// `tka --help` has an ENVIRONMENT section naming every TKA_ variable the
/// binary and library read (test hooks aside).
#[test]
fn top_level_help_lists_every_environment_variable() {
    let mut helps = Helps::default();
    let help = helps.get(&[]).unwrap().to_string();
    let env = help.split("ENVIRONMENT:").nth(1).expect("`tka --help` has an ENVIRONMENT section");
    let mut names = std::collections::BTreeSet::new();
    let mut dirs = vec![root().join("src")];
    while let Some(dir) = dirs.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = fs::read_to_string(&p).unwrap();
                for (i, _) in text.match_indices("\"TKA_") {
                    let name: String = text[i + 1..]
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    names.insert(name);
                }
            }
        }
    }
    // Test hooks, honoured only by a build with the `test-hooks` feature.
    for hook in ["TKA_SYSROOT", "TKA_CRASH_AT_WRITE", "TKA_TEST_FAIL_KEY_REMOVAL", "TKA_FAULT", "TKA_FAULT_TRACE"] {
        names.remove(hook);
    }
    assert!(names.len() >= 7, "{names:?}");
    let missing: Vec<&String> = names.iter().filter(|n| !env.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "not in the ENVIRONMENT section of `tka --help`: {missing:?}");
}
