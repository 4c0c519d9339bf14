//! The configuration parser over every protocol's knobs: `--set`, profiles,
//! a pasted libpq string, and the one-line errors.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kaspec_suites::config::TcpConfig;

#[test]
fn defaults_are_second_scale() {
    let c = kaspec_suites::registry::config();
    assert_eq!(TcpConfig::of(&c).idle, Duration::from_secs(2));
    assert_eq!(TcpConfig::of(&c).count, 3);
    assert_eq!(
        kaspec_suites::mqtt::knobs::MqttConfig::of(&c).keep_alive,
        Duration::from_secs(2)
    );
    assert_eq!(
        kaspec_suites::amqp::knobs::AmqpConfig::of(&c).heartbeat,
        Duration::from_secs(2)
    );
    assert_eq!(c.effective("tcp.").len(), 5);
    assert_eq!(
        c.effective("amqp."),
        BTreeMap::from([("amqp.heartbeat".to_string(), "2s".to_string())])
    );
}

#[test]
fn set_accepts_ms_s_m() {
    let mut c = kaspec_suites::registry::config();
    c.set_pair("tcp.user_timeout=2500ms").unwrap();
    c.set_pair("tcp.idle=1m").unwrap();
    c.set_pair("mqtt.keep_alive=0s").unwrap();
    assert_eq!(TcpConfig::of(&c).user_timeout, Duration::from_millis(2500));
    assert_eq!(TcpConfig::of(&c).idle, Duration::from_secs(60));
    assert!(kaspec_suites::mqtt::knobs::MqttConfig::of(&c)
        .keep_alive
        .is_zero());
}

#[test]
fn bad_input_names_key_value_and_what_is_allowed() {
    let mut c = kaspec_suites::registry::config();
    let e = c.set_pair("tcp.idel=3s").unwrap_err().0;
    assert!(e.contains("tcp.idel") && e.contains("tcp.idle"), "{e}");
    let e = c.set_pair("tcp.idle=1500ms").unwrap_err().0;
    assert!(
        e.contains("tcp.idle=1500ms") && e.contains("whole seconds"),
        "{e}"
    );
    let e = c.set_pair("tcp.idle=3").unwrap_err().0;
    assert!(e.contains("unit"), "{e}");
    let e = c.set_pair("tcp.count=0").unwrap_err().0;
    assert!(e.contains("1..127"), "{e}");
    let e = c.set_pair("mqtt.keep_alive=500ms").unwrap_err().0;
    assert!(e.contains("0 (off) or 1s..65535s"), "{e}");
    let e = c.set_pair("mqtt.keep_alive=70000s").unwrap_err().0;
    assert!(e.contains("out of range"), "{e}");
    let e = c.set_pair("amqp.heartbeat=1500ms").unwrap_err().0;
    assert!(
        e.contains("amqp.heartbeat=1500ms") && e.contains("0 (off) or 1s..65535s"),
        "{e}"
    );
    let e = c.set_pair("amqp.heartbeat=65536s").unwrap_err().0;
    assert!(e.contains("out of range"), "{e}");
    let e = c.set_pair("websocket.pong_timeout=5ms").unwrap_err().0;
    assert!(e.contains("10ms..3600000ms"), "{e}");
    let e = c.set_pair("tcp.keepalive=maybe").unwrap_err().0;
    assert!(e.contains("true or false"), "{e}");
    assert!(c.set_pair("tcp.idle").unwrap_err().0.contains("KEY=VALUE"));
    assert_eq!(
        c,
        kaspec_suites::registry::config(),
        "a rejected value changes nothing"
    );
}

#[test]
fn profiles_use_the_same_keys() {
    let mut c = kaspec_suites::registry::config();
    c.apply_profile_str("name = \"x\"\n[tcp]\nidle = \"5s\"\ncount = 4\nkeepalive = true\n[mqtt]\nkeep_alive = \"10s\"\n[amqp]\nheartbeat = \"0s\"\n").unwrap();
    assert!(kaspec_suites::amqp::knobs::AmqpConfig::of(&c)
        .heartbeat
        .is_zero());
    assert_eq!(TcpConfig::of(&c).idle, Duration::from_secs(5));
    assert_eq!(TcpConfig::of(&c).count, 4);
    assert_eq!(
        kaspec_suites::mqtt::knobs::MqttConfig::of(&c).keep_alive,
        Duration::from_secs(10)
    );
    let e = c.apply_profile_str("[tcp]\nidle = 5\n").unwrap_err().0;
    assert!(e.contains("tcp.idle=5") && e.contains("unit"), "{e}");
    let e = c.apply_profile_str("[tcp]\nidl = \"5s\"\n").unwrap_err().0;
    assert!(e.contains("unknown key `tcp.idl`"), "{e}");
    let e = c.apply_profile_str("[tcp\n").unwrap_err().0;
    assert!(e.contains("not valid TOML"), "{e}");
}

#[test]
fn postgres_knobs_and_a_pasted_libpq_string() {
    let mut c = kaspec_suites::registry::config();
    assert_eq!(
        kaspec_suites::postgres::knobs::PostgresConfig::of(&c).tcp(),
        TcpConfig {
            keepalive: true,
            idle: Duration::from_secs(2),
            interval: Duration::from_secs(1),
            count: 3,
            user_timeout: Duration::ZERO
        }
    );
    assert_eq!(
        c.effective("postgres.").len(),
        5,
        "an empty conninfo is not shown"
    );
    c.set_pair("postgres.keepalives_retries=5").unwrap();
    assert_eq!(
        kaspec_suites::postgres::knobs::PostgresConfig::of(&c).keepalives_retries,
        5
    );
    // libpq semantics: tcp_user_timeout is milliseconds; other keys are checked and ignored.
    c.set_pair("postgres.conninfo=host=db.example.com port=5432 user=app sslmode=disable keepalives=1 keepalives_idle=5 keepalives_interval=2 keepalives_retries=4 tcp_user_timeout=9000 options='-c statement_timeout=5s'").unwrap();
    let p = kaspec_suites::postgres::knobs::PostgresConfig::of(&c);
    assert_eq!(
        (
            p.keepalives_idle,
            p.keepalives_interval,
            p.keepalives_retries
        ),
        (Duration::from_secs(5), Duration::from_secs(2), 4)
    );
    assert_eq!(p.tcp_user_timeout, Duration::from_millis(9000));
    let eff = c.effective("postgres.");
    assert!(
        eff["postgres.tcp_user_timeout"].contains("libpq milliseconds")
            && eff["postgres.tcp_user_timeout"].contains("9000 s"),
        "{eff:?}"
    );
    assert!(eff["postgres.conninfo"].contains("keepalives_idle=5"));
    // The URL form, and keepalives=0.
    c.set_pair("postgres.conninfo=postgresql://app@db/x?keepalives=0&keepalives_idle=7")
        .unwrap();
    assert!(!kaspec_suites::postgres::knobs::PostgresConfig::of(&c).keepalives);
    assert_eq!(
        kaspec_suites::postgres::knobs::PostgresConfig::of(&c).keepalives_idle,
        Duration::from_secs(7)
    );
    // The same in a profile.
    let mut d = kaspec_suites::registry::config();
    d.apply_profile_str("[postgres]\nconninfo = \"keepalives_idle=3 tcp_user_timeout=1500\"\n")
        .unwrap();
    assert_eq!(
        (
            kaspec_suites::postgres::knobs::PostgresConfig::of(&d).keepalives_idle,
            kaspec_suites::postgres::knobs::PostgresConfig::of(&d).tcp_user_timeout
        ),
        (Duration::from_secs(3), Duration::from_millis(1500))
    );
}

#[test]
fn a_libpq_key_tokio_postgres_does_not_know_is_one_clear_line() {
    let mut c = kaspec_suites::registry::config();
    let e = c
        .set_pair("postgres.conninfo=host=db keepalives_count=3")
        .unwrap_err()
        .0;
    assert!(
        e.contains("keepalives_count")
            && e.contains("keepalives_retries")
            && e.contains("allowed:")
            && !e.contains('\n'),
        "{e}"
    );
    let e = c
        .set_pair("postgres.conninfo=host=db sslrootcert=/x")
        .unwrap_err()
        .0;
    assert!(
        e.contains("unknown key `sslrootcert`") && e.contains("keepalives_idle"),
        "{e}"
    );
    let e = c
        .set_pair("postgres.conninfo=keepalives_idle=0")
        .unwrap_err()
        .0;
    assert!(
        e.contains("keepalives_idle=0") && e.contains("out of range"),
        "{e}"
    );
    let e = c
        .set_pair("postgres.conninfo=keepalives_idle=2s")
        .unwrap_err()
        .0;
    assert!(e.contains("whole number of seconds"), "{e}");
    let e = c
        .set_pair("postgres.conninfo=sslmode=verify-full")
        .unwrap_err()
        .0;
    assert!(
        e.contains("tokio-postgres rejects") && e.contains("sslmode"),
        "{e}"
    );
    let e = c.set_pair("postgres.conninfo=options='-c x").unwrap_err().0;
    assert!(e.contains("closing quote"), "{e}");
    assert_eq!(
        c,
        kaspec_suites::registry::config(),
        "a rejected string changes nothing"
    );
}

#[test]
fn every_key_has_a_valid_default_and_a_doc() {
    for k in kaspec_suites::registry::config().keys() {
        assert!(!k.doc.is_empty(), "{}", k.name);
        let mut c = kaspec_suites::registry::config();
        c.set(k.name, k.default)
            .unwrap_or_else(|e| panic!("{}: {e}", k.name));
    }
    assert!(kaspec_suites::registry::config()
        .keys()
        .iter()
        .any(|k| k.name == "postgres.conninfo"));
}

#[test]
fn every_shipped_profile_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/profiles");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        kaspec_suites::registry::config()
            .apply_profile(&p)
            .unwrap_or_else(|e| panic!("{e}"));
        n += 1;
    }
    assert!(n >= 2);
}

#[test]
fn huge_durations_are_refused_not_wrapped() {
    // Issue 14: `as_millis() as u64` wrapped these into the allowed range.
    let mut c = kaspec_suites::registry::config();
    for pair in [
        "websocket.ping_interval=18446744073709552s",
        "tcp.user_timeout=18446744073709552s",
        "grpc.keepalive_time=18446744073709552s",
        "postgres.tcp_user_timeout=18446744073709552s",
    ] {
        let e = c.set_pair(pair).unwrap_err().0;
        assert!(
            e.contains(pair) && e.contains("out of range (allowed:") && !e.contains('\n'),
            "{pair}: {e}"
        );
    }
    let e = c
        .set_pair("postgres.conninfo=tcp_user_timeout=18446744073709551615")
        .unwrap_err()
        .0;
    assert!(
        e.contains("tcp_user_timeout=18446744073709551615") && !e.contains('\n'),
        "{e}"
    );
    assert_eq!(c, kaspec_suites::registry::config());
}

#[test]
fn profiles_refuse_unknown_tables_and_odd_names_in_one_line() {
    let mut c = kaspec_suites::registry::config();
    for (text, needle) in [
        ("[memcached]\n", "unknown table [memcached]"),
        ("name = 5\n", "name = 5: expected a string"),
        (
            "description = true\n",
            "description = true: expected a string",
        ),
        (
            "[tcp]\nidle = \"2s\"\n[tcp]\ncount = 3\n",
            "duplicate key `tcp`",
        ),
        ("[tcp]\nidle = \"2\\ns\"\n", "tcp.idle=\"2\\ns\""),
        ("[tcp]\nidle = [1]\n", "tcp.idle = [1]"),
    ] {
        let e = c.apply_profile_str(text).unwrap_err().0;
        assert!(e.contains(needle) && !e.contains('\n'), "{text:?}: {e}");
    }
    let e = c
        .apply_profile_str("[tcp]\nidle = \"2s\"\n[tcp]\ncount = 3\n")
        .unwrap_err()
        .0;
    assert!(e.contains("line 3"), "the duplicate's line: {e}");
    let e = c.set_pair("tcp.idle=3\ns").unwrap_err().0;
    assert!(e.contains("tcp.idle=\"3\\ns\"") && !e.contains('\n'), "{e}");
    assert_eq!(c, kaspec_suites::registry::config());
}

#[test]
fn a_redis_url_option_redis_rs_ignores_is_refused_by_name() {
    let mut c = kaspec_suites::registry::config();
    c.set_pair("redis.url=redis://cache.example.com:6379/0?protocol=resp3")
        .unwrap();
    for (url, needle) in [
        (
            "redis://h/?socket_keepalive=true",
            "ignores the query option `socket_keepalive`",
        ),
        (
            "redis://h/?health_check_interval=30",
            "`health_check_interval`",
        ),
        ("http://h/", "not a URL redis-rs parses"),
        ("redis://h/?protocol=7", "redis-rs rejects it"),
    ] {
        let e = c.set_pair(&format!("redis.url={url}")).unwrap_err().0;
        assert!(
            e.contains(needle) && e.contains("redis.url=") && !e.contains('\n'),
            "{url}: {e}"
        );
    }
}

/// Issue 18: a profile may name an external client, relative to itself.
#[test]
fn a_profile_names_its_client_adapter() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("client-profile");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("app.toml");
    std::fs::write(
        &p,
        "[mqtt]\nkeep_alive = \"3s\"\n[client]\nadapter = \"my-app.toml\"\n",
    )
    .unwrap();
    let mut c = kaspec_suites::registry::config();
    c.apply_profile(&p).unwrap();
    assert_eq!(c.client_adapter(), Some(dir.join("my-app.toml").as_path()));
    let e = c
        .apply_profile_str("[client]\nadapter = 3\n")
        .unwrap_err()
        .0;
    assert!(
        e.contains("client.adapter = 3: expected a file name"),
        "{e}"
    );
    let e = c
        .apply_profile_str("[client]\nprogram = \"x\"\n")
        .unwrap_err()
        .0;
    assert!(
        e.contains("unknown key client.program (allowed: client.adapter)"),
        "{e}"
    );
    assert!(!Path::new("x").is_absolute());
}
