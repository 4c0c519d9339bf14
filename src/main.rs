//! `kaspec`: the command line. Parsing, validation, progress and exit codes;
//! the work is done by kaspec-harness and kaspec-suites.
//!
//! Exit status: 0 every result pass / non-strict / informational /
//! unsupported (or a documented deviation), 1 a fail, 2 a harness error or
//! bad input.

mod compare;
mod progress;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};
use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::{Report, Share};
use kaspec_suites::ctx::ServeCommand;
use kaspec_suites::registry;
use kaspec_suites::runner::{self, DEFAULT_FAULTS};
use progress::{print_summary, Progress_};
use kaspec_suites::network::NetworkProfile;
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
        /// Fault to apply, or `all`. Repeatable. Default: blackhole and reset
        /// (`--help` lists every fault).
        #[arg(long = "fault", value_name = "NAME", long_help = fault_help())]
        faults: Vec<String>,
        /// A TOML client profile (see fixtures/profiles/).
        #[arg(long, value_name = "FILE")]
        profile: Option<PathBuf>,
        /// A TOML client adapter (see fixtures/clients/, docs/clients.md):
        /// the program its cases run in place of their library client,
        /// named in the results as the file says.
        #[arg(long, value_name = "FILE")]
        client: Option<PathBuf>,
        /// Only the library clients kaspec links: not the shipped adapters
        /// of fixtures/clients/ that a run without --client adds beside them.
        #[arg(long, conflicts_with = "client")]
        libraries_only: bool,
        /// A TOML network profile (see fixtures/networks/): its
        /// nat_idle_timeout drives the nat-expiry cases, its rtt, jitter and
        /// loss the delay and loss faults.
        #[arg(long, value_name = "FILE")]
        network: Option<PathBuf>,
        /// Override one key, e.g. `--set tcp.idle=3s`. Repeatable (`--help`
        /// lists every key).
        #[arg(long = "set", value_name = "KEY=VALUE", long_help = set_help())]
        sets: Vec<String>,
        /// Write report.json, report.md, report.html and junit.xml here
        /// (default reports/<run-id>, with reports/latest pointing at it).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Run each case N times; results show min/median/max and spread,
        /// the verdict uses every run.
        #[arg(long, value_name = "N", default_value_t = 1, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100))]
        repeat: u32,
        /// No progress output.
        #[arg(long)]
        quiet: bool,
        /// Print the report as JSON on stdout instead of the summary table.
        #[arg(long)]
        json: bool,
        /// Where the servers run: `netns` (kaspec starts them in network
        /// namespaces) or `docker` (the containers of docker-compose.yml,
        /// started with `docker compose up -d`; kaspec's client and router
        /// namespaces join the compose network's bridge).
        #[arg(long, value_enum, default_value_t = TestbedKind::Netns)]
        testbed: TestbedKind,
        /// With --testbed docker: the compose project whose containers to
        /// use (default: the only project with kaspec services).
        #[arg(long, value_name = "NAME", env = "KASPEC_COMPOSE_PROJECT")]
        compose_project: Option<String>,
        /// Run only share K of N of the plan (its case × fault units,
        /// dealt round-robin in order: the same split on every machine);
        /// `kaspec merge` joins the parts' reports.
        #[arg(long, value_name = "K/N")]
        partition: Option<Share>,
        /// Run N units (case × fault × repeat) at once, each in its own
        /// testbed (shared servers serve each its own connection), the
        /// longest first; results in plan order. A unit starved of CPU
        /// beside the others runs again alone. 1: one after the other.
        #[arg(long, value_name = "N", default_value_t = runner::DEFAULT_JOBS, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=64))]
        jobs: u32,
    },
    /// Join the reports of a run split with `--partition K/N` into one
    /// report (results in plan order, each part's environment kept). A
    /// missing or duplicated unit, or parts of different runs, is an error.
    /// Exit status as the run's.
    Merge {
        /// report.json files (or run folders holding one), one per part.
        #[arg(required = true, value_name = "REPORT")]
        reports: Vec<PathBuf>,
        /// Write report.json, report.md, report.html and junit.xml here
        /// (default reports/<run-id>, with reports/latest pointing at it).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print the report as JSON on stdout instead of the summary table.
        #[arg(long)]
        json: bool,
    },
    /// Compare reports: verdict changes, detection-time changes beyond the
    /// measured spread, cases added/removed (first vs last), all of them
    /// side by side, and client implementations as columns where a protocol
    /// has more than one. Exit status 1 on a regression.
    Compare {
        /// report.json files (or run folders holding one), oldest first.
        #[arg(required = true, num_args = 2.., value_name = "REPORT")]
        reports: Vec<PathBuf>,
        /// Also write compare.md and compare.html here.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// The view (`client`: a view, exit status 0).
        #[arg(long, value_enum, default_value_t = compare::By::Run)]
        by: compare::By,
    },
    /// List cases with their spec references.
    List {
        prefixes: Vec<String>,
        /// Print the whole catalogue (every case, its quoted sentence,
        /// faults and testbeds) as Markdown: docs/cases.md.
        #[arg(long, conflicts_with = "prefixes")]
        markdown: bool,
    },
    /// Review a client profile (against a network profile), rule by rule with
    /// sources, then measure what can confirm each finding. Exit status 1
    /// when a warning is confirmed by measurement.
    Validate {
        /// The client profile (TOML, see fixtures/profiles/).
        #[arg(long, value_name = "FILE")]
        profile: PathBuf,
        /// The network it runs on (TOML, see fixtures/networks/).
        #[arg(long, value_name = "FILE")]
        network: Option<PathBuf>,
        /// Override one key of the profile. Repeatable (`--help` lists every key).
        #[arg(long = "set", value_name = "KEY=VALUE", long_help = set_help())]
        sets: Vec<String>,
        /// Write validate.json and validate.md here (default reports/validate-<run-id>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        #[arg(long)]
        quiet: bool,
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => e.exit(),
        Err(e) => std::process::exit(bad_input(clap_one_line(&e.to_string()))),
    };
    let code = match cli.command {
        Command::Run { prefixes, faults, profile, client, libraries_only, network, sets, out, repeat, quiet, json, testbed, compose_project, partition, jobs } => {
            let docker = (testbed == TestbedKind::Docker).then_some(compose_project);
            run(prefixes, faults, profile, network, sets, out, Output { repeat: repeat as usize, quiet, json, docker, partition, jobs: jobs as usize, client, libraries_only })
        }
        Command::Merge { reports, out, json } => merge(&reports, out, json),
        Command::Compare { reports, out, by } => compare::run(&reports, out.as_deref(), by),
        Command::Validate { profile, network, sets, out, quiet } => validate(profile, network, sets, out, quiet),
        Command::List { prefixes, markdown } => list(&prefixes, markdown),
        Command::Clean => clean(),
        Command::Serve { args } => kaspec_suites::peers::main(&args),
    };
    // On Ctrl-C the handler is removing this run's namespaces and will exit
    // with 130: let it finish instead of racing it with our own exit code.
    let waiting = std::time::Instant::now();
    while kaspec_harness::cleanup::interrupted() && waiting.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if kaspec_harness::cleanup::interrupted() {
        std::process::exit(130);
    }
    std::process::exit(code);
}

/// Bad input: one line on stderr (a message that still holds a line break
/// has it escaped, so the culprit is never on a second line), exit status 2.
fn bad_input(msg: impl std::fmt::Display) -> i32 {
    eprintln!("kaspec: error: {}", msg.to_string().trim_end().replace('\n', "\\n"));
    2
}

/// clap's error as one line: its message and the culprit it lists, without
/// the usage, the tips and the pointer to --help.
fn clap_one_line(text: &str) -> String {
    let mut parts = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() && !line.starts_with("tip:") {
            parts.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    format!("{} (`--help` lists what is allowed)", parts.join(" "))
}

/// `--fault`'s long help: every fault, from the code that applies them.
fn fault_help() -> String {
    let mut h = String::from("Fault to apply, or `all` (every one below). Repeatable. Default: blackhole and reset.\n");
    for f in FaultKind::ALL {
        h.push_str(&format!("\n  {:<15} {}", f.name(), f.description()));
    }
    h
}

/// `--set`'s long help: every key, from the table that parses them.
fn set_help() -> String {
    let mut h = String::from("Override one key, e.g. `--set tcp.idle=3s`. Repeatable. Keys (default):\n");
    for k in kaspec_suites::registry::config().keys() {
        h.push_str(&format!("\n  {:<30} {} ({})", k.name, k.doc, if k.default.is_empty() { "unset" } else { k.default }));
    }
    h
}

fn list(prefixes: &[String], markdown: bool) -> i32 {
    if markdown {
        print!("{}", kaspec_suites::catalog::markdown());
        return 0;
    }
    let cases = match registry::select(prefixes) {
        Ok(c) => c,
        Err(e) => return bad_input(e),
    };
    for c in cases {
        println!("{:<26} {:<38} {}", c.id, c.spec, c.description);
    }
    0
}

/// `kaspec clean`: what it removed, by category; exit status 2 if
/// something tagged could not be removed.
fn clean() -> i32 {
    if let Err(e) = kaspec_harness::caps::require_base() {
        return bad_input(e);
    }
    let mut r = kaspec_harness::testbed::clean_leftovers();
    // Strays land in the working directory of the run that left them: here,
    // or the source tree (where `cargo test` runs).
    let dirs = [PathBuf::from("."), fixtures_dir().join(".."), PathBuf::from(env!("CARGO_MANIFEST_DIR"))];
    let (strays, failed) = kaspec_harness::cleanup::remove_strays(&dirs, &registry::stray_files());
    r.strays = strays;
    r.failed.extend(failed);
    for (ns, pid) in &r.in_use {
        println!("left {ns} alone: its run (pid {pid}) is still going");
    }
    let list = |v: &[String]| if v.is_empty() { String::new() } else { format!(": {}", v.join(", ")) };
    let removed_ns: Vec<String> = r.namespaces.iter().filter(|n| !r.failed.contains(n)).cloned().collect();
    println!("namespaces: removed {}{}", removed_ns.len(), list(&removed_ns));
    println!("processes: killed {}", r.processes);
    println!("directories: removed {}{}", r.dirs.len(), list(&r.dirs));
    println!("stray files: removed {}{}", r.strays.len(), list(&r.strays));
    if !r.claims.is_empty() {
        println!("address claims: released {} on a compose network{}", r.claims.len(), list(&r.claims));
    }
    if r.namespaces.is_empty() && r.processes == 0 && r.dirs.is_empty() && r.strays.is_empty() && r.claims.is_empty() {
        println!("nothing to clean: nothing of a finished kaspec run on this machine");
    }
    if r.failed.is_empty() {
        0
    } else {
        bad_input(format!("could not remove {}", r.failed.join(", ")))
    }
}

/// The fixtures folder: $KASPEC_FIXTURES, ./fixtures, or the source tree's;
/// absolute, because servers are given files in it and some change their
/// working directory (mariadbd reads --init-file from its datadir).
fn fixtures_dir() -> PathBuf {
    let dir = match std::env::var("KASPEC_FIXTURES") {
        Ok(p) => PathBuf::from(p),
        Err(_) if Path::new("fixtures/mosquitto").is_dir() => PathBuf::from("fixtures"),
        Err(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
    };
    std::path::absolute(&dir).unwrap_or(dir)
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

/// How a run reports itself.
struct Output {
    repeat: usize,
    quiet: bool,
    json: bool,
    /// `--testbed docker` with its `--compose-project`.
    docker: Option<Option<String>>,
    /// `--partition K/N`.
    partition: Option<Share>,
    /// `--jobs N`.
    jobs: usize,
    /// `--client FILE`.
    client: Option<PathBuf>,
    /// `--libraries-only`.
    libraries_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TestbedKind {
    Netns,
    Docker,
}

/// Reads report.json files (or run folders holding one): each with the
/// file it came from.
fn read_reports(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Report)>, String> {
    paths
        .iter()
        .map(|p| {
            let file = if p.is_dir() { p.join("report.json") } else { p.clone() };
            Report::read_json(&file).map(|r| (file, r)).map_err(|e| e.to_string())
        })
        .collect()
}

/// The configuration from a profile and `--set` pairs, in that order.
fn build_config(profile: Option<&Path>, sets: &[String]) -> Result<Config, String> {
    let mut config = kaspec_suites::registry::config();
    if let Some(p) = profile {
        config.apply_profile(p).map_err(|e| e.to_string())?;
    }
    for s in sets {
        config.set_pair(s).map_err(|e| e.to_string())?;
    }
    Ok(config)
}

/// Everything a run needs once the input is valid: checks the machine,
/// creates the output folder, installs the Ctrl-C handler.
/// `docker`: Some(compose project, if named) for `--testbed docker`.
fn context(
    config: Config,
    network: Option<NetworkProfile>,
    cases: &[&'static kaspec_suites::CaseDef],
    dir: &Path,
    docker: Option<&Option<String>>,
) -> Result<Ctx, String> {
    let fixtures = fixtures_dir();
    let deviations = kaspec_suites::deviations::load(&fixtures.join("deviations.toml"))?;
    let stack = match docker {
        None => {
            registry::check_prerequisites(cases).map_err(|e| e.to_string())?;
            None
        }
        Some(project) => {
            // The servers are the containers': only the path's tools are needed here.
            kaspec_harness::caps::require_base().map_err(|e| e.to_string())?;
            Some(kaspec_harness::testbed::compose::discover(project.as_deref(), Duration::from_secs(240)).map_err(|e| e.to_string())?)
        }
    };
    let program = std::env::current_exe().map_err(|e| format!("cannot find the kaspec binary itself: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("--out {}: cannot create it: {e}", dir.display()))?;
    kaspec_harness::cleanup::install_signal_handler();
    Ok(Ctx {
        config,
        run_dir: dir.to_path_buf(),
        fixtures,
        serve: ServeCommand { program, args: vec!["serve".into()] },
        deviations,
        shift_window_ms: 0,
        network: network.unwrap_or_default(),
        shared: Default::default(),
        docker: stack,
        client: None,
    })
}

fn new_run_id() -> String {
    format!("{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), kaspec_harness::testbed::new_tag())
}

#[allow(clippy::too_many_arguments)]
fn run(
    prefixes: Vec<String>,
    faults: Vec<String>,
    profile: Option<PathBuf>,
    network: Option<PathBuf>,
    sets: Vec<String>,
    out: Option<PathBuf>,
    output: Output,
) -> i32 {
    // Everything is validated before anything is started.
    let cases = match registry::select(&prefixes) {
        Ok(c) => c,
        Err(e) => return bad_input(e),
    };
    let faults = match parse_faults(&faults) {
        Ok(f) => f,
        Err(e) => return bad_input(e),
    };
    let config = match build_config(profile.as_deref(), &sets) {
        Ok(c) => c,
        Err(e) => return bad_input(e),
    };
    // --client, else the profile's [client] adapter.
    let client_file = output.client.clone().or_else(|| config.client_adapter().map(Path::to_path_buf));
    let adapter = match client_file.as_deref().map(|f| kaspec_suites::external::Adapter::load(f, &registry::external_protocols(), &config)).transpose() {
        Ok(a) => a,
        Err(e) => return bad_input(e),
    };
    if let Some(Err(e)) = adapter.as_ref().map(|a| a.fits(&config)) {
        return bad_input(e);
    }
    let cases = match &adapter {
        Some(a) => match registry::with_client(&cases, a) {
            Ok(c) => c,
            Err(e) => return bad_input(e),
        },
        None => cases,
    };
    let run_id = new_run_id();
    let (dir, latest) = match out {
        Some(d) => (d, false),
        None => (PathBuf::from("reports").join(&run_id), true),
    };
    let net = match network.as_deref().map(NetworkProfile::load).transpose() {
        Ok(n) => n,
        Err(e) => return bad_input(e),
    };
    let mut ctx = match context(config, net, &cases, &dir, output.docker.as_ref()) {
        Ok(c) => c,
        Err(e) => return bad_input(e),
    };
    ctx.client = adapter.map(std::sync::Arc::new);
    if let (Some(stack), false) = (&ctx.docker, output.quiet) {
        eprintln!("kaspec: testbed docker: {}", stack.describe());
    }
    let command: Vec<String> = std::env::args().collect();
    let mut progress = Progress_::new(output.quiet);
    if !output.quiet {
        let jobs = if output.jobs > 1 { format!(", {} at once", output.jobs) } else { String::new() };
        eprintln!("kaspec: run {run_id}: {} case(s) × {} fault(s){jobs}, report in {}", cases.len(), faults.len(), dir.display());
    }
    let opts = runner::Options { repeat: output.repeat, share: output.partition, jobs: output.jobs };
    let mut report = runner::run(&ctx, &cases, &faults, opts, &run_id, command.clone(), |p| progress.on(p));
    // Without --client, the shipped adapters' programs run beside the
    // library clients in the cases that take them (one report: results
    // name each client). Not in a partitioned run (its plan is the
    // library's) nor on the docker testbed, nor with --libraries-only.
    if ctx.client.is_none() && !output.libraries_only && output.partition.is_none() && ctx.docker.is_none() {
        match registry::shipped_clients(&ctx.fixtures, &ctx.config) {
            Err(e) => report.notes.push(format!("shipped clients: {e}")),
            Ok((shipped, notes)) => {
                report.notes.extend(notes);
                for a in shipped {
                    let Ok(sel) = registry::with_client(&cases, &a) else { continue };
                    if kaspec_harness::cleanup::interrupted() {
                        break;
                    }
                    // A knob below what the program takes is raised for its run (noted).
                    let (raised, raised_notes) = a.raised(&ctx.config);
                    report.notes.extend(raised_notes);
                    let base = std::mem::replace(&mut ctx.config, raised);
                    ctx.client = Some(std::sync::Arc::new(a));
                    let more = runner::run(&ctx, &sel, &faults, opts, &run_id, command.clone(), |p| progress.on(p));
                    ctx.config = base;
                    report.results.extend(more.results);
                    report.errors.extend(more.errors);
                    report.notes.extend(more.notes);
                    report.finished_at = more.finished_at;
                }
                ctx.client = None;
                report.stale_deviations = kaspec_suites::deviations::stale(&ctx.deviations, &report.results);
            }
        }
    }
    progress.finish();
    if kaspec_harness::cleanup::interrupted() {
        return 130;
    }
    finish(&report, &dir, latest.then_some(run_id.as_str()), output.json)
}

/// Writes a report into `dir` (pointing reports/latest at `latest`),
/// prints it, and gives the run's exit status.
fn finish(report: &Report, dir: &Path, latest: Option<&str>, json: bool) -> i32 {
    if let Err(e) = runner::write(report, dir) {
        return bad_input(e);
    }
    if let Some(run_id) = latest {
        let link = Path::new("reports/latest");
        let _ = std::fs::remove_file(link);
        if let Err(e) = std::os::unix::fs::symlink(run_id, link) {
            eprintln!("kaspec: warning: could not point reports/latest at {run_id}: {e}");
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(report).unwrap_or_default());
    } else {
        print_summary(report);
        println!("report: {} (and report.md, report.html, junit.xml)", dir.join("report.json").display());
    }
    report.exit_code()
}

/// `kaspec merge`: the parts of a split run as one report. Deviations that
/// explained nothing are judged again on the merged results (a deviation
/// of a case run under two faults may have fired in one part only).
fn merge(paths: &[PathBuf], out: Option<PathBuf>, json: bool) -> i32 {
    let parts: Vec<(String, Report)> = match read_reports(paths) {
        Ok(r) => r.into_iter().map(|(f, r)| (f.display().to_string(), r)).collect(),
        Err(e) => return bad_input(e),
    };
    let run_id = new_run_id();
    let mut report = match kaspec_harness::report::merge::merge(&run_id, std::env::args().collect(), &parts) {
        Ok(r) => r,
        Err(e) => return bad_input(e),
    };
    if let Ok(deviations) = kaspec_suites::deviations::load(&fixtures_dir().join("deviations.toml")) {
        report.stale_deviations.retain(|d| kaspec_suites::deviations::stale(&deviations, &report.results).contains(d));
    }
    let (dir, latest) = match out {
        Some(d) => (d, false),
        None => (PathBuf::from("reports").join(&run_id), true),
    };
    finish(&report, &dir, latest.then_some(run_id.as_str()), json)
}

fn validate(profile: PathBuf, network: Option<PathBuf>, sets: Vec<String>, out: Option<PathBuf>, quiet: bool) -> i32 {
    let config = match build_config(Some(&profile), &sets) {
        Ok(c) => c,
        Err(e) => return bad_input(e),
    };
    let net = match network.as_deref().map(kaspec_suites::network::NetworkProfile::load).transpose() {
        Ok(n) => n,
        Err(e) => return bad_input(e),
    };
    let findings = kaspec_suites::validate::review(&config, net.as_ref());
    let cases: Vec<&'static kaspec_suites::CaseDef> = registry::all()
        .into_iter()
        .filter(|c| findings.iter().any(|f| f.check.as_ref().map(|k| k.case.id == c.id).unwrap_or(false)))
        .collect();
    let dir = out.unwrap_or_else(|| PathBuf::from("reports").join(format!("validate-{}", new_run_id())));
    let ctx = match context(config, net.clone(), &cases, &dir, None) {
        Ok(c) => c,
        Err(e) => return bad_input(e),
    };
    if !quiet {
        eprintln!("kaspec: validate {}: {} finding(s) from the static review; measuring {} case(s)", profile.display(), findings.len(), cases.len());
    }
    let judged = kaspec_suites::validate::confirm(&ctx, &findings, |what| {
        if !quiet {
            eprintln!("  measuring {what}");
        }
    });
    if kaspec_harness::cleanup::interrupted() {
        return 130; // nothing judged during the teardown is shown
    }
    let (judged, results) = match judged {
        Ok(j) => j,
        Err(e) => {
            eprintln!("kaspec: error: harness error while measuring: {e}");
            return 2;
        }
    };
    let name = |p: &Path| p.display().to_string();
    let md = kaspec_suites::validate::markdown(&name(&profile), network.as_deref().map(name).as_deref(), &judged);
    print!("{md}");
    let json = serde_json::json!({ "profile": name(&profile), "network": network.as_deref().map(name), "findings": judged, "results": results });
    let written = std::fs::write(dir.join("validate.md"), &md)
        .and_then(|_| std::fs::write(dir.join("validate.json"), serde_json::to_string_pretty(&json).unwrap_or_default()));
    if let Err(e) = written {
        return bad_input(format!("--out {}: {e}", dir.display()));
    }
    println!("\nwritten: {} and validate.md", dir.join("validate.json").display());
    kaspec_suites::validate::exit_code(&judged)
}
