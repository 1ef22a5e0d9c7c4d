//! Every command example in README.md and docs/*.md is run, read from the
//! files themselves, so an edited example is an example tested; and so is
//! every example in the EXAMPLES sections of `tka ... --help` (the rules
//! for those are at `every_help_example_runs_in_the_fixture`, below).
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
    ("docs/benchmarks.md", 0, 5),
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
    command_paths(helps).into_iter().filter(|(_, leaf)| *leaf).map(|(p, _)| p).collect()
}

/// Every command of `tka` (`tka` itself, the groups, the leaves), each as
/// its subcommand words and whether it is a leaf, sorted.
fn command_paths(helps: &mut Helps) -> Vec<(Vec<String>, bool)> {
    let mut all = Vec::new();
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
        all.push((path.clone(), subs.is_empty()));
        todo.extend(subs.into_iter().map(|n| [path.clone(), vec![n]].concat()));
    }
    all.sort();
    all
}

/// The example lines of a help: the `tka ...` lines after `EXAMPLE:` or
/// `EXAMPLES:`, up to the next blank line, each as written (with any
/// `VAR=value` before it and any `# comment` after it).
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
            match out.last_mut() {
                // clap wraps a long example: the rest of it is on the next line.
                Some(prev) if without_env(t).split_whitespace().next() != Some("tka") => {
                    prev.push(' ');
                    prev.push_str(t);
                }
                _ => out.push(t.split_whitespace().collect::<Vec<_>>().join(" ")),
            }
        }
    }
    out
}

/// `VAR=value tka ...`: the command after the environment.
fn without_env(example: &str) -> String {
    example.split_whitespace().skip_while(|w| w.contains('=') && !w.starts_with('-')).collect::<Vec<_>>().join(" ")
}

/// Every leaf command's help has an EXAMPLES section, and every example in
/// it names a real command and only flags that command's help lists (a
/// synopsis check, also of the examples that cannot run: those are run by
/// `every_help_example_runs_in_the_fixture`).
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
        for ex in examples.iter().map(|e| without_env(e)) {
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

// ---------------------------------------------------------------------------
// The EXAMPLES of every `--help`, run.
//
// - **A command's examples** (a leaf's) each run in their own copy of one
//   fixture (below), so none sees what another changed; lines of one
//   section that build on each other are both served by the fixture (it
//   holds `signer2.key` for `ca rekey`, which the line before it makes).
// - **A group's examples** (`tka --help`) are a walkthrough from nothing:
//   they run in order, in a fresh sandbox with no fixture.
// - **Each runs as written** (`sh -c`, so `~`, `$(...)`, `<` and `>` work),
//   with three adjustments a user would make too: a system path
//   (`/var/lib/...`) is the sandbox's; the file or directory an example
//   makes (its `--out`, the `--dir` of `host init`) does not exist yet;
//   and the values only the fixture knows stand in for the example values
//   of [`fixture_values`] (a ledger serial, a machine id, ...).
// - **It must exit 0**, or N when the line ends in `# exit N` (a "no"
//   verdict the help documents).
// - **A server** (`tka serve`, `tka host serve`) runs bounded: on a free
//   loopback port instead of the documented one, until it prints
//   `listening: ADDR` and answers `GET /v1/health` with 200; then SIGTERM,
//   and it must exit 0.
// - **What cannot run** here is in [`HELP_NOT_RUN`], with why; an entry no
//   example matches any longer fails the test.
//
// The fixture: the sandbox of tests/sandbox (a fake machine, `HOME` =
// `user-home`, `TKA_PASSPHRASE`), the store at `var/lib/tka`
// (`TKA_STORE`), and, in the working directory:
// `~/tka-issuer` an issuer home (2048-bit keys) whose ledger has the
// entitlement `acme-2027` (example-pro, 50 machines, with a product key);
// its `root.pem`, `root.key`, `ca.pem`, `ca.key`, `signer.pem`,
// `signer.key`, `chain.pem` copied here, `roots/root.pem`, `signer2.key`
// (another key), `pass.txt` (the passphrase); the store trusts `root.pem`
// and an older root, and has `token.jws` activated and `revoked.jws`
// imported; `request.json` and `request.txt` (this machine's requests for
// example-pro), `reqs/` (this machine's and two others'), `token.jws` and
// `compact.jws` (this machine's tokens, full and compact, counted against
// `acme-2027`), `tokens.jsonl` (a bundle for `reqs/`), `revoked.jws`,
// `crl.pem` (by `ca.pem`); `/var/lib/tka-host` an installed activation
// host for `acme,acme-cad` that has run once, its `host.csr` and `host.pem`.

/// Help examples that cannot run in a test: (command, or `*` for any;
/// text that picks the examples out; why).
const HELP_NOT_RUN: &[(&str, &str, &str)] = &[
    ("agent once", "tka agent once", "finds its activation host on the LAN (kms1.example.lan, DNS SRV records)"),
    ("agent return", "tka agent return", "finds its activation host on the LAN (DNS SRV records)"),
    ("agent run", "tka agent run", "a daemon that finds its activation host on the LAN (DNS SRV records)"),
    ("*", "postgres://", "needs a PostgreSQL server (tests/ledger.rs and tests/host_state.rs run the ledger on one)"),
    ("*", "pkcs11:", "needs a PKCS#11 token with its PIN file (tests/pkcs11.rs runs SoftHSM2)"),
    ("pkcs11 list", "--login", "needs a PKCS#11 module and a token's PIN (tests/pkcs11.rs)"),
    ("host serve", "[::]:7410", "listens on every interface, IPv6 too, which not every test machine has"),
];

/// The commands that serve until stopped: their examples run bounded.
const SERVERS: &[&str] = &["serve", "host serve"];

/// How long one example may take (a guard against a hang, not a timing assertion).
const EXAMPLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The fixture the examples of every command run in a copy of.
struct HelpFixture {
    s: Sandbox,
    /// The serial of `token.jws`.
    serial: String,
    /// This machine's id for example-pro (`token.jws`'s machine).
    cmid: String,
    /// The fingerprint of the older root the store trusts.
    old_root: String,
}

/// The example values of the helps that stand for what only the fixture
/// knows: (in the example, what the fixture puts there).
fn fixture_values(fx: &HelpFixture) -> Vec<(&'static str, String)> {
    use time::format_description::well_known::Rfc3339;
    // The example's date is fixed, the fixture's tokens are issued now.
    let within = (time::OffsetDateTime::now_utc() + time::Duration::days(30)).replace_nanosecond(0).unwrap();
    vec![
        ("SERIAL", fx.serial.clone()),
        ("ABCD-EFGH-JKMN-PQRS-T", fx.cmid.clone()),
        ("3f2a9c", fx.old_root[..6].to_string()),
        ("2027-01-01T00:00:00Z", within.format(&Rfc3339).unwrap()),
    ]
}

/// A command inside `s` as the examples see it: the sandbox's environment,
/// the store at `var/lib/tka`, `tka` on `PATH`.
fn example_command(s: &Sandbox, program: &str, args: &[&str]) -> Command {
    let mut c = s.command(program, args);
    let path = format!("{}:{}", std::path::Path::new(BIN).parent().unwrap().display(), std::env::var("PATH").unwrap());
    c.env("TKA_STORE", s.path("var/lib/tka")).env("PATH", path);
    c
}

/// Runs `tka args` for the fixture; returns stdout.
#[track_caller]
fn fixture_ok(s: &Sandbox, args: &[&str]) -> String {
    let r = sandbox::run(&mut example_command(s, BIN, args));
    assert_eq!(r.0, 0, "fixture: tka {args:?} failed:\nstdout: {}\nstderr: {}", r.1, r.2);
    r.1
}

fn help_fixture() -> HelpFixture {
    let s = Sandbox::new();
    let tka = |args: &[&str]| fixture_ok(&s, args);
    let home = "user-home/tka-issuer";
    let home_flag = ["--home", home];
    tka(&["issuer", "init", "--org", "Example Corp", "--home", home, "--root-bits", "2048", "--ca-bits", "2048"]);
    for f in ["root.pem", "root.key", "ca.pem", "ca.key", "signer.pem", "signer.key", "chain.pem"] {
        fs::copy(s.path(&format!("{home}/{f}")), s.path(f)).unwrap();
    }
    fs::create_dir(s.path("roots")).unwrap();
    fs::copy(s.path("root.pem"), s.path("roots/root.pem")).unwrap();
    s.write_secret("pass.txt", format!("{}\n", sandbox::PASS));
    tka(&["key", "generate", "--bits", "2048", "--out", "signer2.key"]);
    tka(&["trust", "add", "root.pem", "--yes"]);
    // An older root the store trusts too (pinned by its fingerprint).
    fs::create_dir(s.path("old")).unwrap();
    tka(&["key", "generate", "--bits", "2048", "--out", "old/root.key"]);
    let made = tka(&[
        "ca",
        "root",
        "--key",
        "old/root.key",
        "--subject",
        "CN=Old Root CA,O=Example Corp",
        "--out",
        "old/root.pem",
    ]);
    let old_root = sandbox::named(&made)["fingerprint"].clone();
    tka(&["trust", "add", "old/root.pem", "--fingerprint", &old_root]);
    fs::remove_dir_all(s.path("old")).unwrap();
    tka(&["request", "create", "--product", PRODUCT, "--out", "request.json"]);
    tka(&["request", "create", "--product", PRODUCT, "--text", "--out", "request.txt"]);
    fs::create_dir(s.path("reqs")).unwrap();
    fs::copy(s.path("request.txt"), s.path("reqs/this-machine.txt")).unwrap();
    tka(&["request", "generate-test", "--product", PRODUCT, "--count", "2", "--out", "others.txt"]);
    for (i, line) in s.read("others.txt").lines().enumerate() {
        s.write(&format!("reqs/other-{i}.txt"), format!("{line}\n"));
    }
    fs::remove_file(s.path("others.txt")).unwrap();
    let ent =
        ["--product", PRODUCT, "--machines", "50", "--features", "reports,export", "--name", "acme-2027", "--key"];
    tka(&[&["entitlement", "add"][..], &home_flag, &ent].concat());
    let issue = ["token", "issue", "--request", "request.txt", "--home", home, "--entitlement", "acme-2027"];
    // The bundle is made while token.jws is this request's only token, so
    // it carries that one (the ledger returns the newest token of a request,
    // and two issued within one second tie: the serial decides).
    let issued = sandbox::named(&tka(&[&issue[..], &["--out", "token.jws"]].concat()));
    let bulk = ["token", "issue-bulk", "--entitlement", "acme-2027", "--requests", "reqs/", "--bundle", "tokens.jsonl"];
    tka(&[&bulk[..], &home_flag, &["--quiet"]].concat());
    tka(&[&issue[..], &["--compact", "--out", "compact.jws"]].concat());
    tka(&["activate", "token.jws"]);
    tka(&[&["revocations", "create"][..], &home_flag, &["--out", "revoked.jws"]].concat());
    tka(&["revocations", "import", "revoked.jws"]);
    tka(&["crl", "create", "--ca-cert", "ca.pem", "--ca-key", "ca.key", "--out", "crl.pem"]);
    let host = s.path("var/lib/tka-host");
    let host = host.to_str().unwrap();
    tka(&["host", "init", "--dir", host]);
    fs::copy(s.path("var/lib/tka-host/host.csr"), s.path("host.csr")).unwrap();
    let certify = [
        "host",
        "certify",
        "--request",
        "host.csr",
        "--products",
        "acme,acme-cad",
        "--max-lifetime",
        "180d",
        "--out",
        "host.pem",
    ];
    tka(&[&certify[..], &home_flag].concat());
    tka(&["host", "install", "host.pem", "--dir", host]);
    // The host has run once (`host status` reads its state).
    let serve = format!("exec tka host serve --dir {host} --listen 127.0.0.1:0");
    serve_bounded(example_command(&s, "sh", &["-c", &serve])).unwrap_or_else(|e| panic!("fixture: {serve}: {e}"));
    HelpFixture { serial: issued["serial"].clone(), cmid: issued["machine"].clone(), old_root, s }
}

/// A copy of the fixture (`cp -a`), as a sandbox of its own.
fn fixture_copy(fx: &HelpFixture) -> Sandbox {
    let s = Sandbox { tmp: tempfile::tempdir().unwrap(), softhsm2_conf: None };
    let from = format!("{}/.", fx.s.dir().display());
    let ok = Command::new("cp").arg("-a").arg(from).arg(s.dir()).status().is_ok_and(|st| st.success());
    assert!(ok, "cannot copy the fixture");
    s
}

/// The example as it runs in `s`: the sandbox's system paths, the
/// fixture's values.
fn adjusted(example: &str, s: &Sandbox, values: &[(&'static str, String)]) -> String {
    let mut cmd = example.replace(" /var/lib/", &format!(" {}/var/lib/", s.dir().display()));
    for (from, to) in values {
        cmd = cmd.replace(from, to);
    }
    cmd
}

/// Removes what the example makes (the file or directory its `--out`
/// names, the `--dir` of `host init`) from `s`: it does not exist yet.
fn remove_made(cmd: &str, s: &Sandbox) {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let made_flag = if without_env(cmd).starts_with("tka host init ") { "--dir" } else { "--out" };
    for pair in words.windows(2) {
        let (flag, value) = (pair[0], pair[1]);
        if flag != made_flag || value == "-" || value.starts_with(['\'', '"', '-']) || value.contains(':') {
            continue;
        }
        let path = match value.strip_prefix("~/") {
            Some(rest) => s.path("user-home").join(rest),
            None => s.path(value),
        };
        if path.is_dir() {
            fs::remove_dir_all(&path).unwrap();
        } else if path.exists() {
            fs::remove_file(&path).unwrap();
        }
    }
}

/// `GET /v1/health` of a server at `addr`: Ok when it answers 200.
fn health(addr: &str) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    conn.set_read_timeout(Some(EXAMPLE_LIMIT)).unwrap();
    write!(conn, "GET /v1/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).map_err(|e| format!("GET /v1/health: {e}"))?;
    match answer.starts_with("HTTP/1.1 200") {
        true => Ok(()),
        false => Err(format!("GET /v1/health answered {:?}", answer.lines().next().unwrap_or(""))),
    }
}

/// Runs a server (its command ends in `exec tka ...`, so the child is the
/// server) until it listens and answers its health check, then stops it
/// with SIGTERM: it must exit 0. Every server started here is stopped.
fn serve_bounded(mut cmd: Command) -> Result<(), String> {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut child =
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| format!("cannot run: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let stdout = child.stdout.take().unwrap();
    let (listening_tx, listening) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening: ") {
                let _ = listening_tx.send(addr.to_string());
            }
        }
    });
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    let checked = match listening.recv_timeout(EXAMPLE_LIMIT) {
        Ok(addr) => health(&addr),
        Err(_) => Err("it printed no `listening: ADDR`".to_string()),
    };
    // SAFETY: signals to the child this function started (not reaped
    // before `done` delivers its exit).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = match done.recv_timeout(EXAMPLE_LIMIT) {
        Ok(out) => out.map_err(|e| e.to_string())?,
        Err(_) => {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return Err(format!("it did not stop within {EXAMPLE_LIMIT:?} of SIGTERM (killed)"));
        }
    };
    let code = out.status.code().unwrap_or(-1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match checked {
        Err(e) => Err(format!("{e}; exited {code}\nstderr: {stderr}")),
        Ok(()) if code != 0 => Err(format!("exited {code} after SIGTERM (expected 0)\nstderr: {stderr}")),
        Ok(()) => Ok(()),
    }
}

/// A server example on a free loopback port: every `--listen` port is 0.
fn on_free_port(cmd: &str) -> String {
    let mut words: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
    for i in 1..words.len() {
        if words[i - 1] == "--listen" {
            if let Some((host, _)) = words[i].rsplit_once(':') {
                words[i] = format!("{host}:0");
            }
        }
    }
    words.join(" ")
}

/// Runs one example in `s`; Err says how it failed.
fn run_example(command: &str, example: &str, s: &Sandbox, values: &[(&'static str, String)]) -> Result<(), String> {
    let cmd = adjusted(example, s, values);
    remove_made(&cmd, s);
    if SERVERS.contains(&command) {
        let cmd = format!("exec {}", on_free_port(&cmd));
        return serve_bounded(example_command(s, "sh", &["-c", &cmd])).map_err(|e| format!("as `{cmd}`: {e}"));
    }
    let want = expected_exit(&cmd);
    let (code, _, stderr) = sandbox::try_run_within(&mut example_command(s, "sh", &["-c", &cmd]), EXAMPLE_LIMIT)?;
    match code == want {
        true => Ok(()),
        false => Err(format!("exited {code} (the help implies {want}), as `{cmd}`\nstderr: {stderr}")),
    }
}

/// Every example of every command's `--help` runs (see above).
#[test]
fn every_help_example_runs_in_the_fixture() {
    let mut helps = Helps::default();
    let commands = command_paths(&mut helps);
    let fx = help_fixture();
    let values = fixture_values(&fx);
    let mut not_run_used = vec![0; HELP_NOT_RUN.len()];
    let (mut failures, mut ran, mut skipped) = (Vec::new(), 0, 0);
    let mut openssl: Option<bool> = None;
    for (path, leaf) in &commands {
        let command = path.join(" ");
        let examples = help_examples(helps.get(path).unwrap());
        // A group's examples are a walkthrough: one fresh sandbox, in order.
        let walkthrough = (!leaf).then(Sandbox::new);
        for example in &examples {
            let excluded =
                HELP_NOT_RUN.iter().position(|&(c, text, _)| (c == "*" || c == command) && example.contains(text));
            if let Some(i) = excluded {
                not_run_used[i] += 1;
                skipped += 1;
                continue;
            }
            if example.contains("openssl ") && !*openssl.get_or_insert_with(sandbox::have_openssl) {
                skipped += 1;
                continue;
            }
            let copy;
            let s = match &walkthrough {
                Some(s) => s,
                None => {
                    copy = fixture_copy(&fx);
                    &copy
                }
            };
            match run_example(&command, example, s, &values) {
                Ok(()) => ran += 1,
                Err(e) => failures.push(format!("`tka {command} --help`: example `{example}`: {e}")),
            }
        }
    }
    let stale: Vec<String> = HELP_NOT_RUN
        .iter()
        .zip(&not_run_used)
        .filter(|(_, &n)| n == 0)
        .map(|((c, text, _), _)| format!("({c:?}, {text:?})"))
        .collect();
    assert!(stale.is_empty(), "HELP_NOT_RUN entries no help example matches any more: {}", stale.join(", "));
    assert!(failures.is_empty(), "{} help examples failed:\n\n{}", failures.len(), failures.join("\n\n"));
    println!("{ran} help examples ran, {skipped} not run (HELP_NOT_RUN or a missing tool)");
    assert!(ran > 60, "only {ran} help examples ran");
}

#[test]
fn a_help_example_that_fails_is_reported_with_its_exit_and_stderr() {
    let s = Sandbox::new();
    let e = run_example("status", "tka status --jsn", &s, &[]).expect_err("a misspelled flag must fail");
    assert!(
        e.starts_with(
            "exited 2 (the help implies 0), as `tka status --jsn`\nstderr: error: unexpected argument '--jsn'"
        ),
        "{e}"
    );
    // A documented "no": `# exit 1` is what the example must exit.
    let e = run_example("status", "tka status --product example-pro # exit 0", &s, &[]).expect_err("exit 1 expected");
    assert!(e.starts_with("exited 1 (the help implies 0)"), "{e}");
    run_example("status", "tka status --product example-pro # exit 1", &s, &[]).unwrap();
    // A server that cannot start is reported, not waited for.
    let e = run_example("serve", "tka serve --home ~/no-home --listen 127.0.0.1:7420", &s, &[])
        .expect_err("a server without a home must fail");
    assert!(e.contains("it printed no `listening: ADDR`; exited 2"), "{e}");
}
