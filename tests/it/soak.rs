//! The interrupt soak (issue 14): for several protocols and `--fault all`,
//! start `kaspec run`, deliver SIGINT, SIGTERM or SIGKILL (then `kaspec
//! clean`) at a seeded random moment, and assert that nothing is left: no
//! namespace of the run, no process carrying one of its tags in its
//! environment, no scratch directory, no file in the working directory, no
//! change to the root namespace's nftables / iptables rulesets; an
//! interrupted run prints nothing after its interrupt line.
//!
//! Bounded by default (6 trials, about two minutes); `KASPEC_SOAK=N` runs N
//! trials, `KASPEC_SOAK_SEED=S` replays a seed (printed by every run). Needs
//! root and the servers of fixtures/bootstrap.sh.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

const PROTOCOLS: [&str; 4] = ["amqp/", "mqtt/", "tcp/", "postgres/"];

/// xorshift64*: enough to spread the moments; the seed replays them.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// The root namespace's packet-filter rules, without counters.
fn root_rules() -> String {
    let mut all = String::new();
    for (prog, args) in [("nft", &["list", "ruleset"][..]), ("iptables-save", &[][..]), ("ip6tables-save", &[][..])] {
        if let Ok(o) = Command::new(prog).args(args).output() {
            for line in String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.starts_with('#')) {
                let line: String = line.split_whitespace().filter(|w| !(w.starts_with('[') && w.ends_with(']') && w.contains(':'))).collect::<Vec<_>>().join(" ");
                all.push_str(&line);
                all.push('\n');
            }
        }
    }
    all
}

/// The tags whose owner record names `pid`.
fn tags_of(pid: u32) -> Vec<String> {
    let pid = pid.to_string();
    std::fs::read_dir("/run/kaspec")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|r| r.split_whitespace().next() == Some(pid.as_str())))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// What carries one of `tags`: namespaces, processes (by environment), scratch directories.
fn leftovers(tags: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    for t in tags {
        let prefix = format!("kaspec-{t}-");
        for e in std::fs::read_dir("/run/netns").into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                left.push(format!("namespace {}", e.file_name().to_string_lossy()));
            }
        }
        for e in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                left.push(format!("directory {}", e.path().display()));
            }
        }
        let needle = format!("KASPEC_RUN_TAG={t}");
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let zombie = stat.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z'));
            if !zombie && String::from_utf8_lossy(&env).split('\0').any(|v| v == needle) {
                let cmd = std::fs::read_to_string(e.path().join("cmdline")).unwrap_or_default().replace('\0', " ");
                left.push(format!("process {} ({cmd})", e.file_name().to_string_lossy()));
            }
        }
    }
    left
}

fn kaspec(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kaspec"));
    c.current_dir(dir).env("KASPEC_FIXTURES", Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"));
    c
}

#[test]
fn interrupts_at_random_moments_leave_nothing_behind() {
    let _root = crate::root_namespace();
    let trials: usize = std::env::var("KASPEC_SOAK").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    let seed: u64 = std::env::var("KASPEC_SOAK_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("soak: {trials} trial(s), seed {seed} (KASPEC_SOAK_SEED={seed} replays them)");
    let mut rng = Rng(seed);
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kaspec-soak");
    for i in 0..trials {
        let protocol = PROTOCOLS[i % PROTOCOLS.len()];
        let signal = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGKILL][rng.below(3) as usize];
        let after = Duration::from_millis(300 + rng.below(11_000));
        let what = format!("trial {i} (seed {seed}): {protocol} --fault all, {signal} after {} ms", after.as_millis());
        eprintln!("soak: {what}");
        let work = base.join(format!("work-{i}"));
        let out = base.join(format!("out-{i}"));
        let _ = std::fs::remove_dir_all(&work);
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&work).unwrap();
        let rules = root_rules();
        let child = kaspec(&work)
            .args(["run", protocol, "--fault", "all", "--out", out.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut tags: Vec<String> = Vec::new();
        let started = Instant::now();
        while started.elapsed() < after {
            for t in tags_of(pid) {
                if !tags.contains(&t) {
                    tags.push(t);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
        // Wait with a deadline (reading its output so that it never blocks on a pipe).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        let o = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(o) => o.unwrap(),
            Err(_) => {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
                panic!("{what}: kaspec did not exit within 60 s of the signal");
            }
        };
        let err = String::from_utf8_lossy(&o.stderr);
        if o.status.signal().is_some() {
            // SIGKILL (or a signal before the handler was installed): `kaspec clean`.
            let c = kaspec(&work).arg("clean").output().unwrap();
            assert!(c.status.success(), "{what}: kaspec clean: {}{}", String::from_utf8_lossy(&c.stdout), String::from_utf8_lossy(&c.stderr));
        } else if o.status.code() == Some(130) {
            let lines: Vec<&str> = err.lines().collect();
            let at = lines.iter().position(|l| l.starts_with("kaspec: interrupted")).unwrap_or_else(|| panic!("{what}: no interrupt line: {err}"));
            assert_eq!(at + 1, lines.len(), "{what}: printed after the interrupt: {err}");
            assert!(o.stdout.is_empty(), "{what}: a summary after the interrupt");
        } else {
            assert!(matches!(o.status.code(), Some(0 | 1)), "{what}: the run ended before the signal, but with {:?}: {err}", o.status);
        }
        let left = leftovers(&tags);
        assert!(left.is_empty(), "{what}: left behind: {left:?}");
        let files: Vec<String> = std::fs::read_dir(&work).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        assert!(files.is_empty(), "{what}: files in the working directory: {files:?}");
        assert_eq!(root_rules(), rules, "{what}: the root namespace's rules changed");
        let _ = std::fs::remove_dir_all(&work);
        let _ = std::fs::remove_dir_all(&out);
    }
}
