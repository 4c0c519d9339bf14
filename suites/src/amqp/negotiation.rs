//! Heartbeat negotiation (Connection.Tune / Tune-Ok): what each request
//! yields against a broker's proposal, read from the wire and from the broker.

use super::*;

/// One connection of the negotiation case.
#[derive(Debug, Clone, PartialEq)]
pub struct Negotiated {
    pub request: Option<u16>,
    /// Connection.Tune's heartbeat as read.
    pub proposed: Option<u16>,
    /// Connection.Tune-Ok's heartbeat as written.
    pub tune_ok: Option<u16>,
    /// `conn.configuration().heartbeat()`.
    pub lapin: u16,
    /// What the broker uses (rabbitmqctl).
    pub broker: Option<u16>,
    pub local_port: u16,
}

impl Negotiated {
    fn asked(&self) -> String {
        self.request
            .map(|r| r.to_string())
            .unwrap_or_else(|| "unset".into())
    }
}

/// The requests tried against a server proposing `s`: none, 0, lower and
/// higher than `s`, and the configured one.
pub fn requests_for(s: u16, configured: u16) -> Vec<Option<u16>> {
    let mut v = vec![None, Some(0)];
    if s > 1 {
        v.push(Some(s / 2));
    }
    v.push(Some(if s == 0 { 600 } else { s.saturating_mul(2) }));
    v.push(Some(configured));
    let mut out = Vec::new();
    for r in v {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

/// What one row must show, as (what, expected, observed): the proposal
/// the configuration gives, lapin's rule (the lowest agreed value, §2.3.3;
/// 0 or unset takes the server's), Tune-Ok carrying what lapin uses, and the
/// broker using what Tune-Ok said. `side` picks whose values are judged.
pub fn row_requirements(
    row: &Negotiated,
    server: u16,
    side: &str,
) -> Vec<(String, String, String)> {
    let opt = |v: Option<u16>| v.map(|v| v.to_string()).unwrap_or_else(|| "nothing".into());
    let asked = row.asked();
    let mut out = vec![(
        format!("request {asked}: Tune proposed"),
        server.to_string(),
        opt(row.proposed),
    )];
    if side == "client" {
        let want = effective_heartbeat(row.request.unwrap_or(0), server);
        out.push((
            format!("request {asked}: lapin's heartbeat"),
            want.to_string(),
            row.lapin.to_string(),
        ));
        out.push((
            format!("request {asked}: Tune-Ok"),
            row.lapin.to_string(),
            opt(row.tune_ok),
        ));
    } else {
        out.push((
            format!("request {asked}: the broker's heartbeat"),
            opt(row.tune_ok),
            opt(row.broker),
        ));
    }
    out
}

/// The problems of one row (empty = fine), as sentences.
pub fn check_row(row: &Negotiated, server: u16, side: &str) -> Vec<String> {
    row_requirements(row, server, side)
        .into_iter()
        .filter(|(_, want, got)| want != got)
        .map(|(what, want, got)| format!("{what}: {got}, expected {want}"))
        .collect()
}

pub(crate) fn run_negotiation_main(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    run_negotiation(ctx, case, fault, &MAIN)
}

pub(crate) fn run_negotiation_hb0(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    run_negotiation(ctx, case, fault, &HB0)
}

pub(crate) fn run_negotiation(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    broker: &'static Broker,
) -> Result<Vec<CaseResult>> {
    let server = server_heartbeat(&ctx.fixtures, broker)?;
    let requests = requests_for(server, request_of(ctx));
    let lease = lease(ctx, broker)?;
    let tb = lease.testbed();
    let addr = SocketAddrV4::new(tb.server.addr, broker.port);
    let (rows_tx, rows_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let tag = tb.tag.clone();
    let reqs = requests.clone();
    // Every connection stays open until the broker has been asked.
    let thread = tb.client.spawn_thread("kaspec-amqp-negotiate", move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async move {
            let mut conns = Vec::new();
            let mut rows = Vec::new();
            for (i, r) in reqs.iter().enumerate() {
                let tap = Tap::default();
                match connect(addr, *r, &format!("kaspec-{tag}-negotiate-{i}"), &tap).await {
                    Ok(c) => {
                        let frames: Vec<Frame> =
                            tap.io().into_iter().flat_map(|io| io.frames).collect();
                        rows.push(Negotiated {
                            request: *r,
                            proposed: frames.iter().find_map(|f| {
                                if let Frame::Tune { heartbeat } = f {
                                    Some(*heartbeat)
                                } else {
                                    None
                                }
                            }),
                            tune_ok: frames.iter().find_map(|f| {
                                if let Frame::TuneOk { heartbeat } = f {
                                    Some(*heartbeat)
                                } else {
                                    None
                                }
                            }),
                            lapin: c.configuration().heartbeat(),
                            broker: None,
                            local_port: tap.local().map(|l| l.port()).unwrap_or(0),
                        });
                        conns.push((c, tap));
                    }
                    Err(e) => {
                        let _ = rows_tx.send(Err(e));
                        return;
                    }
                }
            }
            let _ = rows_tx.send(Ok(rows));
            let _ =
                tokio::task::spawn_blocking(move || done_rx.recv_timeout(Duration::from_secs(60)))
                    .await;
            for (c, tap) in conns {
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    c.close(200, "kaspec: done".into()),
                )
                .await;
                tap.release();
            }
        })
    })?;
    let rows = rows_rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| Error::Other("amqp negotiation thread did not report".into()))?;
    let timeouts = match &rows {
        Ok(_) => broker.timeouts(tb),
        Err(_) => Ok(Vec::new()),
    };
    let _ = done_tx.send(());
    thread.join()?;
    let mut rows = rows.map_err(Error::Other)?;
    let timeouts = timeouts?;
    for row in &mut rows {
        row.broker = timeouts
            .iter()
            .find(|(p, _)| *p == row.local_port)
            .map(|(_, t)| *t);
    }

    let t0 = Instant::now();
    let mut config = ctx.config.effective("amqp.");
    config.insert(
        "rabbitmq.heartbeat".into(),
        format!("{server}s ({})", broker.conf),
    );
    for row in &rows {
        config.insert(
            format!("negotiated[request={}]", row.asked()),
            format!(
                "lapin {}s, Tune-Ok {}, broker {}",
                row.lapin,
                row.tune_ok
                    .map(|t| format!("{t}s"))
                    .unwrap_or_else(|| "?".into()),
                row.broker
                    .map(|t| format!("{t}s"))
                    .unwrap_or_else(|| "?".into())
            ),
        );
    }
    let facts = RunFacts {
        case,
        fault,
        engine: "none".into(),
        commit_ms: 0,
        config,
        t0,
        timeline: Vec::new(),
        release: Default::default(),
    };
    let spec =
        "AMQP 0-9-1 §2.3.3 (lowest agreed value), Connection.Tune/Tune-Ok heartbeat (0 = none)";
    let mut out = Vec::new();
    for (side, implementation, peer) in [
        ("client", client_implementation(), broker_implementation()),
        ("server", broker_implementation(), client_implementation()),
    ] {
        let formula = if side == "client" {
            format!("lapin (channel.rs tune_connection_configuration): request 0 or unset → the server's S = {server}; both non-zero → min(request, S); Tune-Ok carries it")
        } else {
            "RabbitMQ (rabbit_reader tune_ok): the client's Tune-Ok heartbeat, for both directions"
                .to_string()
        };
        let mut formula = formula;
        if side == "client"
            && server != 0
            && rows.iter().any(|r| r.request == Some(0) && r.lapin != 0)
        {
            formula.push_str(&format!(". Finding: asking for 0 gives the server's {server}s; lapin cannot turn heartbeats off against a broker that proposes them"));
        }
        let mut expected = Expectation::not_detected(formula, spec);
        let mut seen = std::collections::BTreeMap::new();
        for row in &rows {
            for (what, want, got) in row_requirements(row, server, side) {
                expected = expected.requiring(what.clone(), want, spec, Level::Must);
                seen.insert(what, got);
            }
        }
        let error = if side == "client" {
            Some(
                rows.iter()
                    .map(|row| {
                        format!(
                            "request {}: configuration().heartbeat() = {}",
                            row.asked(),
                            row.lapin
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        } else {
            Some(format!(
                "rabbitmqctl list_connections peer_port timeout: {timeouts:?}"
            ))
        };
        let r = facts.result(
            SideOutcome {
                side,
                implementation,
                peer,
                expected,
                detected_at: None,
                error,
                deadline_ms: 0,
                observer_ms: 0,
                facts: seen,
                release: None,
                process_wake_ms: 0,
            },
            &ctx.judging(),
        )?;
        out.push(r);
    }
    drop(lease);
    Ok(out)
}
