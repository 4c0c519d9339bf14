//! `kaspec`: the command line. Parsing, validation, progress and exit codes;
//! the work is done by kaspec-harness and kaspec-suites.
//!
//! Exit status: 0 every result pass / non-strict / informational /
//! unsupported (or a documented deviation), 1 a fail, 2 a harness error or
//! bad input.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};
use kaspec_harness::expect::{ms, Verdict};
use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::Report;
use kaspec_suites::case::{self, ServeCommand};
use kaspec_suites::runner::{self, Progress, DEFAULT_FAULTS};
use kaspec_suites::{Config, Ctx};

#[derive(Parser)]
#[command(name = "kaspec", version, about = "Keepalive conformance suite: how long each side takes to notice its peer is gone")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run cases (all, or those whose id starts with a prefix) under faults.
    Run {
        /// Case id prefixes, e.g. `mqtt/` or `tcp/rfc1122-4.2.3.6/1`.
        prefixes: Vec<String>,
        /// Fault to apply: blackhole, blackhole-up, blackhole-down, reset, or
        /// all. Repeatable. Default: blackhole and reset.
        #[arg(long = "fault", value_name = "NAME")]
        faults: Vec<String>,
        /// A TOML client profile (see fixtures/profiles/).
        #[arg(long, value_name = "FILE")]
        profile: Option<PathBuf>,
        /// Override one key, e.g. `--set tcp.idle=3s`. Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Write report.json and report.md here (default reports/<run-id>,
        /// with reports/latest pointing at it).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// List cases with their spec references.
    List {
        prefixes: Vec<String>,
    },
    /// Remove namespaces, links, rules and processes a killed run left behind.
    Clean,
    /// Run one of our own servers (used by the harness inside the server host).
    #[command(hide = true)]
    Serve {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run { prefixes, faults, profile, sets, out } => run(prefixes, faults, profile, sets, out),
        Command::List { prefixes } => list(&prefixes),
        Command::Clean => clean(),
        Command::Serve { args } => kaspec_suites::serve::main(&args),
    };
    // On Ctrl-C the handler is removing this run's namespaces and will exit
    // with 130: let it finish instead of racing it with our own exit code.
    while kaspec_harness::cleanup::interrupted() {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::process::exit(code);
}

fn bad_input(msg: impl std::fmt::Display) -> i32 {
    eprintln!("kaspec: error: {msg}");
    2
}

fn list(prefixes: &[String]) -> i32 {
    let cases = match case::select(prefixes) {
        Ok(c) => c,
        Err(e) => return bad_input(e),
    };
    for c in cases {
        println!("{:<26} {:<38} {}", c.id, c.spec, c.description);
    }
    0
}

fn clean() -> i32 {
    if let Err(e) = kaspec_harness::caps::require_base() {
        return bad_input(e);
    }
    let r = kaspec_harness::cleanup::clean_leftovers();
    for (ns, pid) in &r.in_use {
        println!("left {ns} alone: its run (pid {pid}) is still going");
    }
    if r.namespaces.is_empty() {
        println!("nothing to clean: no namespace of a finished kaspec run on this machine");
    } else {
        println!("removed {} namespace(s) and {} process(es): {}", r.namespaces.len() - r.failed.len(), r.processes, r.namespaces.join(", "));
    }
    if r.failed.is_empty() {
        0
    } else {
        bad_input(format!("could not remove {}", r.failed.join(", ")))
    }
}

/// The fixtures folder: $KASPEC_FIXTURES, ./fixtures, or the source tree's.
fn fixtures_dir() -> PathBuf {
    if let Ok(p) = std::env::var("KASPEC_FIXTURES") {
        return PathBuf::from(p);
    }
    let local = PathBuf::from("fixtures");
    if local.join("mosquitto").is_dir() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn parse_faults(names: &[String]) -> Result<Vec<FaultKind>, String> {
    if names.is_empty() {
        return Ok(DEFAULT_FAULTS.to_vec());
    }
    let mut out = Vec::new();
    for n in names {
        let more = if n == "all" { FaultKind::ALL.to_vec() } else { vec![FaultKind::parse(n).map_err(|e| format!("--fault {n}: {e}, or all"))?] };
        for f in more {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

fn run(prefixes: Vec<String>, faults: Vec<String>, profile: Option<PathBuf>, sets: Vec<String>, out: Option<PathBuf>) -> i32 {
    // Everything is validated before anything is started.
    let cases = match case::select(&prefixes) {
        Ok(c) => c,
        Err(e) => return bad_input(e),
    };
    let faults = match parse_faults(&faults) {
        Ok(f) => f,
        Err(e) => return bad_input(e),
    };
    let mut config = Config::default();
    if let Some(p) = &profile {
        if let Err(e) = config.apply_profile(p) {
            return bad_input(e);
        }
    }
    for s in &sets {
        if let Err(e) = config.set_pair(s) {
            return bad_input(e);
        }
    }
    let fixtures = fixtures_dir();
    let deviations = match kaspec_suites::deviations::load(&fixtures.join("deviations.toml")) {
        Ok(d) => d,
        Err(e) => return bad_input(e),
    };
    if let Err(e) = case::check_prerequisites(&cases) {
        return bad_input(e);
    }
    let program = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return bad_input(format!("cannot find the kaspec binary itself: {e}")),
    };
    let run_id = format!("{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), kaspec_harness::netns::new_tag());
    let (dir, latest) = match out {
        Some(d) => (d, false),
        None => (PathBuf::from("reports").join(&run_id), true),
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return bad_input(format!("--out {}: cannot create it: {e}", dir.display()));
    }
    kaspec_harness::cleanup::install_signal_handler();

    let ctx = Ctx { config, run_dir: dir.clone(), fixtures, serve: ServeCommand { program, args: vec!["serve".into()] }, deviations };
    let command: Vec<String> = std::env::args().collect();
    let tty = std::io::stderr().is_terminal();
    eprintln!("kaspec: run {run_id}: {} case(s) × {} fault(s), report in {}", cases.len(), faults.len(), dir.display());
    let report = runner::run(&ctx, &cases, &faults, &run_id, command, |p| progress(p, tty));
    if kaspec_harness::cleanup::interrupted() {
        return 130;
    }
    if let Err(e) = runner::write(&report, &dir) {
        return bad_input(e);
    }
    if latest {
        let link = Path::new("reports/latest");
        let _ = std::fs::remove_file(link);
        if let Err(e) = std::os::unix::fs::symlink(&run_id, link) {
            eprintln!("kaspec: warning: could not point reports/latest at {run_id}: {e}");
        }
    }
    print_summary(&report);
    println!("report: {} and report.md", dir.join("report.json").display());
    report.exit_code()
}

fn progress(p: Progress<'_>, tty: bool) {
    match p {
        Progress::Start { index, total, case, fault, budget } => {
            let line = format!("[{index:>2}/{total}] {} × {fault} (at most {})", case.id, ms(budget.as_millis() as u64));
            if tty {
                eprint!("{line} …\r");
            } else {
                eprintln!("{line}");
            }
        }
        Progress::Done { index, total, case, fault, results, elapsed } => {
            if tty {
                eprint!("\x1b[2K");
            }
            eprintln!("[{index:>2}/{total}] {} × {fault} done in {}", case.id, ms(elapsed.as_millis() as u64));
            for r in results {
                let measured = match r.detection_ms {
                    Some(v) => format!("detected after {}", ms(v)),
                    None if r.verdict == Verdict::Unsupported => String::new(),
                    None => format!("not detected in {}", ms(r.deadline_ms)),
                };
                let dev = if r.known_deviation.is_some() { " (known deviation)" } else { "" };
                eprintln!("        {:<6} {:<20} {measured}; expected {} → {}{dev}", r.side, r.implementation.name, r.expected.describe(), r.verdict);
            }
        }
        Progress::Error { index, total, case, fault, message } => {
            if tty {
                eprint!("\x1b[2K");
            }
            eprintln!("[{index:>2}/{total}] {} × {fault}: harness error: {message}", case.id);
        }
    }
}

fn print_summary(report: &Report) {
    println!();
    println!("{:<26} {:<14} {:<6} {:>12} {:>26}  verdict", "case", "fault", "side", "measured", "expected");
    for r in &report.results {
        let measured = r.detection_ms.map(ms).unwrap_or_else(|| "—".into());
        let verdict = match (&r.known_deviation, r.verdict) {
            (Some(_), Verdict::Fail) => "fail (known deviation)".to_string(),
            (_, v) => v.to_string(),
        };
        println!("{:<26} {:<14} {:<6} {:>12} {:>26}  {verdict}", r.case, r.fault, r.side, measured, r.expected.describe());
    }
    for e in &report.errors {
        println!("{:<26} {:<14} harness error: {}", e.case, e.fault, e.message.lines().next().unwrap_or_default());
    }
    println!("\n{}", report.summary_line());
}
