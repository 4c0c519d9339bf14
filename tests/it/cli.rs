//! The `kaspec` command as a user drives it: bad input, a real run writing
//! its report, a run split in three partitions and merged, Ctrl-C, and
//! `kill -9` followed by `kaspec clean`. Needs root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn kaspec() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kaspec"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kaspec-cli").join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn run(args: &[&str]) -> Output {
    kaspec().args(args).output().unwrap()
}

#[test]
fn bad_input_is_one_line_exit_2_and_starts_nothing() {
    let out = tmp("bad");
    let o = out.to_str().unwrap();
    let profile = tmp("bad-profile").with_extension("toml");
    std::fs::create_dir_all(profile.parent().unwrap()).unwrap();
    std::fs::write(&profile, "[tcp]\nidle = \"2s\"\nkeepidle = \"3s\"\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", "nosuch/", "--out", o], "nosuch/"),
        (vec!["run", "--fault", "blakhole", "--out", o], "blakhole"),
        (vec!["run", "--set", "tcp.idle=1500ms", "--out", o], "tcp.idle=1500ms"),
        (vec!["run", "--set", "tcp.idel=3s", "--out", o], "tcp.idel"),
        (vec!["run", "--set", "mqtt.keep_alive=2", "--out", o], "unit"),
        (vec!["run", "--set", "tcp.count=-1", "--out", o], "tcp.count"),
        (vec!["run", "--testbed", "docker", "--compose-project", "kaspec-no-such-project", "--out", o], "docker testbed"),
        (vec!["run", "--profile", "/nonexistent/p.toml", "--out", o], "/nonexistent/p.toml"),
        (vec!["run", "--profile", profile.to_str().unwrap(), "--out", o], "tcp.keepidle"),
        (vec!["list", "quic/"], "quic/"),
        (vec!["run", "--partition", "4/3", "--out", o], "4/3"),
        (vec!["run", "--partition", "0/3", "--out", o], "1 ≤ K ≤ N"),
        (vec!["run", "--partition", "2", "--out", o], "K/N"),
        (vec!["run", "--jobs", "0", "--out", o], "--jobs"),
        (vec!["run", "--jobs", "65", "--out", o], "1..=64"),
        (vec!["merge", "/nonexistent/part", "--out", o], "reading /nonexistent/part"),
    ];
    for (args, needle) in cases {
        let r = run(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: one line, got: {err}");
        assert!(err.starts_with("kaspec: error:") && err.contains(needle), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} created its output folder");
    }
}

/// Issue 14: inputs that slipped through or named their culprit on a second line.
#[test]
fn lenient_or_unclear_input_is_one_line_naming_the_culprit() {
    let out = tmp("bad14");
    let o = out.to_str().unwrap();
    let dir = tmp("bad14-files");
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let unknown = file("memcached.toml", "[memcached]\n");
    let named = file("named.toml", "name = 5\n");
    let dup = file("dup.toml", "[tcp]\nidle = \"2s\"\n[tcp]\ncount = 3\n");
    let huge_rtt = file("huge.toml", "rtt = \"1000000h\"\n");
    let max_rtt = file("max.toml", "rtt = \"18446744073709551615s\"\njitter = \"1s\"\n");
    let no_cmd = file("no-cmd.toml", "name = \"app\"\nprotocol = \"mqtt\"\n");
    let typo = file("typo.toml", "name = \"app\"\nprotocol = \"mqtt\"\ncommand = [\"app\", \"{mqtt.keepalive}\"]\n");
    let paho = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/clients/paho-mqtt.toml");
    let mosquitto_sub = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/clients/mosquitto_sub.toml");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", "--set", "websocket.ping_interval=18446744073709552s", "--out", o], "websocket.ping_interval=18446744073709552s: out of range"),
        (vec!["run", "--set", "tcp.user_timeout=18446744073709552s", "--out", o], "tcp.user_timeout=18446744073709552s: out of range"),
        (vec!["run", "--profile", &unknown, "--out", o], "unknown table [memcached]"),
        (vec!["run", "--profile", &named, "--out", o], "name = 5: expected a string"),
        (vec!["run", "--profile", &dup, "--out", o], "duplicate key `tcp`"),
        (vec!["run", "--set", "tcp.idle=3\ns", "--out", o], "tcp.idle=\"3\\ns\""),
        (vec!["run", "--network", &huge_rtt, "--fault", "delay", "--out", o], "rtt = \"1000000h\": out of range"),
        (vec!["run", "--network", &max_rtt, "--fault", "delay", "--out", o], "out of range (allowed: 0ms..60s)"),
        (vec!["run", "--repeat", "-1", "--out", o], "'-1' for '--repeat <N>': -1 is not in 1..=100"),
        (vec!["validate"], "--profile <FILE>"),
        (vec!["run", "mqtt/", "--client", "/nonexistent/app.toml", "--out", o], "client adapter /nonexistent/app.toml: cannot read it"),
        (vec!["run", "mqtt/", "--client", &no_cmd, "--out", o], "no-cmd.toml: `command` is missing"),
        (vec!["run", "mqtt/", "--client", &typo, "--out", o], "unknown placeholder `{mqtt.keepalive}`"),
        (vec!["run", "tcp/", "--client", paho, "--out", o], "no selected case runs a mqtt client (those that do: mqtt/3.1.1-3.1.2.10/1)"),
        (vec!["run", "mqtt/", "--client", mosquitto_sub, "--out", o], "mqtt.keep_alive = 2s: the program takes at least 5s"),
        (vec!["run", "mqtt/", "--client", paho, "--libraries-only", "--out", o], "the argument '--client <FILE>' cannot be used with '--libraries-only'"),
    ];
    for (args, needle) in cases {
        let r = run(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: one line, got: {err}");
        assert!(err.starts_with("kaspec: error:") && err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("tip:") && !err.contains("-- -1"), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} created its output folder");
    }
}

#[test]
fn list_shows_every_case_with_its_spec() {
    let r = run(&["list"]);
    assert!(r.status.success());
    let text = String::from_utf8_lossy(&r.stdout);
    for id in ["tcp/rfc1122-4.2.3.6/1", "tcp/rfc1122-4.2.3.6/2", "tcp/rfc5482-3/1", "mqtt/3.1.1-3.1.2.10/1"] {
        assert!(text.contains(id), "{text}");
    }
    assert!(text.contains("RFC 1122 §4.2.3.6") && text.contains("MQTT 3.1.1 §3.1.2.10"));
    let mqtt = String::from_utf8_lossy(&run(&["list", "mqtt/"]).stdout).into_owned();
    assert!(!mqtt.contains("tcp/"));
}

#[test]
fn run_writes_a_versioned_report_and_exits_0() {
    let out = tmp("run");
    let r = run(&["run", "tcp/rfc1122-4.2.3.6/1", "--fault", "reset", "--set", "tcp.idle=1s", "--out", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(0), "{err}");
    assert!(err.contains("[ 1/1] tcp/rfc1122-4.2.3.6/1 × reset"), "progress line: {err}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["schema_version"], 2);
    assert!(report["environment"]["engines"]["nftables"].as_str().unwrap().starts_with("available"));
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let client = results.iter().find(|r| r["side"] == "client").unwrap();
    for key in ["case", "protocol", "side", "implementation", "fault", "engine", "config", "detected", "detection_ms", "expected", "verdict", "error"] {
        assert!(client.get(key).is_some(), "missing {key}");
    }
    assert_eq!(client["verdict"], "pass");
    assert_eq!(client["engine"], "nftables");
    assert_eq!(client["config"]["tcp.idle"], "1s");
    assert!(client["expected"]["formula"].as_str().unwrap().contains("I − idle"));
    assert!(out.join("report.md").is_file());
    assert!(out.join("logs").read_dir().unwrap().count() >= 1, "server log captured");
}

/// Waits until the child's run owns namespaces; returns their names.
fn namespaces_of(child: &Child) -> Vec<String> {
    let pid = child.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let tags: Vec<String> = std::fs::read_dir("/run/kaspec")
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| std::fs::read_to_string(e.path()).map(|p| p.split_whitespace().next() == Some(pid.as_str())).unwrap_or(false))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(tag) = tags.first() {
            let ns = kaspec_ns(tag);
            if ns.len() == 3 && ns.iter().any(|n| n.ends_with("-server") && !pids_in(n).is_empty()) {
                return ns;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the run never built its testbed");
}

fn kaspec_ns(tag: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.contains(tag)).collect())
        .unwrap_or_default()
}

fn pids_in(ns: &str) -> Vec<String> {
    let o = Command::new("ip").args(["netns", "pids", ns]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).split_whitespace().map(String::from).collect()
}

/// Processes carrying the run's tag in their environment (servers we started).
fn processes_tagged(ns: &[String]) -> Vec<String> {
    let tag = ns[0].trim_start_matches("kaspec-").split('-').next().unwrap().to_string();
    let needle = format!("KASPEC_RUN_TAG={tag}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter(|e| std::fs::read(e.path().join("environ")).map(|env| String::from_utf8_lossy(&env).split('\0').any(|v| v == needle)).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn spawn_run(name: &str) -> Child {
    spawn_case(name, "tcp/rfc1122-4.2.3.6/2", Stdio::null())
}

fn spawn_case(name: &str, case: &str, stderr: Stdio) -> Child {
    let out = tmp(name);
    kaspec().args(["run", case, "--fault", "blackhole", "--out", out.to_str().unwrap()]).stdout(Stdio::piped()).stderr(stderr).spawn().unwrap()
}

/// Issue 14: after SIGINT/SIGHUP the case under way was judged during the
/// teardown and printed phantom results ("mosquitto detected after 0 ms").
#[test]
fn an_interrupted_case_reports_only_interrupted() {
    use nix::sys::signal::Signal;
    for (i, (signal, after)) in [(Signal::SIGINT, 2500), (Signal::SIGHUP, 4000), (Signal::SIGTERM, 3200)].into_iter().enumerate() {
        let child = spawn_case(&format!("interrupted-{i}"), "mqtt/3.1.1-3.1.2.10/1", Stdio::piped());
        let ns = namespaces_of(&child);
        std::thread::sleep(Duration::from_millis(after));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(130), "{signal}: {err}");
        assert!(o.stdout.is_empty(), "{signal}: no summary: {}", String::from_utf8_lossy(&o.stdout));
        let lines: Vec<&str> = err.lines().collect();
        let at = lines.iter().position(|l| l.starts_with("kaspec: interrupted")).unwrap_or_else(|| panic!("{signal}: {err}"));
        assert!(lines[at].contains("mqtt/3.1.1-3.1.2.10/1 × blackhole: no result"), "{signal}: names the case: {err}");
        assert_eq!(at + 1, lines.len(), "{signal}: nothing after the interrupt: {err}");
        assert!(!err.contains('→') && !err.contains("done in"), "{signal}: a phantom result: {err}");
        assert!(processes_tagged(&ns).is_empty() && ns.iter().all(|n| !Path::new("/run/netns").join(n).exists()), "{signal}: left behind");
    }
}

/// Issue 14 item 7: Mosquitto dropped to its own user, which cancelled the
/// parent-death signal: it outlived a `kill -9` of kaspec.
#[test]
fn kill_9_of_an_mqtt_run_takes_mosquitto_along() {
    let mut child = spawn_case("kill9-mqtt", "mqtt/3.1.1-3.1.2.10/1", Stdio::null());
    let ns = namespaces_of(&child);
    assert!(!processes_tagged(&ns).is_empty(), "mosquitto runs");
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !processes_tagged(&ns).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(processes_tagged(&ns).is_empty(), "mosquitto outlived kaspec: {:?}", processes_tagged(&ns));
    assert!(run(&["clean"]).status.success());
}

/// Issue 14 items 1 and 2: `kaspec clean` finds a process by the tag in its
/// environment (an `epmd -daemon` reparented to init, in a namespace that
/// no longer has a name), removes the crash dumps a kaspec RabbitMQ node
/// left in the working directory (and nothing else), and reports by category.
#[test]
fn clean_kills_tagged_orphans_and_removes_stray_dumps() {
    let dir = tmp("strays");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("MnesiaCore.kaspec-rabbit@localhost_1764_1_1"), b"dump").unwrap();
    std::fs::write(dir.join("MnesiaCore.rabbit@localhost_1764_1_2"), b"...\x6b/tmp/kaspec-0a1b2c-rabbitmq/mnesia...").unwrap();
    std::fs::write(dir.join("MnesiaCore.rabbit@localhost_1764_1_3"), b"someone else's node").unwrap();
    let tag = format!("e{:05x}", std::process::id() & 0xfffff);
    let mut orphan = Command::new("unshare").args(["-n", "sleep", "600"]).env("KASPEC_RUN_TAG", &tag).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let r = kaspec().arg("clean").current_dir(&dir).output().unwrap();
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{text} {}", String::from_utf8_lossy(&r.stderr));
    for category in ["namespaces: removed", "processes: killed", "directories: removed", "stray files: removed"] {
        assert!(text.contains(category), "{category}: {text}");
    }
    assert!(!text.contains("processes: killed 0"), "{text}");
    assert!(orphan.try_wait().unwrap().is_some(), "the tagged orphan was killed: {text}");
    let _ = orphan.wait();
    assert!(!dir.join("MnesiaCore.kaspec-rabbit@localhost_1764_1_1").exists() && !dir.join("MnesiaCore.rabbit@localhost_1764_1_2").exists(), "{text}");
    assert!(dir.join("MnesiaCore.rabbit@localhost_1764_1_3").exists(), "not kaspec's: kept");
    assert!(text.contains("MnesiaCore.kaspec-rabbit@localhost_1764_1_1"), "{text}");
}

#[test]
fn ctrl_c_removes_everything_and_exits_130() {
    let mut child = spawn_run("sigint");
    let ns = namespaces_of(&child);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    for n in &ns {
        assert!(!Path::new("/run/netns").join(n).exists(), "{n} left behind");
    }
    assert!(processes_tagged(&ns).is_empty(), "server processes left: {:?}", processes_tagged(&ns));
}

#[test]
fn kill_9_then_clean_removes_what_the_run_left() {
    let mut child = spawn_run("kill9");
    let ns = namespaces_of(&child);
    child.kill().unwrap(); // SIGKILL: no handler, no Drop
    child.wait().unwrap();
    for n in &ns {
        assert!(Path::new("/run/netns").join(n).exists(), "{n} should survive a kill -9");
    }
    // The servers die with kaspec (parent-death signal), even on kill -9.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !processes_tagged(&ns).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(processes_tagged(&ns).is_empty(), "server processes outlived kaspec: {:?}", processes_tagged(&ns));
    let r = run(&["clean"]);
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{text} {}", String::from_utf8_lossy(&r.stderr));
    for n in &ns {
        assert!(text.contains(n.as_str()), "clean names {n}: {text}");
        assert!(!Path::new("/run/netns").join(n).exists(), "{n} left behind");
    }
    let again = String::from_utf8_lossy(&run(&["clean"]).stdout).into_owned();
    assert!(!ns.iter().any(|n| again.contains(n.as_str())), "{again}");
}

#[test]
fn repeat_writes_spread_junit_and_html() {
    let out = tmp("repeat");
    let r = run(&["run", "tcp/rfc5482-3/1", "--fault", "reset", "--set", "tcp.user_timeout=1s", "--repeat", "2", "--quiet", "--json", "--out", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(r.stderr.is_empty(), "--quiet: {}", String::from_utf8_lossy(&r.stderr));
    let report: serde_json::Value = serde_json::from_slice(&r.stdout).expect("--json prints the report");
    let client = report["results"].as_array().unwrap().iter().find(|r| r["side"] == "client").unwrap().clone();
    assert_eq!(client["repeat"]["runs"].as_array().unwrap().len(), 2, "{client}");
    assert!(client["repeat"]["spread_ms"].is_u64());
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(junit.contains("<testsuite name=\"tcp\"") && junit.contains("classname=\"tcp/rfc5482-3/1\""), "{junit}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("median"), "timeline charts and run statistics");
}

fn write_report(name: &str, detection: u64, verdict: &str) -> PathBuf {
    let dir = tmp(name);
    std::fs::create_dir_all(&dir).unwrap();
    let report = serde_json::json!({
        "schema_version": 1, "kaspec_version": "0.1.0", "run_id": name, "started_at": "", "finished_at": "",
        "testbed": "netns", "command": [], "environment": null, "errors": [],
        "results": [{
            "case": "tcp/rfc1122-4.2.3.6/1", "protocol": "tcp", "description": "", "requirement": "", "side": "client",
            "implementation": {"name": "linux-tcp/socket2", "version": "x"}, "peer": {"name": "kaspec-tcp-echo", "version": "x"},
            "fault": "blackhole", "engine": "nftables", "config": {"tcp.idle": "2s"}, "detected": true,
            "detection_ms": detection, "deadline_ms": 15000,
            "expected": {"min_ms": 4990, "max_ms": 5150, "formula": "I + N×V", "spec": "RFC 1122 §4.2.3.6", "level": "must"},
            "tolerance_ms": 200, "verdict": verdict, "verdict_detail": "", "known_deviation": null, "error": null, "timeline": []
        }]
    });
    std::fs::write(dir.join("report.json"), report.to_string()).unwrap();
    dir
}

#[test]
fn compare_exits_1_on_a_regression_and_0_otherwise() {
    let base = write_report("cmp-base", 5050, "pass");
    let same = write_report("cmp-same", 5100, "pass");
    let slower = write_report("cmp-slower", 7000, "fail");
    let third = write_report("cmp-third", 5000, "pass");
    let ok = run(&["compare", base.to_str().unwrap(), same.to_str().unwrap()]);
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stdout));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("No change"));
    let out = tmp("cmp-out");
    let bad = run(&["compare", base.to_str().unwrap(), third.to_str().unwrap(), slower.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(text.contains("REGRESSION") && text.contains("verdict pass → fail") && text.contains("5.05 s → 7.00 s"), "{text}");
    assert!(text.contains("| cmp-base | cmp-third | cmp-slower |"), "side by side: {text}");
    assert!(out.join("compare.md").is_file() && out.join("compare.html").is_file());
    let missing = run(&["compare", base.to_str().unwrap(), "/nonexistent/report.json"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/report.json"));
}

/// A report of one MQTT client's run against Mosquitto under blackhole:
/// both sides, as `kaspec run` writes them (schema 2, budgets).
fn write_client_report(name: &str, client: (&str, &str), detections: (u64, u64), server_verdict: &str) -> PathBuf {
    let dir = tmp(name);
    std::fs::create_dir_all(&dir).unwrap();
    let side = |side: &str, me: (&str, &str), peer: (&str, &str), detection: u64, verdict: &str| {
        serde_json::json!({
            "case": "mqtt/3.1.1-3.1.2.10/1", "protocol": "mqtt", "description": "", "requirement": "", "side": side,
            "implementation": {"name": me.0, "version": me.1}, "peer": {"name": peer.0, "version": peer.1},
            "fault": "blackhole", "engine": "nftables", "config": {"mqtt.keep_alive": "2s"}, "detected": true,
            "detection_ms": detection, "deadline_ms": 9000,
            "expected": {"min_ms": 1000, "max_ms": 3100, "formula": "f", "spec": "MQTT-3.1.2-24", "level": "must"},
            "budget": {"fault_commit_ms": 1, "observer_ms": 6, "wake_ms": 1},
            "verdict": verdict, "verdict_detail": "", "known_deviation": null, "error": null, "timeline": [],
            "release": {"clean": true, "state": "gone", "detail": "socket gone"}, "release_verdict": "pass"
        })
    };
    let mosquitto = ("mosquitto", "2.0.11");
    let report = serde_json::json!({
        "schema_version": 2, "kaspec_version": "0.1.0", "run_id": name, "started_at": "", "finished_at": "",
        "testbed": "netns", "command": [], "environment": null, "errors": [],
        "results": [side("client", client, mosquitto, detections.0, "pass"), side("server", mosquitto, client, detections.1, server_verdict)]
    });
    std::fs::write(dir.join("report.json"), report.to_string()).unwrap();
    dir
}

#[test]
fn compare_sets_client_implementations_side_by_side() {
    let lib = write_client_report("cmp-rumqttc", ("rumqttc", "0.24.0"), (3000, 2500), "pass");
    let paho = write_client_report("cmp-paho", ("paho-mqtt", "1.6.1"), (3011, 3316), "fail");
    let (a, b) = (lib.to_str().unwrap(), paho.to_str().unwrap());
    let out = tmp("cmp-clients-out");
    let by = run(&["compare", "--by", "client", a, b, "--out", out.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&by.stdout);
    assert_eq!(by.status.code(), Some(0), "a view, never a regression: {text}");
    assert!(text.contains("| case | fault | server | rumqttc 0.24.0 (cmp-rumqttc) [1] | paho-mqtt 1.6.1 (cmp-paho) [2] |"), "{text}");
    let row = "| `mqtt/3.1.1-3.1.2.10/1` | blackhole | mosquitto 2.0.11 | client: pass 3.00 s ✓ · server: pass 2.50 s ✓ | client: pass 3.01 s ✓ · server: **fail** 3.32 s ✓ |";
    assert!(text.contains(row), "{text}");
    assert!(text.contains("- [2] paho-mqtt 1.6.1 (cmp-paho): `mqtt.keep_alive=2s`"), "{text}");
    assert!(!text.contains("REGRESSION"), "{text}");
    let html = std::fs::read_to_string(out.join("compare.html")).unwrap();
    assert!(html.contains("<h3>mqtt — clients</h3>") && html.contains("<th title=\"mqtt.keep_alive=2s\">paho-mqtt<br><small>1.6.1</small>"), "{html}");
    assert_eq!(std::fs::read_to_string(out.join("compare.md")).unwrap(), text);
    // The default view: the changes (another client is removed/added, no
    // regression), and the clients view because the clients differ.
    let default = run(&["compare", a, b]);
    let text = String::from_utf8_lossy(&default.stdout);
    assert_eq!(default.status.code(), Some(0), "{text}");
    assert!(text.contains("## Clients side by side") && text.contains(row) && text.contains("## Side by side"), "{text}");
    // The same client twice: nothing to set side by side.
    let again = run(&["compare", "--by", "client", a, a]);
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to set side by side"));
    assert!(!String::from_utf8_lossy(&run(&["compare", a, a]).stdout).contains("Clients side by side"));
}

#[test]
fn validate_confirms_findings_by_measurement() {
    let dir = tmp("validate");
    std::fs::create_dir_all(&dir).unwrap();
    let risky = dir.join("risky.toml");
    std::fs::write(&risky, "[tcp]\nkeepalive = false\nidle = \"1s\"\ninterval = \"1s\"\ncount = 1\nuser_timeout = \"1s\"\n[grpc]\nkeepalive_time = \"10m\"\n").unwrap();
    let r = run(&["validate", "--profile", risky.to_str().unwrap(), "--quiet", "--out", dir.join("out").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.status.code(), Some(1), "a confirmed warning: {text}");
    assert!(text.contains("tcp-keepalive-off") && text.contains("confirmed by measurement") && text.contains("RFC 1122"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("out/validate.json")).unwrap()).unwrap();
    assert_eq!(json["findings"][0]["outcome"], "confirmed");

    let fine = dir.join("fine.toml");
    std::fs::write(&fine, "[tcp]\nuser_timeout = \"3s\"\n[grpc]\nkeepalive_time = \"10m\"\n").unwrap();
    let r = run(&["validate", "--profile", fine.to_str().unwrap(), "--quiet", "--out", dir.join("out2").to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stdout));
    assert!(String::from_utf8_lossy(&r.stdout).contains("No finding"));

    let r = run(&["validate", "--profile", fine.to_str().unwrap(), "--network", "/nonexistent/net.toml"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("/nonexistent/net.toml"));
}

#[test]
fn repeat_keeps_results_against_different_servers_apart() {
    // The same client library against two servers is two results, each with its own runs.
    let out = tmp("repeat-servers");
    let r = run(&["run", "websocket/rfc6455-5.5.2/1", "--repeat", "2", "--quiet", "--json", "--out", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    let report: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "one per server");
    for x in results {
        assert_eq!(x["repeat"]["runs"].as_array().unwrap().len(), 2, "{x}");
    }
}

#[test]
fn a_fault_a_case_cannot_take_is_unsupported_with_the_reason() {
    let out = tmp("unsupported");
    let r = run(&["run", "tcp/rfc1122-4.2.3.6/1", "--fault", "nat-expiry", "--quiet", "--json", "--out", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    let report: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let x = &report["results"][0];
    assert_eq!(x["verdict"], "unsupported");
    assert!(x["verdict_detail"].as_str().unwrap().contains("does not apply"), "{x}");
    assert!(report["errors"].as_array().unwrap().is_empty(), "not a harness error");
}

/// Issue 17 item 5: three partitions of a run, merged, give the result set
/// of the run in one piece; a missing part, a part given twice and a run
/// that was not split are one-line errors (exit 2) that write nothing.
#[test]
fn three_partitions_merged_equal_one_run() {
    let args = ["run", "tcp/rfc1122-4.2.3.6/1", "tcp/rfc1122-4.2.3.6/2", "tcp/rfc5482-3/1", "tcp/rfc9293-3.5.2/1", "--fault", "blackhole", "--set", "tcp.idle=1s", "--set", "tcp.count=2", "--quiet"];
    let outcome = |dir: &Path| -> Vec<(String, String)> {
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
        let results = report["results"].as_array().unwrap();
        let key = |r: &serde_json::Value| format!("{} [{}] {} {} vs {}", r["case"], r["fault"], r["side"], r["implementation"]["name"], r["peer"]["name"]);
        results.iter().map(|r| (key(r), r["verdict"].as_str().unwrap().to_string())).collect()
    };
    let whole = tmp("part-whole");
    let r = kaspec().args(args).args(["--out", whole.to_str().unwrap()]).output().unwrap();
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    let mut parts = Vec::new();
    for k in 1..=3 {
        let dir = tmp(&format!("part-{k}"));
        let r = kaspec().args(args).args(["--partition", &format!("{k}/3"), "--out", dir.to_str().unwrap()]).output().unwrap();
        assert_eq!(r.status.code(), Some(0), "part {k}: {}", String::from_utf8_lossy(&r.stderr));
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
        assert_eq!((report["partition"]["index"].as_u64(), report["partition"]["plan"].as_array().unwrap().len()), (Some(k), 4), "{report}");
        parts.push(dir.to_str().unwrap().to_string());
    }
    let merged = tmp("part-merged");
    let r = run(&["merge", &parts[2], &parts[0], &parts[1], "--out", merged.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(outcome(&merged), outcome(&whole), "the same result keys and verdicts, in plan order");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(merged.join("report.json")).unwrap()).unwrap();
    let shares: Vec<&str> = report["parts"].as_array().unwrap().iter().map(|p| p["partition"].as_str().unwrap()).collect();
    assert_eq!(shares, ["1/3", "2/3", "3/3"]);
    assert!(report["parts"][0]["environment"]["kernel"].is_string() && report["parts"][0]["run_id"].is_string(), "{report}");
    for f in ["report.md", "report.html", "junit.xml"] {
        assert!(merged.join(f).is_file(), "{f}");
    }
    let bad = tmp("part-bad");
    let whole = whole.to_str().unwrap();
    for (args, needle) in [
        (vec!["merge", &parts[0], &parts[2]], "a gap"),
        (vec!["merge", &parts[0], &parts[1], &parts[2], &parts[0]], "ran in two parts"),
        (vec!["merge", whole], "not a partitioned run"),
    ] {
        let r = run(&[args.as_slice(), &["--out", bad.to_str().unwrap()]].concat());
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.trim_end().lines().count() == 1 && err.contains(needle), "{args:?}: {err}");
        assert!(!bad.exists(), "{args:?} wrote a report");
    }
}

/// Issue 18: a run without --client runs the shipped adapters beside the
/// library client, in one report whose results name each client.
#[test]
fn a_default_run_includes_the_shipped_clients() {
    let out = tmp("shipped");
    let r = run(&["run", "mqtt/3.1.1-3.1.2.10/1", "--fault", "reset", "--quiet", "--out", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_ne!(r.status.code(), Some(2), "{err}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let clients: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["side"] == "client")
        .map(|r| r["implementation"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(clients, ["rumqttc", "mosquitto_sub", "paho-mqtt"], "{report}");
    // mosquitto_sub takes no Keep Alive under 5 s: its run raised the
    // default 2 s, and says so.
    let notes = report["notes"].to_string();
    assert!(notes.contains("mosquitto_sub runs with mqtt.keep_alive=5s"), "{notes}");

    // --libraries-only: the library client alone.
    let out = tmp("libraries-only");
    let r = run(&["run", "mqtt/3.1.1-3.1.2.10/1", "--fault", "reset", "--libraries-only", "--quiet", "--out", out.to_str().unwrap()]);
    assert_ne!(r.status.code(), Some(2), "{}", String::from_utf8_lossy(&r.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let clients: Vec<&str> = report["results"].as_array().unwrap().iter().filter(|r| r["side"] == "client").map(|r| r["implementation"]["name"].as_str().unwrap()).collect();
    assert_eq!(clients, ["rumqttc"], "{report}");
}

/// README command 1 runs from the repository's root, where the fixtures
/// folder is found as `./fixtures`: a server given a file in it must get it
/// whatever its own working directory (mariadbd reads --init-file after
/// changing to its datadir: a relative path was 11 harness errors).
#[test]
fn servers_find_their_fixture_files_from_the_repository_root() {
    let out = tmp("from-root");
    let r = run(&["run", "mariadb/wait_timeout/1", "--libraries-only", "--quiet", "--out", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_ne!(r.status.code(), Some(2), "{err}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["errors"].as_array().map_or(0, Vec::len), 0, "{}", report["errors"]);
    assert!(!report["results"].as_array().unwrap().is_empty(), "{report}");
}
