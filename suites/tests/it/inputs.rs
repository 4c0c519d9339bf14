//! Issue 14: a property test over every input surface — `--set` values
//! (Config::set_pair), client profiles, network profiles, libpq connection
//! strings and report files for `kaspec compare`. Each input is either
//! refused with a one-line error, or accepted with every value within its
//! documented range — never a panic, never a wrap. Whatever is accepted
//! then goes through what a run computes from it before it starts (every
//! case's budget, the static review, the impairment bounds) without a
//! panic. Bounded: a few hundred inputs per surface (a few seconds);
//! `PROPTEST_CASES=N` runs more.

use std::time::Duration;

use kaspec_harness::fault::impair::Impairment;
use kaspec_suites::network::{NetworkProfile, MAX_RTT};
use kaspec_suites::postgres::parse_conninfo;
use kaspec_suites::ssh::parse_ssh_options;
use kaspec_suites::{registry, Config};
use proptest::prelude::*;

/// Every value of `c` within the range its key documents (`--help`).
fn assert_in_range(c: &Config) {
    let secs = |d: Duration, max: u64| {
        assert!(
            d.as_secs() <= max && d.subsec_nanos() == 0,
            "{d:?} > {max}s"
        )
    };
    let millis = |d: Duration, max: u128| assert!(d.as_millis() <= max, "{d:?} > {max}ms");
    secs(kaspec_suites::config::TcpConfig::of(&c).idle, 32767);
    secs(kaspec_suites::config::TcpConfig::of(&c).interval, 32767);
    assert!((1..=127).contains(&kaspec_suites::config::TcpConfig::of(&c).count));
    millis(
        kaspec_suites::config::TcpConfig::of(&c).user_timeout,
        i32::MAX as u128,
    );
    secs(
        kaspec_suites::mqtt::knobs::MqttConfig::of(&c).keep_alive,
        65535,
    );
    secs(
        kaspec_suites::amqp::knobs::AmqpConfig::of(&c).heartbeat,
        65535,
    );
    for d in [
        kaspec_suites::websocket::knobs::WebSocketConfig::of(&c).ping_interval,
        kaspec_suites::websocket::knobs::WebSocketConfig::of(&c).pong_timeout,
        kaspec_suites::grpc::knobs::GrpcConfig::of(&c).keepalive_time,
        kaspec_suites::grpc::knobs::GrpcConfig::of(&c).keepalive_timeout,
    ] {
        assert!(d >= Duration::from_millis(10));
        millis(d, 3_600_000);
    }
    secs(
        kaspec_suites::postgres::knobs::PostgresConfig::of(&c).keepalives_idle,
        32767,
    );
    secs(
        kaspec_suites::postgres::knobs::PostgresConfig::of(&c).keepalives_interval,
        32767,
    );
    assert!((1..=127)
        .contains(&kaspec_suites::postgres::knobs::PostgresConfig::of(&c).keepalives_retries));
    millis(
        kaspec_suites::postgres::knobs::PostgresConfig::of(&c).tcp_user_timeout,
        i32::MAX as u128,
    );
    secs(
        kaspec_suites::ssh::knobs::SshConfig::of(&c).server_alive_interval,
        2_147_483,
    );
    secs(
        kaspec_suites::ssh::knobs::SshConfig::of(&c).connect_timeout,
        2_147_483,
    );
    assert!(
        kaspec_suites::ssh::knobs::SshConfig::of(&c).server_alive_count_max <= 1_000_000
            && kaspec_suites::ssh::knobs::SshConfig::of(&c).keepalive_max <= 1_000_000
    );
    millis(
        kaspec_suites::ssh::knobs::SshConfig::of(&c).keepalive_interval,
        86_400_000,
    );
    millis(
        kaspec_suites::ssh::knobs::SshConfig::of(&c).inactivity_timeout,
        86_400_000,
    );
}

fn assert_one_line(e: &str) {
    assert!(
        !e.is_empty() && !e.contains('\n') && !e.contains('\r'),
        "not one line: {e:?}"
    );
}

/// What a run computes from its input before it starts: none may panic.
fn computes(config: Config, network: NetworkProfile) {
    let mut ctx = crate::common::ctx(&[]);
    ctx.config = config;
    ctx.network = network;
    for c in registry::all() {
        let _ = (c.budget)(&ctx);
    }
    let _ = kaspec_suites::validate::review(&ctx.config, Some(&ctx.network));
    let (d, l) = ctx.impairments();
    for i in [d, l] {
        let _ = (i.max_rtt(), i.min_rtt(), i.describe());
        let _ =
            kaspec_suites::model::impaired::impaired_watch_ms(Duration::from_secs(3 * 3600), &i);
    }
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        (0u64..100_000).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("18446744073709552".to_string()),
        Just("18446744073709551615".to_string()),
        Just("340282366920938463463374607431768211456".to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
    ]
}

fn unit() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just(""),
        Just("ns"),
        Just("us"),
        Just("ms"),
        Just("s"),
        Just("m"),
        Just("h"),
        Just("d"),
        Just("w"),
        Just("y"),
        Just(" s"),
        Just("s\n")
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (number(), unit()).prop_map(|(n, u)| format!("{n}{u}")),
        1 => prop_oneof![Just("true"), Just("false"), Just("on"), Just("0"), Just("")].prop_map(String::from),
        1 => "\\PC{0,12}",
        1 => ".{0,12}",
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![8 => proptest::sample::select(kaspec_suites::registry::config().keys().iter().map(|k| k.name).collect::<Vec<_>>()).prop_map(String::from), 1 => "[a-z.\n]{0,12}"]
}

fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        value().prop_map(|v| format!("{v:?}")),
        number(),
        Just("true".to_string()),
        Just("[1, 2]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("1979-05-27".to_string()),
    ]
}

fn profile() -> impl Strategy<Value = String> {
    let table = prop_oneof![
        Just("tcp"),
        Just("mqtt"),
        Just("websocket"),
        Just("grpc"),
        Just("postgres"),
        Just("amqp"),
        Just("redis"),
        Just("name")
    ];
    let entry = (key(), toml_value()).prop_map(|(k, v)| {
        format!(
            "{} = {v}\n",
            k.rsplit('.').next().unwrap_or("x").replace('\n', "")
        )
    });
    prop_oneof![
        proptest::collection::vec((table, proptest::collection::vec(entry, 0..4)), 0..4).prop_map(
            |t| t
                .into_iter()
                .map(|(name, e)| format!("[{name}]\n{}", e.concat()))
                .collect::<String>()
        ),
        (toml_value(), toml_value()).prop_map(|(n, d)| format!("name = {n}\ndescription = {d}\n")),
        ".{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn set_pair_refuses_in_one_line_or_stays_in_range(k in key(), v in value()) {
        let mut c = kaspec_suites::registry::config();
        match c.set_pair(&format!("{k}={v}")) {
            Err(e) => {
                assert_one_line(&e.0);
                prop_assert_eq!(&c, &kaspec_suites::registry::config(), "a refused value changes nothing");
            }
            Ok(()) => {
                assert_in_range(&c);
                computes(c, NetworkProfile::default());
            }
        }
    }

    #[test]
    fn profiles_refuse_in_one_line_or_stay_in_range(text in profile()) {
        let mut c = kaspec_suites::registry::config();
        match c.apply_profile_str(&text) {
            Err(e) => assert_one_line(&e.0),
            Ok(()) => {
                assert_in_range(&c);
                computes(c, NetworkProfile::default());
            }
        }
    }

    #[test]
    fn network_profiles_refuse_in_one_line_or_stay_on_a_path(
        entries in proptest::collection::vec((prop_oneof![Just("rtt"), Just("jitter"), Just("loss"), Just("nat_idle_timeout"), Just("name"), Just("mtu")], prop_oneof![
            3 => (number(), unit()).prop_map(|(n, u)| format!("{:?}", format!("{n}{u}"))),
            1 => number().prop_map(|n| format!("{:?}", format!("{n}%"))),
            1 => toml_value(),
        ]), 0..5)
    ) {
        let mut seen = Vec::new();
        let text: String = entries.into_iter().filter(|(k, _)| { let new = !seen.contains(k); seen.push(*k); new }).map(|(k, v)| format!("{k} = {v}\n")).collect();
        match NetworkProfile::parse(&text) {
            Err(e) => assert_one_line(&e.0),
            Ok(n) => {
                prop_assert!(n.rtt <= MAX_RTT && n.jitter <= MAX_RTT, "{:?}", n);
                prop_assert!((0.0..=100.0).contains(&n.loss_percent));
                prop_assert!(n.nat_idle_timeout.is_none_or(|d| (1..=86_400).contains(&d.as_secs())));
                let i = Impairment { rtt: n.rtt, jitter: n.jitter, loss_percent: n.loss_percent, seed: 1 };
                prop_assert!(i.max_rtt() <= 2 * MAX_RTT);
                let mut c = kaspec_suites::registry::config();
                c.set_pair("websocket.ping_interval=1h").unwrap();
                computes(c, n);
            }
        }
    }

    #[test]
    fn conninfo_refuses_in_one_line_or_stays_in_range(
        pairs in proptest::collection::vec((prop_oneof![Just("keepalives"), Just("keepalives_idle"), Just("keepalives_interval"), Just("keepalives_retries"), Just("tcp_user_timeout"), Just("keepalives_count"), Just("host"), Just("sslmode")], value()), 0..4),
        url in any::<bool>(),
    ) {
        let text = if url {
            format!("postgresql://u@h/db?{}", pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"))
        } else {
            pairs.iter().map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))).collect::<Vec<_>>().join(" ")
        };
        if let Err(e) = parse_conninfo(&text) {
            assert_one_line(&e.0);
        }
        let mut c = kaspec_suites::registry::config();
        match c.set("postgres.conninfo", &text) {
            Err(e) => assert_one_line(&e.0),
            Ok(()) => assert_in_range(&c),
        }
    }

    #[test]
    fn ssh_options_refuse_in_one_line_or_stay_in_range(
        pairs in proptest::collection::vec((prop_oneof![Just("ServerAliveInterval"), Just("serveralivecountmax"), Just("TCPKeepAlive"), Just("KeepAlive"), Just("ConnectTimeout"), Just("ClientAliveInterval"), Just("Compression"), Just("Host")], value()), 0..4),
        dash_o in any::<bool>(),
    ) {
        let text = if dash_o {
            pairs.iter().map(|(k, v)| format!("-o {k}={v}")).collect::<Vec<_>>().join(" ")
        } else {
            pairs.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join("\n")
        };
        if let Err(e) = parse_ssh_options(&text) {
            assert_one_line(&e.0);
        }
        let mut c = registry::config();
        match c.set("ssh.options", &text) {
            Err(e) => assert_one_line(&e.0),
            Ok(()) => assert_in_range(&c),
        }
    }

    #[test]
    fn compare_refuses_unknown_or_broken_reports_in_one_line(
        version in prop_oneof![Just("1".to_string()), Just("999".to_string()), Just("0".to_string()), number(), Just("\"1\"".to_string()), Just("null".to_string())],
        body in prop_oneof![Just("\"results\": [], \"errors\": []"), Just("\"results\": 5"), Just(""), Just("\"results\": [{}]")],
        garbage in prop_oneof![Just(String::new()), ".{0,20}"],
    ) {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kaspec-inputs");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("report-{:?}.json", std::thread::current().id()).replace(['(', ')'], ""));
        let head = "\"kaspec_version\": \"0.1.0\", \"run_id\": \"x\", \"started_at\": \"\", \"finished_at\": \"\", \"testbed\": \"netns\", \"command\": [], \"environment\": null";
        let sep = if body.is_empty() { "" } else { ", " };
        std::fs::write(&path, format!("{{\"schema_version\": {version}, {head}{sep}{body}}}{garbage}")).unwrap();
        match kaspec_harness::report::Report::read_json(&path) {
            Err(e) => {
                let e = e.to_string();
                assert_one_line(&e);
                if version == "999" && garbage.is_empty() {
                    prop_assert!(e.contains("schema version 999") && e.contains("reads schema version 1"), "{}", e);
                }
            }
            Ok(r) => prop_assert_eq!(r.schema_version, 1),
        }
    }
}
