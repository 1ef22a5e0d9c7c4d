//! Crash safety of the activation store, SQLite-style: kill the writer at
//! random points and prove the store is always the old state or the new
//! one, never corrupt, never losing an installed token (issue 6 item 6).
//!
//! The real binary is spawned and killed with SIGKILL (`Child::kill` on
//! Unix), so no destructor, no unwinding and no lock release code runs: the
//! kernel drops the `flock` and whatever was half-written stays on disk.
//! The random delays come from a seed printed at the start, so a failure can
//! be replayed with `TKA_CRASH_SEED=<seed>`. Those random loops are an
//! extra: they assert nothing about how many runs they killed.
//!
//! The deterministic tests stop a command at each of its named write steps
//! in turn (test-hooks fault points, `src/core/fsutil.rs::crash_point`):
//! a run with `TKA_FAULT_TRACE` lists every point the command passes, then
//! one run per point with `TKA_FAULT=<point>:<n>` ends the process there
//! (`_exit`, like SIGKILL), or with `...:io` fails that step with an I/O
//! error; each time the stored state is the old one or the new one.

mod sandbox;
mod tools;

use sandbox::{Sandbox, BIN, PRODUCT};
use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tka::store::Store;

/// xorshift64*: enough randomness for kill timings, reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn from_env() -> Self {
        let seed = std::env::var("TKA_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).unwrap();
            u64::from_le_bytes(b) | 1
        });
        eprintln!("crash test seed: TKA_CRASH_SEED={seed}");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn activate_cmd(s: &Sandbox, token_file: &str) -> Command {
    let mut c = s.cmd(&["activate", token_file]);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// Opens the store and reads everything a reader can read; panics if any of
/// it fails (that would be corruption). Returns product -> token text.
fn read_all(s: &Sandbox) -> BTreeMap<String, String> {
    let store = Store::open(&s.store()).expect("store opens after a kill");
    store.state().expect("state.json parses after a kill");
    store.roots().expect("roots read after a kill");
    store.crls().expect("CRLs read after a kill");
    store.tokens().expect("tokens read after a kill").into_iter().map(|t| (t.product, t.token)).collect()
}

/// How long one uninterrupted `tka activate` takes here, to spread kills over it.
fn typical_duration(s: &Sandbox, token_file: &str) -> Duration {
    let mut best = Duration::from_secs(10);
    for _ in 0..3 {
        let t = Instant::now();
        let st = activate_cmd(s, token_file).status().unwrap();
        assert!(st.success());
        best = best.min(t.elapsed());
    }
    best
}

/// One write step of a command: the fault point's name, which pass of it
/// (from 1), and the file it is about.
#[derive(Debug, Clone)]
struct Step {
    point: String,
    pass: u64,
    file: String,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self.file.rsplit('/').take(2).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("/");
        match file.as_str() {
            "" => write!(f, "{}:{}", self.point, self.pass),
            file => write!(f, "{}:{} ({file})", self.point, self.pass),
        }
    }
}

/// Every write step `cmd` passes, in order (a run with `TKA_FAULT_TRACE`).
fn write_steps(s: &Sandbox, mut cmd: Command) -> Vec<Step> {
    let trace = s.path("fault-trace.txt");
    let _ = std::fs::remove_file(&trace);
    let r = sandbox::run(cmd.env("TKA_FAULT_TRACE", &trace));
    assert_eq!(r.0, 0, "the traced run failed: {r:?}");
    let mut passes: BTreeMap<String, u64> = BTreeMap::new();
    let steps: Vec<Step> = std::fs::read_to_string(&trace)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (point, file) = l.split_once('\t').expect("point<TAB>file");
            let pass = passes.entry(point.to_string()).or_insert(0);
            *pass += 1;
            Step { point: point.to_string(), pass: *pass, file: file.to_string() }
        })
        .collect();
    let _ = std::fs::remove_file(&trace);
    steps
}

/// Runs `cmd` stopped at `step` (`how`: "" ends the process, ":io" fails the step).
fn run_faulted(mut cmd: Command, step: &Step, how: &str) -> sandbox::Run {
    sandbox::run(cmd.env("TKA_FAULT", format!("{}:{}{how}", step.point, step.pass)))
}

/// Copies `from` over `to` (both under the sandbox), as `cp -a`.
fn restore_dir(s: &Sandbox, from: &str, to: &str) {
    let _ = std::fs::remove_dir_all(s.path(to));
    if s.path(from).exists() {
        let st = Command::new("cp").args(["-a", from, to]).current_dir(s.dir()).status().unwrap();
        assert!(st.success());
    }
}

#[test]
fn activate_stopped_at_each_write_step_leaves_the_old_or_the_new_token() {
    let s = Sandbox::new();
    s.issuer_and_trust();
    s.token(PRODUCT, "a.jws");
    s.token(PRODUCT, "b.jws");
    let text = |f: &str| std::fs::read_to_string(s.path(f)).unwrap().trim().to_string();
    let (a, b) = (text("a.jws"), text("b.jws"));
    s.ok(&["activate", "a.jws"]);
    restore_dir(&s, "store", "store.old");
    let activate_b = || s.cmd(&["activate", "b.jws"]);
    let steps = write_steps(&s, activate_b());
    assert!(
        steps.iter().any(|t| t.point == "write-atomic.rename" && t.file.ends_with("tokens/example-pro.json")),
        "{steps:?}"
    );
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for step in &steps {
        for how in ["", ":io"] {
            restore_dir(&s, "store.old", "store");
            let r = run_faulted(activate_b(), step, how);
            if how.is_empty() {
                assert_eq!(r.0, 137, "stopped at {step}: {r:?}");
            } else {
                assert_eq!(r.0, 2, "I/O error at {step}: {r:?}");
                assert!(r.2.starts_with("error: ") && r.2.contains("injected fault"), "at {step}: {r:?}");
            }
            let tokens = read_all(&s);
            let installed = tokens.get(PRODUCT).unwrap_or_else(|| panic!("stopped at {step}{how}: the token was lost"));
            if *installed == a {
                old.push(format!("{step}{how}"));
            } else {
                assert_eq!(*installed, b, "stopped at {step}{how}: neither the old nor the new token");
                new.push(format!("{step}{how}"));
            }
            // The next run completes and sweeps what the stopped one left.
            s.ok(&["activate", "b.jws"]);
            assert_eq!(read_all(&s).get(PRODUCT), Some(&b), "after {step}{how}");
        }
    }
    eprintln!("activate: {} write steps; old token after {old:?}; new token after {new:?}", steps.len());
    assert!(!old.is_empty() && !new.is_empty(), "steps on both sides of the switch: {steps:?}");
}

#[test]
fn first_trust_add_and_activation_stopped_at_each_write_step_leave_a_usable_store() {
    let s = Sandbox::new();
    s.ok(&["issuer", "init", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]);
    s.token(PRODUCT, "t.jws");
    let token = std::fs::read_to_string(s.path("t.jws")).unwrap().trim().to_string();
    let trust = || s.cmd(&["trust", "add", "home/root.pem"]);
    let activate = || s.cmd(&["activate", "t.jws"]);
    // `trust add` into no store: nothing, or a valid store with no root or the root.
    let _ = std::fs::remove_dir_all(s.store());
    let steps = write_steps(&s, trust());
    assert!(!steps.is_empty());
    for step in &steps {
        let _ = std::fs::remove_dir_all(s.store());
        assert_eq!(run_faulted(trust(), step, "").0, 137, "trust add stopped at {step}");
        if s.store().exists() {
            let store = Store::open(&s.store()).unwrap_or_else(|e| panic!("trust add stopped at {step}: {e}"));
            store.state().unwrap_or_else(|e| panic!("trust add stopped at {step}: {e}"));
            assert!(store.roots().unwrap_or_else(|e| panic!("{step}: {e}")).len() <= 1);
        }
        s.ok(&["trust", "add", "home/root.pem"]);
    }
    // The first activation: no token, or the token.
    restore_dir(&s, "store", "store.trusted");
    let steps2 = write_steps(&s, activate());
    for step in &steps2 {
        restore_dir(&s, "store.trusted", "store");
        assert_eq!(run_faulted(activate(), step, "").0, 137, "activate stopped at {step}");
        if let Some(t) = read_all(&s).get(PRODUCT) {
            assert_eq!(t, &token, "activate stopped at {step}");
        }
        s.ok(&["activate", "t.jws"]);
    }
    let names = |v: &[Step]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    eprintln!("trust add: {:?}\nfirst activate: {:?}", names(&steps), names(&steps2));
}

#[test]
fn sigkill_during_activate_leaves_old_or_new_token() {
    let s = Sandbox::new();
    s.issuer_and_trust();
    s.token(PRODUCT, "a.jws");
    s.token(PRODUCT, "b.jws");
    let text = |f: &str| std::fs::read_to_string(s.path(f)).unwrap().trim().to_string();
    let (a, b) = (text("a.jws"), text("b.jws"));
    assert_ne!(a, b);

    let span = typical_duration(&s, "a.jws");
    eprintln!("one activation takes about {span:?}");
    let mut rng = Rng::from_env();
    let started = Instant::now();
    let mut installed = a.clone();
    let mut high_water = Store::open(&s.store()).unwrap().state().unwrap().clock_high_water;
    let (mut killed, mut completed, mut iterations) = (0, 0, 0);
    while iterations < 200 && started.elapsed() < Duration::from_secs(45) {
        iterations += 1;
        let (file, new) = if installed == a { ("b.jws", &b) } else { ("a.jws", &a) };
        let mut child = activate_cmd(&s, file).spawn().unwrap();
        // Anywhere from before exec to just after the process would finish.
        let delay = Duration::from_micros(rng.below(span.as_micros() as u64 * 6 / 5 + 1));
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            completed += 1;
        } else {
            killed += 1;
        }

        let tokens = read_all(&s);
        let now_installed = tokens
            .get(PRODUCT)
            .unwrap_or_else(|| panic!("iteration {iterations}: the installed token was lost (killed after {delay:?})"));
        assert!(
            now_installed == &installed || now_installed == new,
            "iteration {iterations}: installed token is neither the old nor the new one"
        );
        if status.success() {
            assert_eq!(now_installed, new, "a completed activation installed its token");
        }
        installed = now_installed.clone();
        let hw = Store::open(&s.store()).unwrap().state().unwrap().clock_high_water;
        assert!(hw >= high_water, "clock high-water mark moved back after a kill");
        high_water = hw;
    }
    eprintln!("{iterations} iterations: {killed} killed, {completed} completed, in {:?}", started.elapsed());

    // The next writer sweeps temporary files left by killed writers, and the
    // store still works normally.
    s.ok(&["activate", "a.jws"]);
    for sub in ["tokens", "roots", "crls", "revocations"] {
        let leftovers: Vec<_> = std::fs::read_dir(s.store().join(sub))
            .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        assert!(leftovers.iter().all(|n: &String| !n.starts_with('.')), "{sub}: {leftovers:?}");
    }
    assert_eq!(read_all(&s).get(PRODUCT), Some(&a));
    let (code, out, err) = s.tka(&["status", "--product", PRODUCT]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn sigkill_during_first_activation_leaves_nothing_or_the_token() {
    // The very first activation into a fresh store: killed, the store either
    // does not exist yet, is an empty valid store, or holds the token.
    let s = Sandbox::new();
    s.ok(&["issuer", "init", "--org", "tka", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]);
    s.token(PRODUCT, "t.jws");
    let token = std::fs::read_to_string(s.path("t.jws")).unwrap().trim().to_string();
    let mut rng = Rng::from_env();
    let started = Instant::now();
    for i in 0..40 {
        if started.elapsed() > Duration::from_secs(12) {
            break;
        }
        let _ = std::fs::remove_dir_all(s.store());
        // `trust add` initialises the store; kill it at random, then activate.
        let mut child =
            s.cmd(&["trust", "add", "home/root.pem"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(15_000)));
        let _ = child.kill();
        let _ = child.wait();
        if s.store().exists() {
            let store = Store::open(&s.store()).unwrap_or_else(|e| panic!("iteration {i}: store unusable: {e}"));
            store.state().unwrap_or_else(|e| panic!("iteration {i}: {e}"));
            let roots = store.roots().unwrap_or_else(|e| panic!("iteration {i}: {e}"));
            assert!(roots.len() <= 1);
        }
        s.ok(&["trust", "add", "home/root.pem"]);
        let mut child = activate_cmd(&s, "t.jws").spawn().unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(40_000)));
        let _ = child.kill();
        let ok = child.wait().unwrap().success();
        let tokens = read_all(&s);
        match tokens.get(PRODUCT) {
            Some(t) => assert_eq!(t, &token),
            None => assert!(!ok, "iteration {i}: a completed activation left no token"),
        }
    }
}

#[test]
fn concurrent_activate_and_deactivate_keep_the_store_consistent() {
    let s = Sandbox::new();
    s.issuer_and_trust();
    let products = ["alpha", "beta", "gamma"];
    let mut valid: HashSet<String> = HashSet::new();
    for p in products {
        for n in 0..2 {
            let f = format!("{p}-{n}.jws");
            s.token(p, &f);
            valid.insert(std::fs::read_to_string(s.path(&f)).unwrap().trim().to_string());
        }
    }
    // Eight processes at once, each a loop of operations: two activators per
    // product (different tokens for the same product), plus deactivators on
    // two products and an activator hopping across all three.
    let script = |ops: Vec<Vec<String>>| {
        let s_store = s.store();
        let dir = s.dir().to_path_buf();
        let sysroot = s.path("sysroot");
        let home = s.path("user-home");
        std::thread::spawn(move || {
            let mut codes = Vec::new();
            for _round in 0..6 {
                for args in &ops {
                    let out = Command::new(BIN)
                        .args(args)
                        .current_dir(&dir)
                        .env_remove("TKA_MACHINE_ID")
                        .env("HOME", &home)
                        .env("TKA_SYSROOT", &sysroot)
                        .env("TKA_STORE", &s_store)
                        .stdin(Stdio::null())
                        .output()
                        .unwrap();
                    codes.push((args.clone(), out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned()));
                }
            }
            codes
        })
    };
    let v = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut workers = Vec::new();
    for p in products {
        workers.push(script(vec![v(&["activate", &format!("{p}-0.jws")])]));
        workers.push(script(vec![v(&["activate", &format!("{p}-1.jws")])]));
    }
    workers.push(script(vec![v(&["deactivate", "--product", "alpha"]), v(&["deactivate", "--product", "beta"])]));
    workers.push(script(products.iter().map(|p| v(&["activate", &format!("{p}-1.jws")])).collect()));
    for w in workers {
        for (args, code, err) in w.join().unwrap() {
            let fine = code == Some(0) || (args[0] == "deactivate" && code == Some(1) && err.contains("not activated"));
            assert!(fine, "tka {args:?} exited {code:?}: {err}");
        }
    }
    // Consistent final state: every installed token is one of ours for its
    // product and verifies; the state parses; a last round converges.
    let tokens = read_all(&s);
    for (p, t) in &tokens {
        assert!(valid.contains(t), "{p}: a token that was never issued");
        let (_, claims) = tka::token::decode_unverified(t).unwrap();
        assert_eq!(&claims.aud, p);
    }
    assert!(tokens.contains_key("gamma"), "nobody deactivates gamma");
    for p in products {
        s.ok(&["activate", &format!("{p}-0.jws")]);
    }
    let (code, out, err) = s.tka(&["status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(read_all(&s).len(), 3);
}

/// Review finding F2 with real kills: `revocations import` of a newer list
/// is SIGKILLed at random points. After every kill the recorded sequence is
/// never ahead of the installed list (the list is written first), the
/// store reads cleanly, and importing the same list again always leaves it
/// fully applied: the token it revokes is no longer activated. (Each write
/// step is also reproduced deterministically in
/// tests/revocation.rs::import_killed_at_each_write_step_is_completed_by_reimport.)
#[test]
fn sigkill_during_revocations_import_never_leaves_a_revocation_unapplied() {
    let s = Sandbox::new();
    s.issuer_and_trust();
    s.token(PRODUCT, "t.jws");
    s.ok(&["activate", "t.jws"]);
    let serial = tka::token::decode_unverified(s.read("t.jws").trim()).unwrap().1.jti;
    s.ok(&["revocations", "create", "--home", "home", "--out", "r1.jws"]);
    s.ok(&["revocations", "create", "--home", "home", "--serial", &serial, "--out", "r2.jws"]);
    s.ok(&["revocations", "import", "r1.jws"]);
    let fresh = s.snapshot("store");
    let restore = || {
        std::fs::remove_dir_all(s.store()).unwrap();
        for (path, content) in &fresh {
            match content {
                None => std::fs::create_dir_all(path).unwrap(),
                Some(bytes) => std::fs::write(path, bytes).unwrap(),
            }
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(s.store(), std::fs::Permissions::from_mode(0o700)).unwrap();
    };
    let import = || {
        let mut c = s.cmd(&["revocations", "import", "r2.jws"]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    let t = Instant::now();
    assert!(import().status().unwrap().success());
    let span = t.elapsed();
    let list_seqs = |store: &Store| -> Vec<u64> {
        store.revocation_lists().unwrap().iter().map(|l| tka::revocation::decode_unverified(l).unwrap().seq).collect()
    };

    let mut rng = Rng::from_env();
    let started = Instant::now();
    let (mut iterations, mut killed) = (0, 0);
    while iterations < 60 && started.elapsed() < Duration::from_secs(20) {
        iterations += 1;
        restore();
        let mut child = import().spawn().unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(span.as_micros() as u64 * 6 / 5 + 1)));
        let _ = child.kill();
        if !child.wait().unwrap().success() {
            killed += 1;
        }
        read_all(&s);
        let store = Store::open(&s.store()).unwrap();
        let state = store.state().unwrap();
        let seqs = list_seqs(&store);
        assert_eq!(seqs.len(), 1, "iteration {iterations}: one installed list");
        for (key, &recorded) in &state.revocation_seq {
            assert!(recorded <= seqs[0], "iteration {iterations}: {key} records {recorded}, the list is {}", seqs[0]);
        }
        let (code, out, err) = s.tka(&["revocations", "import", "r2.jws"]);
        assert_eq!(code, 0, "iteration {iterations}: re-import: {out}{err}");
        let (code, out, err) = s.tka(&["status", "--product", PRODUCT]);
        assert_eq!(code, 1, "iteration {iterations}: the revocation is applied: {out}{err}");
        assert!(out.contains(&format!("token {serial} is revoked")), "iteration {iterations}: {out}{err}");
    }
    eprintln!("{iterations} import iterations, {killed} killed, in {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// The issuer side: `tka token issue-bulk` and its SQLite ledger.

/// `n` activation requests from distinct fake machines, one text form per line.
fn bulk_requests(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let raw: Vec<(String, String)> = vec![
            ("mid".into(), format!("{:032x}", 0x5eed_0000u64 + i as u64)),
            ("dmi".into(), format!("{:08x}-1111-4222-8333-{:012x}", i, i)),
            ("bsn".into(), format!("BSN{i:06}")),
        ];
        let id = tka::machine::MachineIdentity::from_raw(PRODUCT, &raw);
        out.push_str(&tka::request::ActivationRequest::new(&id, tka::clock::now(), None).to_text().unwrap());
        out.push('\n');
    }
    out
}

/// Checks the documented guarantees of a (possibly interrupted) bulk run:
/// the ledger opens, its seat count equals the distinct machines it holds
/// tokens for, and every token file in `out/` is the token of a ledger row
/// ("no token file without its ledger row"). Returns (rows, files).
fn check_ledger(s: &Sandbox, iteration: usize) -> (usize, usize) {
    use tka::ledger::{Ledger, TokenFilter};
    let ledger = Ledger::open_existing(&s.path("home/ledger.sqlite"))
        .unwrap_or_else(|e| panic!("iteration {iteration}: ledger does not open after a kill: {e}"));
    let ent = ledger.entitlement("bulk").unwrap();
    let rows = ledger.tokens(&TokenFilter::default()).unwrap();
    let machines: HashSet<&str> = rows.iter().filter(|r| r.released_at.is_none()).map(|r| r.cmid.as_str()).collect();
    assert_eq!(
        ent.used as usize,
        machines.len(),
        "iteration {iteration}: seat count differs from the ledger's machines"
    );
    assert!(ent.used <= ent.machines);
    let serials: HashSet<&str> = rows.iter().map(|r| r.serial.as_str()).collect();
    assert_eq!(serials.len(), rows.len(), "duplicate serials");
    let by_token: HashSet<&str> = rows.iter().map(|r| r.token.as_str()).collect();
    let mut files = 0;
    if let Ok(dir) = std::fs::read_dir(s.path("out")) {
        for e in dir {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue; // a temporary file of a killed writer, never a token file
            }
            let text = std::fs::read_to_string(e.path()).unwrap();
            assert!(
                by_token.contains(text.trim()),
                "iteration {iteration}: token file {name} is not in the ledger ({} bytes)",
                text.len()
            );
            files += 1;
        }
    }
    (rows.len(), files)
}

#[test]
fn issue_bulk_stopped_at_each_write_step_keeps_ledger_and_files_consistent() {
    // Six requests in chunks of two: three commits, six token files.
    const N: usize = 6;
    let s = Sandbox::new();
    s.ok(&["issuer", "init", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]);
    std::fs::write(s.path("reqs.txt"), bulk_requests(N)).unwrap();
    let fresh = || {
        for f in ["ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm", "ledger.sqlite-journal"] {
            let _ = std::fs::remove_file(s.path("home").join(f));
        }
        let _ = std::fs::remove_dir_all(s.path("out"));
        s.ok(&["entitlement", "add", "--home", "home", "--product", PRODUCT, "--machines", "1000", "--name", "bulk"]);
    };
    let bulk = || {
        let mut c = s.cmd(&[
            "token",
            "issue-bulk",
            "--home",
            "home",
            "--entitlement",
            "bulk",
            "--requests-file",
            "reqs.txt",
            "--out",
            "out",
            "--chunk",
            "2",
            "--quiet",
        ]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    fresh();
    let steps = write_steps(&s, bulk());
    let count = |p: &str| steps.iter().filter(|t| t.point == p).count();
    assert_eq!((count("ledger.commit"), count("bulk.token-file")), (N / 2, N), "{steps:?}");
    for (i, step) in steps.iter().enumerate() {
        fresh();
        let r = run_faulted(bulk(), step, "");
        assert_eq!(r.0, 137, "stopped at {step}: {r:?}");
        let (rows, files) = check_ledger(&s, i);
        assert!(files <= rows && rows <= N, "stopped at {step}: {rows} rows, {files} files");
        // The documented recovery: the same batch again completes it.
        assert!(bulk().status().unwrap().success(), "re-run after {step}");
        assert_eq!(check_ledger(&s, i), (N, N), "re-run after {step}");
    }
    eprintln!(
        "issue-bulk: {} write steps: {}",
        steps.len(),
        steps.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    );
}

#[test]
fn sigkill_during_issue_bulk_keeps_ledger_and_files_consistent() {
    const N: usize = 60;
    let s = Sandbox::new();
    s.ok(&["issuer", "init", "--org", "tka", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]);
    std::fs::write(s.path("reqs.txt"), bulk_requests(N)).unwrap();
    let fresh = || {
        for f in ["ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm", "ledger.sqlite-journal"] {
            let _ = std::fs::remove_file(s.path("home").join(f));
        }
        let _ = std::fs::remove_dir_all(s.path("out"));
        s.ok(&["entitlement", "add", "--home", "home", "--product", PRODUCT, "--machines", "1000", "--name", "bulk"]);
    };
    let bulk = || {
        let mut c = s.cmd(&[
            "token",
            "issue-bulk",
            "--home",
            "home",
            "--entitlement",
            "bulk",
            "--requests-file",
            "reqs.txt",
            "--out",
            "out",
            "--quiet",
        ]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    fresh();
    let t = Instant::now();
    assert!(bulk().status().unwrap().success());
    let span = t.elapsed();
    eprintln!("one bulk run of {N} takes about {span:?}");
    assert_eq!(check_ledger(&s, 0), (N, N));

    let mut rng = Rng::from_env();
    let started = Instant::now();
    let (mut iterations, mut killed) = (0, 0);
    while iterations < 40 && started.elapsed() < Duration::from_secs(25) {
        iterations += 1;
        // Half the time from scratch (kills land in the first transaction),
        // half a re-run after deleting some token files (kills land in the recovery).
        if iterations % 2 == 0 {
            fresh();
        } else if let Ok(dir) = std::fs::read_dir(s.path("out")) {
            for (i, e) in dir.enumerate() {
                if i % 3 == 0 {
                    let _ = std::fs::remove_file(e.unwrap().path());
                }
            }
        }
        let mut child = bulk().spawn().unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(span.as_micros() as u64 * 6 / 5 + 1)));
        let _ = child.kill();
        if !child.wait().unwrap().success() {
            killed += 1;
        }
        check_ledger(&s, iterations);
        // The documented recovery: running the same batch again completes it,
        // with the same tokens and no extra seats.
        if iterations % 4 == 1 {
            assert!(bulk().status().unwrap().success(), "iteration {iterations}: re-run failed");
            assert_eq!(check_ledger(&s, iterations), (N, N), "iteration {iterations}: re-run did not complete");
        }
    }
    eprintln!("{iterations} bulk iterations, {killed} killed, in {:?}", started.elapsed());
    assert!(bulk().status().unwrap().success());
    assert_eq!(check_ledger(&s, iterations + 1), (N, N));
}

// ---------------------------------------------------------------------------
// The issuer home: rotations killed at every write step, and run at once.

/// `tka issuer health --home home`: (exit code, stdout, stderr).
fn health(s: &Sandbox) -> sandbox::Run {
    s.tka(&["issuer", "health", "--home", "home"])
}

/// Issues a token from `home` and checks it against `root` (the root the
/// home had before any rotation): the home works.
fn home_issues(s: &Sandbox, root: &str, what: &str) {
    if !s.path("req.json").exists() {
        s.ok(&["request", "create", "--product", PRODUCT, "--out", "req.json"]);
    }
    let r = s.tka(&["token", "issue", "--request", "req.json", "--home", "home", "--out", "t.jws", "--force"]);
    assert_eq!(r.0, 0, "{what}: the home does not issue: {r:?}");
    let r = s.tka(&["token", "verify", "t.jws", "--trust", root]);
    assert_eq!(r.0, 0, "{what}: the token does not verify: {r:?}");
}

/// F3: each rotation is stopped at each of its named write steps in turn
/// (`TKA_FAULT=<point>:<n>`, a test-hooks-only knob: the process `_exit`s,
/// no cleanup runs). Every time the home still works, as before or as
/// after (a token issued from it verifies against the original root),
/// `issuer health` exits 1 naming the leftovers and `tka issuer repair`,
/// and after the repair health is clean and the rotation runs again.
#[test]
fn rotation_killed_before_each_write_step_leaves_a_working_home_that_health_flags_and_repair_fixes() {
    let s = Sandbox::new();
    s.ok(&["issuer", "init", "--org", "tka", "--home", "pristine", "--root-bits", "2048", "--ca-bits", "2048"]);
    let pristine_config = s.read("pristine/tka-issuer.json");
    let restore = || {
        let _ = std::fs::remove_dir_all(s.path("home"));
        let st = Command::new("cp").args(["-a", "pristine", "home"]).current_dir(s.dir()).status().unwrap();
        assert!(st.success());
    };
    for cmd in ["rotate-signer", "rotate-ca", "rotate-root"] {
        let (mut before, mut after) = (0, 0);
        restore();
        let steps = write_steps(&s, s.cmd(&["issuer", cmd, "--home", "home"]));
        assert_eq!(health(&s).0, 0, "{cmd} completed: {:?}", health(&s));
        assert!(steps.iter().any(|t| t.point == "rotation.retire"), "{cmd}: {steps:?}");
        for step in &steps {
            restore();
            let what = format!("{cmd} killed at {step}");
            let r = run_faulted(s.cmd(&["issuer", cmd, "--home", "home"]), step, "");
            assert_eq!(r.0, 137, "{what}: {r:?}");
            // Works as before (the old configuration) or as after (a new one whose files all exist).
            if s.read("home/tka-issuer.json") == pristine_config {
                before += 1;
            } else {
                after += 1;
            }
            home_issues(&s, "pristine/root.pem", &what);
            let h = health(&s);
            assert_eq!(h.0, 1, "{what}: health must flag it: {h:?}");
            assert!(h.1.lines().any(|l| l.starts_with("ACTION\thome\t")), "{what}: {h:?}");
            assert!(h.2.contains("hint: run `tka issuer repair --home home`"), "{what}: {h:?}");
            let r = s.tka(&["issuer", "repair", "--home", "home"]);
            assert_eq!(r.0, 0, "{what}: repair: {r:?}");
            let h = health(&s);
            assert_eq!(h.0, 0, "{what}: health after repair: {h:?}");
            let leftovers: Vec<String> = std::fs::read_dir(s.path("home"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect();
            assert!(leftovers.is_empty(), "{what}: {leftovers:?}");
            home_issues(&s, "pristine/root.pem", &format!("{what}, repaired"));
        }
        let names: Vec<String> = steps.iter().map(ToString::to_string).collect();
        eprintln!(
            "{cmd}: {} write steps, killed {before} times before the switch, {after} after: {names:?}",
            steps.len()
        );
        assert!(before > 0 && after > 0, "{cmd}: kills landed on both sides of the switch");
    }
    // After a kill and a repair, the rotation itself runs through.
    restore();
    let r = sandbox::run(s.cmd(&["issuer", "rotate-root", "--home", "home"]).env("TKA_CRASH_AT_WRITE", "5"));
    assert_eq!(r.0, 137);
    s.ok(&["issuer", "repair", "--home", "home"]);
    s.ok(&["issuer", "rotate-root", "--home", "home"]);
    assert_eq!(health(&s).0, 0);
    home_issues(&s, "pristine/root.pem", "rotate-root after a repair");
}

/// Sets the standard token lifetime of `home`.
fn set_token_days(s: &Sandbox, days: u32) {
    let path = s.path("home/tka-issuer.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["token_days"] = days.into();
    std::fs::write(&path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
}

/// F2: two `rotate-signer --if-due` at once on a home whose signer is due:
/// exactly one rotates, the other waits for the lock and then finds the
/// new signer not due. Two forced script runs at once both rotate, one
/// after the other, and both exit 0.
#[test]
fn concurrent_signer_rotations_rotate_once_and_leave_a_healthy_home() {
    let s = Sandbox::new();
    s.ok(&["issuer", "init", "--org", "tka", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]);
    // A standard token of 500 days: the 400-day signer cannot cover it (due);
    // the 600-day signer a rotation makes can.
    set_token_days(&s, 500);

    let args = ["issuer", "rotate-signer", "--home", "home", "--if-due", "--days", "600", "--lock-wait", "5m"];
    let children: Vec<_> = (0..2).map(|_| s.cmd(&args).stdout(Stdio::piped()).spawn().unwrap()).collect();
    let outs: Vec<String> = children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "{o:?}");
            String::from_utf8(o.stdout).unwrap()
        })
        .collect();
    let rotated = outs.iter().filter(|o| o.starts_with("new signer: ")).count();
    let skipped = outs.iter().filter(|o| o.starts_with("no rotation due: ")).count();
    assert_eq!((rotated, skipped), (1, 1), "{outs:?}");
    assert_eq!(health(&s).0, 0, "{:?}", health(&s));
    home_issues(&s, "home/root.pem", "after two concurrent rotate-signer --if-due");

    // Two forced script runs at once: both rotate (one waits), both exit 0.
    set_token_days(&s, 180);
    let scripts: Vec<_> = (0..2)
        .map(|_| {
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rotate-signer.sh");
            s.command(script, &["--force", "home"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for c in scripts {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let retired = std::fs::read_dir(s.path("home/retired")).unwrap().count();
    assert_eq!(retired, 6, "three signers retired, with their keys");
    assert_eq!(health(&s).0, 0, "{:?}", health(&s));
    home_issues(&s, "home/root.pem", "after two concurrent forced scripts");
}

/// F2: `rotate-signer` and `rotate-ca` at once (two cron entries): they run
/// one after the other, each on what the other left; every file the
/// configuration names exists, nothing is orphaned, issuance works.
#[test]
fn concurrent_signer_and_ca_rotations_run_one_after_the_other() {
    let s = Sandbox::new();
    s.ok(&["issuer", "init", "--org", "tka", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]);
    for round in 0..2 {
        let children: Vec<_> = ["rotate-signer", "rotate-ca"]
            .iter()
            .map(|cmd| {
                s.cmd(&["issuer", cmd, "--home", "home", "--lock-wait", "5m"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "round {round}: {}", String::from_utf8_lossy(&o.stderr));
        }
        let h = health(&s);
        assert_eq!(h.0, 0, "round {round}: {h:?}");
        home_issues(&s, "home/root.pem", &format!("round {round}"));
    }
    let cfg: serde_json::Value = serde_json::from_str(&s.read("home/tka-issuer.json")).unwrap();
    let ca = s.ok(&["cert", "inspect", &format!("home/{}", cfg["ca_cert"].as_str().unwrap()), "--json"]);
    assert!(ca.contains("CN=tka Issuing CA G3"), "two CA rotations: {ca}");
}
