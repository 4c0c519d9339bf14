//! The TCP NAT case: an idle connection through a NAT that forgets idle
//! flows after N (see [`crate::model::nat`]).

use super::*;
use crate::model::nat::{nat_idle, tcp_client_expectation, tcp_kept, SPEC};

pub(crate) fn nat_budget(ctx: &Ctx) -> Duration {
    let (d, nat) = (
        keepalive_death(&crate::config::TcpConfig::of(&ctx.config)),
        nat_idle(ctx),
    );
    Duration::from_secs(10)
        + (3 * nat).max(Duration::from_millis(d.ms + d.slack_ms) + nat + Duration::from_secs(1))
}

pub(crate) struct TcpEnd {
    pub(crate) failed_at: Option<Instant>,
    pub(crate) error: Option<String>,
    /// The echo sent after the idle period: Some(true) answered.
    pub(crate) echo: Option<(Instant, bool)>,
}

pub(crate) fn tcp_client(
    server: SocketAddrV4,
    tcp: TcpConfig,
    ready: mpsc::Sender<std::io::Result<(SocketAddrV4, Instant)>>,
    go: mpsc::Receiver<Instant>,
) -> TcpEnd {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut end = TcpEnd {
        failed_at: None,
        error: None,
        echo: None,
    };
    let setup = rt.block_on(connect_and_exchange(server, &tcp));
    let mut stream = match setup {
        Ok((s, local, last)) => {
            let _ = ready.send(Ok((local, last)));
            s
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return end;
        }
    };
    let Ok(echo_at) = go.recv() else { return end };
    rt.block_on(async {
        let mut buf = [0u8; 64];
        // Idle until the echo, watching for the stack to give up.
        match tokio::time::timeout_at(echo_at.into(), stream.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) => {
                end.failed_at = Some(Instant::now());
                end.error = Some("read: end of stream".into());
                return;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                end.failed_at = Some(Instant::now());
                end.error = Some(format!("read: std::io::Error {{ kind: {:?} }}: {e}", e.kind()));
                return;
            }
        }
        let sent = Instant::now();
        let answered = stream.write_all(b"still there?\n").await.is_ok()
            && matches!(tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await, Ok(Ok(n)) if n > 0);
        end.echo = Some((sent, answered));
    });
    end
}

pub(crate) fn run_nat(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let nat = nat_idle(ctx);
    let tcp = crate::config::TcpConfig::of(&ctx.config);
    let tb = ctx.testbed_with_nat("kaspec-tcp", nat)?;
    let addr = server_addr(&tb);
    let _server = start_server(ctx, &tb)?;
    let (go_tx, go_rx) = mpsc::channel();
    let (client_thread, (local, last)) = drive::client::start_or_fail(
        &tb.client,
        "kaspec-nat-client",
        "tcp client",
        Duration::from_secs(10),
        &format!("tcp client connecting to {addr} through the NAT"),
        move |ready_tx| tcp_client(addr, tcp, ready_tx, go_rx),
    )?;
    let watch = SocketWatch::start(&tb.server, addr, tb.seen_by_server(local))?;
    let t0 = last + nat;
    let client_exp = tcp_client_expectation(&tcp, nat);
    // Idle for 3 × N, or past the keep-alive's death when that comes later.
    let wait_ms = (3 * ms_of(nat)).max(
        client_exp
            .max_ms
            .map(|m| m + ms_of(nat) + 1000)
            .unwrap_or(0),
    );
    let echo_at = last + Duration::from_millis(wait_ms);
    go_tx
        .send(echo_at)
        .map_err(|_| Error::Other("tcp client thread ended early".into()))?;
    // Watch the server until the echo: after it the client closes, and that
    // clean close is not the server's detection.
    let server_closed = watch.wait(echo_at - Duration::from_millis(100))?;
    let end = client_thread.join()?;

    let mut timeline = vec![(last, "last segment of the flow".to_string())];
    let (detected_at, error) = match (end.failed_at, end.echo) {
        (Some(t), _) => (Some(t), end.error),
        (None, Some((t, true))) => {
            timeline.push((t, "echo after the idle period answered".into()));
            (
                None,
                Some(format!(
                    "after {} of idleness the connection still answers",
                    kaspec_harness::expect::ms(wait_ms)
                )),
            )
        }
        (None, Some((t, false))) => {
            timeline.push((t, "echo after the idle period unanswered".into()));
            // The stack did not detect anything; the connection is broken all the same.
            let broken = format!(
                "after {} of idleness an echo got no answer in 2 s: the NAT dropped it",
                kaspec_harness::expect::ms(wait_ms)
            );
            // Only a mapping that had to be kept makes a lost echo a failure
            // of the connection; with keep-alive off nothing was to notice.
            if tcp_kept(&tcp, nat) {
                (Some(t), Some(broken))
            } else {
                (None, Some(broken))
            }
        }
        (None, None) => (None, None),
    };
    let config = ctx.config.effective("tcp.");
    let deadline_ms = rel_ms(t0, echo_at + Duration::from_secs(2)).max(0) as u64;
    let release = crate::outcome::Releases {
        client: None,
        ..crate::outcome::releases(&tb, local, addr)
    };
    let facts = RunFacts::at_nat_expiry(case, fault, nat, config, t0, timeline, release);
    facts.both_sides(
        implementation(),
        server_implementation(),
        Side::library(client_exp, detected_at, error, deadline_ms),
        Side::from_socket(
            Expectation::not_detected(
                "server keep-alive off; whatever the client sends after the expiry dies at the NAT",
                SPEC,
            ),
            server_closed,
            deadline_ms,
            "server",
        ),
        &ctx.judging(),
    )
}
