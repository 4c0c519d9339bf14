//! The windows: mariadbd's `wait_timeout` from its read timeout, a query
//! on a connection the server closed, and the keep-alive ones from Linux
//! with the options each side really had ([`crate::model::tcp`]).

use super::*;

/// The client host's keep-alive interval and probe count for the
/// client-keep-alive case (mysql_async sets neither; the kernel's defaults,
/// 75 s and 9, would make the case last 11 minutes).
pub const CLIENT_PROBE_INTERVAL_S: u64 = 1;
pub const CLIENT_PROBES: u64 = 2;

/// How late poll(W × 1000 ms) may return by design: the kernel lets an
/// hrtimer sleep of a normal (nice 0, not real-time) thread run late by 0.1%
/// of the timeout, at most 100 ms (fs/select.c `select_estimate_accuracy`),
/// + 1 ms for the close after it.
fn poll_slack_ms(w_ms: u64) -> u64 {
    (w_ms / 1000).min(100) + 1
}

/// When mariadbd closes a connection idle since its last command, after t0:
/// the thread starts its read of the next command with a timeout of W when
/// it has written the reply (sql_parse.cc do_command; vio_io_wait's
/// poll(W × 1000 ms)), which is between the command's send (`since_cmd` ms
/// before t0) and the reply's arrival at the client (`since_reply`).
pub fn wait_timeout_expectation(w: Duration, since_cmd: u64, since_reply: u64, who: &str, spec: &str) -> Expectation {
    let w = ms_of(w);
    let slack = poll_slack_ms(w);
    let lo = w.saturating_sub(since_cmd);
    let hi = (w + slack).saturating_sub(since_reply);
    Expectation::window(
        lo,
        hi,
        format!(
            "{who}: the read of the next command times out at last reply + W = {w} ms (the command sent {since_cmd} ms and its reply read {since_reply} ms before t0), + up to {slack} ms (poll()'s timer slack, 0.1% of W: fs/select.c select_estimate_accuracy; the close)"
        ),
        spec,
        Level::Must,
    )
}

/// The query sent at `sent_ms` after t0 on a connection the server has
/// closed (at `closed_ms`) or is about to close.
pub fn query_on_closed(fault: FaultKind, sent_ms: u64, spec: &str) -> Expectation {
    match fault {
        FaultKind::None | FaultKind::BlackholeUp => Expectation::window(
            sent_ms,
            sent_ms + 3,
            format!("the server's FIN reached the client before the query at +{sent_ms} ms: mysql_async writes the query and its read meets the EOF at once (+ up to 3 ms)"),
            spec,
            Level::Must,
        ),
        FaultKind::Reset => Expectation::window(
            sent_ms,
            sent_ms + 3,
            format!("the query at +{sent_ms} ms is answered by the router's RST (+ up to 3 ms)"),
            "RFC 9293 §3.5.3 (reset processing)",
            Level::Must,
        ),
        FaultKind::Freeze => Expectation::not_detected("the frozen server's kernel acknowledges the query and nobody answers; mysql_async has no read timeout", spec),
        _ => Expectation::not_detected(
            "the server's FIN (and its RST to the query) are lost: the query waits for its reply as long as the kernel retransmits (tcp_retries2, ~15 min); mysql_async has no read timeout",
            spec,
        ),
    }
}

/// The fact the pool case requires: which connection the next checkout gave.
pub const POOL_NEXT: &str = "connection of the next checkout";

/// mysql_async's pool at the checkout `idle_ms` after the connection's last
/// I/O (conn/pool/mod.rs): a connection with `idle > ttl` (Conn::expired:
/// conn_ttl, else the @@wait_timeout it read) goes to the recycler; one
/// that is not is checked (io/mod.rs CheckTcpStream: readable with EOF →
/// broken) and dropped if broken; either way a new connection is made. A
/// connection that passes both carries the query.
pub fn pool_checkout(ttl: Duration, idle_ms: u64, fault: FaultKind, sent_ms: u64, spec: &str) -> Expectation {
    let t = ms_of(ttl);
    let source = "mysql_async 0.37 conn/pool/mod.rs (expired(), then stream check())";
    // The server's FIN has reached the client on these paths.
    let fin = matches!(fault, FaultKind::None | FaultKind::BlackholeUp);
    let discard = if idle_ms > t {
        Some(format!("idle {idle_ms} ms > TTL {t} ms: expired, recycled"))
    } else if fin {
        Some(format!("idle {idle_ms} ms ≤ TTL {t} ms, but the server's FIN is in: the check reads EOF (broken pipe) and drops it"))
    } else {
        None
    };
    match discard {
        Some(why) => Expectation::not_detected(
            format!("the pool does not hand out the closed connection ({why}); a new connection carries the query, which succeeds"),
            spec,
        )
        .requiring(POOL_NEXT, "a new one", source, Level::Must),
        None => {
            let e = query_on_closed(fault, sent_ms, spec);
            let why = format!("idle {idle_ms} ms ≤ TTL {t} ms and nothing readable: the check passes, the idle connection carries the query — ");
            let e = match (e.min_ms, e.max_ms) {
                (Some(lo), Some(hi)) => Expectation::window(lo, hi, format!("{why}{}", e.formula), spec, Level::Must),
                _ => Expectation::not_detected(format!("{why}{}", e.formula), spec),
            };
            e.requiring(POOL_NEXT, "the idle one", source, Level::Must)
        }
    }
}

/// Linux's keep-alive window of one side with the options read back from
/// its socket, the other side's abort RST included where the fault lets it through.
pub fn keepalive_sides(client: &TcpConfig, client_idle: u64, server: &TcpConfig, server_idle: u64, fault: FaultKind, spec: &str) -> (Expectation, Expectation) {
    let to_client = (fault == FaultKind::BlackholeUp).then_some((server, server_idle));
    let to_server = (fault == FaultKind::BlackholeDown).then_some((client, client_idle));
    (
        keepalive_window(client, client_idle, to_client, fault, "client (options read back from mysql_async's socket)", spec),
        keepalive_window(server, server_idle, to_server, fault, "server (options read back from mariadbd's socket)", spec),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_timeout_counts_from_the_reply() {
        let e = wait_timeout_expectation(Duration::from_secs(2), 300, 299, "server", "s");
        assert_eq!((e.min_ms, e.max_ms), (Some(1700), Some(1704)));
        let e = wait_timeout_expectation(Duration::from_secs(2), 3000, 2999, "server", "s");
        assert_eq!((e.min_ms, e.max_ms), (Some(0), Some(0)));
    }

    #[test]
    fn a_query_on_a_closed_connection_fails_only_where_something_reaches_the_client() {
        let e = query_on_closed(FaultKind::None, 3000, "s");
        assert_eq!((e.min_ms, e.max_ms), (Some(3000), Some(3003)));
        assert!(query_on_closed(FaultKind::Reset, 3000, "s").expects_detection());
        for f in [FaultKind::Blackhole, FaultKind::BlackholeDown, FaultKind::Freeze] {
            assert!(!query_on_closed(f, 3000, "s").expects_detection(), "{f:?}");
        }
    }

    #[test]
    fn the_pool_discards_an_expired_or_closed_connection() {
        let ttl = Duration::from_secs(2);
        let e = pool_checkout(ttl, 3000, FaultKind::BlackholeDown, 3000, "s");
        assert!(!e.expects_detection() && e.requirements[0].expected == "a new one");
        let long = Duration::from_secs(60);
        assert_eq!(pool_checkout(long, 3000, FaultKind::None, 3000, "s").requirements[0].expected, "a new one");
        let down = pool_checkout(long, 3000, FaultKind::BlackholeDown, 3000, "s");
        assert!(!down.expects_detection() && down.requirements[0].expected == "the idle one");
        let reset = pool_checkout(long, 3000, FaultKind::Reset, 3000, "s");
        assert_eq!((reset.min_ms, reset.max_ms), (Some(3000), Some(3003)));
    }

    #[test]
    fn keepalive_sides_let_the_earlier_rst_through() {
        let s = ServerSettings::parse("tcp_keepalive_time = 1\ntcp_keepalive_interval = 1\ntcp_keepalive_probes = 2\n").unwrap().keepalive();
        let c = TcpConfig { keepalive: true, idle: Duration::from_secs(2), ..s };
        let (ce, se) = keepalive_sides(&c, 200, &s, 200, FaultKind::BlackholeUp, "s");
        assert_eq!((ce.min_ms, se.min_ms), (Some(2800), Some(2800)), "the server's RST reaches the client first");
        let (ce, _) = keepalive_sides(&c, 200, &s, 200, FaultKind::Blackhole, "s");
        assert_eq!(ce.min_ms, Some(3800));
        let off = TcpConfig { keepalive: false, ..c };
        assert!(!keepalive_sides(&off, 200, &s, 200, FaultKind::Blackhole, "s").0.expects_detection());
    }
}
