//! `serve PROTOCOL --listen ADDR [options]`: our own servers, shared by
//! `kaspec serve` and the `kaspec-serve` binary.
//!
//! - [`tcp`]: an echo server, keep-alive off unless asked for (the fleet's server side).
//! - [`http_upstream`]: the proxy cases' upstream HTTP server (hyper, in-process).
//! - [`python`]: finding Debian's Python modules for the independent servers
//!   (fixtures/websocket/ws_server.py, fixtures/grpc/grpc_server.py).

pub mod grpc;
mod http;
pub mod http_upstream;
pub mod python;
mod ssh;
mod tcp;
mod websocket;

use std::net::SocketAddrV4;
use std::time::Duration;

const USAGE: &str = "usage: serve tcp --listen IPV4:PORT [--keepalive-idle DUR --keepalive-interval DUR --keepalive-count DUR-AS-N] | \
serve websocket --listen IPV4:PORT --ping-interval DUR --pong-timeout DUR | \
serve grpc --listen IPV4:PORT [--keepalive-time DUR --keepalive-timeout DUR] | \
serve ssh --listen IPV4:PORT --host-key FILE|new --keepalive-interval DUR --keepalive-max N | \
serve http --listen IPV4:PORT --header-read-timeout DUR";

/// Options whose value is not a duration.
const RAW: &[&str] = &["--host-key", "--keepalive-max"];

type Parsed = (
    String,
    SocketAddrV4,
    Vec<(String, Duration)>,
    Vec<(String, String)>,
);

fn parse(args: &[String]) -> Result<Parsed, String> {
    let (proto, rest) = args.split_first().ok_or("missing protocol")?;
    let mut listen = None;
    let mut opts = Vec::new();
    let mut raw = Vec::new();
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        if flag == "--listen" {
            listen = Some(
                value
                    .parse()
                    .map_err(|_| format!("--listen {value}: not an IPV4:PORT address"))?,
            );
        } else if RAW.contains(&flag.as_str()) {
            raw.push((flag.trim_start_matches("--").to_string(), value.clone()));
        } else {
            let d = humantime::parse_duration(value).map_err(|e| format!("{flag} {value}: {e}"))?;
            opts.push((flag.trim_start_matches("--").to_string(), d));
        }
    }
    Ok((proto.clone(), listen.ok_or("missing --listen")?, opts, raw))
}

/// Runs a server from its arguments; returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    let (proto, listen, opts, raw) = match parse(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("serve: {e}; {USAGE}");
            return 2;
        }
    };
    let get = |name: &str| opts.iter().find(|(k, _)| k == name).map(|(_, d)| *d);
    let text = |name: &str| raw.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    if proto == "ssh" {
        // russh's keep-alive timer is inside the library: this process's
        // wake-up lateness is measured by the same probe the harness runs,
        // and logged with the session's end (see `logged_wake_ms`).
        kaspec_harness::wake::ensure_running();
        let (Some(key), Some(i), Some(max)) = (
            text("host-key"),
            get("keepalive-interval"),
            text("keepalive-max").and_then(|m| m.parse::<usize>().ok()),
        ) else {
            eprintln!(
                "serve: ssh needs --host-key, --keepalive-interval and --keepalive-max N; {USAGE}"
            );
            return 2;
        };
        return match ssh::serve(listen, &key, i, max) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("serve ssh: {e}");
                1
            }
        };
    }
    if !raw.is_empty() {
        eprintln!("serve: unexpected arguments {args:?}; {USAGE}");
        return 2;
    }
    let result = match (
        proto.as_str(),
        get("ping-interval"),
        get("pong-timeout"),
        get("keepalive-time"),
        get("keepalive-timeout"),
    ) {
        ("tcp", None, None, None, None) => match (
            get("keepalive-idle"),
            get("keepalive-interval"),
            get("keepalive-count"),
        ) {
            (None, None, None) => tcp::serve(listen, None),
            // The count travels as a duration of that many seconds (every
            // option here is a duration): `--keepalive-count 3s` is 3 probes.
            (Some(i), Some(v), Some(n)) => tcp::serve(listen, Some((i, v, n.as_secs() as u32))),
            _ => {
                eprintln!("serve tcp: --keepalive-idle, --keepalive-interval and --keepalive-count go together; {USAGE}");
                return 2;
            }
        },
        ("websocket", Some(p), Some(t), None, None) => websocket::serve(listen, p, t),
        ("grpc", None, None, i, t) if i.is_some() == t.is_some() => grpc::serve(listen, i.zip(t)),
        ("http", None, None, None, None) => match get("header-read-timeout") {
            Some(h) if opts.len() == 1 => http::serve(listen, h),
            _ => {
                eprintln!("serve http: needs --header-read-timeout DUR and nothing else; {USAGE}");
                return 2;
            }
        },
        _ => {
            eprintln!("serve: unexpected arguments {args:?}; {USAGE}");
            return 2;
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("serve {proto}: {e}");
            1
        }
    }
}

/// Words that introduce a process's own wake-up lateness in its log line.
const WAKE_NOTE: &str = "wake-up lateness here";

/// What a kaspec server appends to the line that ends a connection: the
/// worst lateness its probe (kaspec_harness::wake) saw over `span` before
/// now — the time its keep-alive timers ran. It waits 3 ms first: after a
/// stall the probe thread may not have run yet to record it.
pub fn wake_note(span: std::time::Duration) -> String {
    std::thread::sleep(std::time::Duration::from_millis(3));
    let now = std::time::Instant::now();
    let ms = kaspec_harness::wake::lateness_ms(now.checked_sub(span).unwrap_or(now), now);
    format!("{WAKE_NOTE} {ms} ms")
}

/// The lateness [`wake_note`] logged on the last line that starts with
/// `prefix` written at or after byte `from` of `log`; None when there is
/// none within 200 ms (the server logs it as the connection ends, which
/// the harness may see first) or the log is not a file (docker).
pub fn logged_wake_ms(log: &std::path::Path, from: u64, prefix: &str) -> Option<u64> {
    let until = std::time::Instant::now() + std::time::Duration::from_millis(200);
    loop {
        let text = std::fs::read(log).ok()?;
        let text = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
        if let Some(ms) = wake_in(&text, prefix) {
            return Some(ms);
        }
        if std::time::Instant::now() >= until {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn wake_in(log: &str, prefix: &str) -> Option<u64> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.starts_with(prefix) && l.contains(WAKE_NOTE))?;
    line.split(WAKE_NOTE)
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod wake_tests {
    use super::*;

    #[test]
    fn a_servers_logged_wake_up_lateness_is_read_back() {
        let note = wake_note(std::time::Duration::from_millis(50));
        let log = format!("listening\nsession ended: Disconnected; {WAKE_NOTE} 5000 ms\nsession ended: Keepalive timeout; {note}\n");
        assert!(
            wake_in(&log, "session ended:").is_some_and(|ms| ms < 1000),
            "the last line: {log}"
        );
        assert_eq!(
            wake_in(
                "session ended: x; wake-up lateness here 12 ms\nother\n",
                "session ended:"
            ),
            Some(12)
        );
        assert_eq!(wake_in("session ended: x\n", "session ended:"), None);
    }

    #[test]
    fn only_what_was_logged_after_the_offset_counts() {
        let dir = std::env::temp_dir().join(format!("kaspec-wake-note-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("server.log");
        let early = format!("session ended: Disconnected; {WAKE_NOTE} 40 ms\n");
        std::fs::write(
            &log,
            format!("{early}session ended: Keepalive timeout; {WAKE_NOTE} 7 ms\n"),
        )
        .unwrap();
        assert_eq!(logged_wake_ms(&log, 0, "session ended:"), Some(7));
        std::fs::write(&log, &early).unwrap();
        assert_eq!(
            logged_wake_ms(&log, early.len() as u64, "session ended:"),
            None,
            "nothing after the offset"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
