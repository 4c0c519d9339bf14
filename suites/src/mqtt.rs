//! MQTT 3.1.1 Keep Alive (§3.1.2.10): rumqttc against a real Mosquitto in the
//! server host, configured from `fixtures/mosquitto/kaspec.conf`.
//!
//! rumqttc 0.24's algorithm (src/eventloop.rs `select`, src/state.rs
//! `outgoing_ping`), from which the client window is derived: a timer fires
//! every K from CONNACK, whatever the traffic; each firing sends PINGREQ,
//! unless the previous PINGREQ is still unanswered, in which case the event
//! loop fails with `StateError::AwaitPingResp`. So a path that dies after the
//! PINGREQ at t_p is detected at t_p + 2K, i.e. in (K, 2K] after the fault.
//!
//! The server side is judged against the spec, whatever this broker does:
//! "If the Keep Alive value is non-zero and the Server does not receive a
//! Control Packet from the Client within one and a half times the Keep Alive
//! time period, it MUST disconnect the Network Connection to the Client as if
//! the network had failed" [MQTT-3.1.2-24].

use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kaspec_harness::caps::require_program;
use kaspec_harness::expect::{Expectation, Level};
use kaspec_harness::fault::{FaultKind, Flow};
use kaspec_harness::observe::{local_end_towards, SocketWatch};
use kaspec_harness::report::{CaseResult, Implementation};
use kaspec_harness::server::{ContainerCheck, Server, ServerSpec};
use kaspec_harness::{Error, Result};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet};

use crate::case::{ms_of, rel_ms, CaseDef, Ctx, RunFacts, Side};


pub const PORT: u16 = 1883;

pub static CASES: [CaseDef; 1] = [CaseDef {
    id: "mqtt/3.1.1-3.1.2.10/1",
    protocol: "mqtt",
    spec: "MQTT 3.1.1 §3.1.2.10",
    description: "Idle client with Keep Alive K; the path fails halfway between two PINGREQs: the client misses a PINGRESP, the broker stops hearing the client.",
    requirement: "Client: close when PINGRESP does not come in a reasonable time (SHOULD; window from rumqttc's algorithm). Server: disconnect a client not heard from for 1.5 × K [MQTT-3.1.2-24] (MUST)",
    faults: &FaultKind::INSTANT_AND_IMPAIR,
    run: run_idle,
    budget,
    fixed_fault: None,
}];

fn budget(ctx: &Ctx) -> Duration {
    let k = ctx.config.mqtt.keep_alive.max(Duration::from_secs(2));
    // connect, one ping cycle, half a period of idle, then 3 × 2K.
    Duration::from_secs(3) + k + k / 2 + 6 * k
}

pub fn client_implementation() -> Implementation {
    Implementation::new("rumqttc", env!("KASPEC_VERSION_RUMQTTC"))
}

/// `mosquitto -h` prints `mosquitto version X.Y.Z` first.
pub fn broker_implementation(program: &std::path::Path) -> Implementation {
    let out = std::process::Command::new(program).arg("-h").output();
    let version = out
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.lines().find_map(|l| l.strip_prefix("mosquitto version ").map(|v| v.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown".into());
    Implementation::new("mosquitto", version)
}

pub fn broker_config(fixtures: &std::path::Path) -> PathBuf {
    fixtures.join("mosquitto/kaspec.conf")
}

/// Client-side expectation: `since_ping_ms` = t0 − the last PINGREQ.
pub fn client_expectation(k: Duration, fault: FaultKind, since_ping_ms: u64) -> Expectation {
    let k = ms_of(k);
    if k == 0 {
        return Expectation::not_detected("Keep Alive 0: rumqttc never pings", "MQTT 3.1.1 §3.1.2.10");
    }
    let spec = "MQTT 3.1.1 §3.1.2.10 + rumqttc keep-alive algorithm";
    if fault == FaultKind::Reset {
        let d = k.saturating_sub(since_ping_ms);
        return Expectation::window(
            d,
            d,
            format!("the next PINGREQ (K after the last) is answered by RST: K − {since_ping_ms} = {k} − {since_ping_ms} = {d} ms"),
            spec,
            Level::Should,
        );
    }
    let d = (2 * k).saturating_sub(since_ping_ms);
    Expectation::window(
        d,
        d,
        format!("AwaitPingResp at the tick after the unanswered PINGREQ: 2K − (t0 − last PINGREQ) = 2×{k} − {since_ping_ms} = {d} ms (within (K, 2K])"),
        spec,
        Level::Should,
    )
}

/// Server-side expectation. `last_heard_ms` is when the broker last received
/// a packet from the client, relative to t0 (negative: before the fault).
pub fn server_expectation(k: Duration, fault: FaultKind, last_heard_ms: i64) -> Expectation {
    let k = ms_of(k) as i64;
    if k == 0 {
        return Expectation::not_detected("Keep Alive 0: the server has no keep-alive duty", "MQTT 3.1.1 §3.1.2.10");
    }
    if fault == FaultKind::Freeze {
        return Expectation::not_detected("the broker process is frozen", "MQTT 3.1.1 §3.1.2.10");
    }
    let why = if fault == FaultKind::BlackholeDown {
        "PINGREQs still reach the broker until the client gives up; the client's FIN then waits behind its \
         unacknowledged PINGREQ (cwnd 1 after an RTO), so the broker last hears the client's last PINGREQ"
    } else {
        "the broker last hears the client's last PINGREQ before the fault"
    };
    let lo = (last_heard_ms + k).max(0) as u64;
    let hi = (last_heard_ms + 3 * k / 2).max(0) as u64;
    Expectation::window(
        lo,
        hi,
        format!("{why}; disconnect after 1.5 × K of silence, not before K: last heard {last_heard_ms:+} ms + [{k}, {}] ms", 3 * k / 2),
        "MQTT 3.1.1 §3.1.2.10 [MQTT-3.1.2-24]",
        Level::Must,
    )
}

pub(crate) struct Ready {
    pub local: SocketAddrV4,
    /// The last PINGREQ (or CONNECT) the client sent.
    pub last_out: Instant,
}

pub(crate) struct ClientEnd {
    pub failed_at: Option<Instant>,
    pub error: Option<String>,
    pub events: Vec<(Instant, String)>,
}

/// The client: connect, wait for one PINGREQ/PINGRESP round (steady state)
/// or only for the CONNACK, report ready, then keep polling until the event
/// loop fails or `stop` fires.
pub(crate) fn client(
    broker: SocketAddrV4,
    id: String,
    k: Duration,
    ready_at_connack: bool,
    ready: mpsc::Sender<std::result::Result<Ready, String>>,
    stop_at: tokio::sync::watch::Receiver<Option<Instant>>,
) -> Option<ClientEnd> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let mut opts = MqttOptions::new(id, broker.ip().to_string(), broker.port());
        opts.set_keep_alive(k).set_clean_session(true);
        let (_client, mut ev) = AsyncClient::new(opts, 10);
        let mut events: Vec<(Instant, String)> = Vec::new();
        let mut last_out = Instant::now();
        let mut ready_tx = Some(ready);
        let mut stop_at = stop_at;
        let setup_deadline = Instant::now() + Duration::from_secs(5) + 2 * k;
        loop {
            let stop = *stop_at.borrow();
            let limit = match (&ready_tx, stop) {
                (Some(_), _) => setup_deadline,
                (None, Some(t)) => t,
                (None, None) => Instant::now() + Duration::from_secs(3600),
            };
            let polled = tokio::select! {
                r = tokio::time::timeout_at(limit.into(), ev.poll()) => r,
                changed = stop_at.changed() => match changed {
                    Ok(()) => continue,
                    // The run went away: stop instead of spinning on a closed channel.
                    Err(_) => return Some(ClientEnd { failed_at: None, error: None, events }),
                },
            };
            let now = Instant::now();
            match polled {
                Err(_) => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(Err("rumqttc did not connect and complete a ping round in time".into()));
                        return None;
                    }
                    return Some(ClientEnd { failed_at: None, error: None, events });
                }
                Ok(Err(e)) => {
                    events.push((now, "rumqttc event loop failed".into()));
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(Err(format!("rumqttc failed before the fault: {e}")));
                        return None;
                    }
                    return Some(ClientEnd { failed_at: Some(now), error: Some(format!("rumqttc::ConnectionError::{e:?}: {e}")), events });
                }
                Ok(Ok(event)) => {
                    let steady = match &event {
                        Event::Incoming(Packet::ConnAck(_)) => {
                            events.push((now, "CONNACK received".into()));
                            if ready_at_connack {
                                last_out = now;
                            }
                            k.is_zero() || ready_at_connack
                        }
                        Event::Outgoing(Outgoing::PingReq) => {
                            last_out = now;
                            events.push((now, "PINGREQ sent".into()));
                            false
                        }
                        Event::Incoming(Packet::PingResp) => {
                            events.push((now, "PINGRESP received".into()));
                            true
                        }
                        _ => false,
                    };
                    if steady {
                        if let Some(tx) = ready_tx.take() {
                            let r = local_end_towards(broker)
                                .map(|local| Ready { local, last_out })
                                .map_err(|e| e.to_string());
                            let failed = r.is_err();
                            let _ = tx.send(r);
                            if failed {
                                return None;
                            }
                        }
                    }
                }
            }
        }
    })
}

/// The broker's program: Mosquitto here, or the container's on the docker
/// testbed (its version the image's).
pub fn broker_program(ctx: &Ctx) -> Result<PathBuf> {
    match ctx.docker {
        None => require_program("mosquitto", "mosquitto"),
        Some(_) => Ok("mosquitto".into()),
    }
}

/// Mosquitto with fixtures/'s configuration on `tb` (docker-compose.yml's
/// mosquitto, checked to mount that file, on the docker testbed).
pub fn start_broker(ctx: &Ctx, tb: &kaspec_harness::netns::Testbed, program: PathBuf) -> Result<(Server, SocketAddrV4)> {
    let conf = broker_config(&ctx.fixtures);
    if !conf.is_file() {
        return Err(Error::Other(format!("broker configuration {} is missing", conf.display())));
    }
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let broker = Server::start(
        tb,
        &ServerSpec {
            name: "mosquitto".into(),
            program,
            args: vec!["-c".into(), conf.display().to_string()],
            addr,
            ready_within: Duration::from_secs(10),
            container: Some(ContainerCheck {
                service: "mosquitto".into(),
                files: vec![("/mosquitto/config/mosquitto.conf".into(), conf.clone())],
                ..Default::default()
            }),
            ..Default::default()
        },
    )?;
    Ok((broker, addr))
}

fn run_idle(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let program = broker_program(ctx)?;
    let broker_impl = broker_implementation(&program);
    let k = ctx.config.mqtt.keep_alive;
    let tb = ctx.testbed_for("mosquitto")?;
    let (broker, addr) = start_broker(ctx, &tb, program)?;

    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let id = format!("kaspec-{}", tb.tag);
    let client_thread = tb.client.spawn_thread("kaspec-mqtt-client", move || client(addr, id, k, false, ready_tx, stop_rx))?;
    let ready = ready_rx
        .recv_timeout(Duration::from_secs(10) + 3 * k)
        .map_err(|_| Error::Other("mqtt client thread did not report".into()))?
        .map_err(Error::Other)?;
    let watch = SocketWatch::start(&tb.server, addr, tb.seen_by_server(ready.local))?;

    // Let the path die halfway between two PINGREQs.
    let fault_at = ready.last_out + k / 2;
    if let Some(wait) = fault_at.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    let applied = tb.apply_fault(fault, &Flow { client: ready.local, server: addr }, Some(broker.pid()))?;
    let t0 = applied.in_force_at;
    let since_ms = rel_ms(ready.last_out, t0).max(0) as u64;

    let nominal = client_expectation(k, fault, since_ms);
    // The broker waits 3× its window, plus what a documented deviation says
    // it may take beyond it, so the deviation is measured, not cut off.
    let imp = ctx.impairment(fault);
    let (client_deadline_ms, server_deadline_ms) = match &imp {
        Some(i) => {
            let watch = crate::case::impaired_watch_ms(2 * k, i);
            (watch, watch)
        }
        None => (
            nominal.deadline_ms(10_000),
            server_expectation(k, FaultKind::Blackhole, -(since_ms as i64)).deadline_ms(10_000)
                + crate::deviations::late_allowance_ms(&ctx.deviations, case.id, "server", &broker_impl.name),
        ),
    };
    let deadline = t0 + Duration::from_millis(client_deadline_ms.max(server_deadline_ms));
    // The client keeps its connection until the broker has been watched: its
    // clean close (a FIN through a one-way blackhole) is not the broker's
    // detection. A client failure after its own deadline does not count.
    let server_closed = watch.wait(t0 + Duration::from_millis(server_deadline_ms))?;
    let _ = stop_tx.send(Some(Instant::now().max(t0 + Duration::from_millis(client_deadline_ms))));
    let mut end = client_thread.join()?.ok_or_else(|| Error::Other("mqtt client ended without a result".into()))?;
    if end.failed_at.is_some_and(|t| t > t0 + Duration::from_millis(client_deadline_ms)) {
        end.failed_at = None;
        end.error = end.error.map(|e| format!("after the client's deadline: {e}"));
    }

    // The last PINGREQ before the fault (the client's last packet the broker got).
    let last_before = end.events.iter().filter(|(t, w)| *t < t0 && w == "PINGREQ sent").map(|(t, _)| *t).last().unwrap_or(ready.last_out);
    let since_ms = rel_ms(last_before, t0).max(0) as u64;
    // What the broker last received: with client->server open (blackhole-down)
    // every PINGREQ until the client gave up, otherwise the last one before t0.
    let last_heard = if fault == FaultKind::BlackholeDown {
        let until = end.failed_at.unwrap_or(deadline);
        end.events.iter().filter(|(t, w)| *t < until && w == "PINGREQ sent").map(|(t, _)| *t).last().unwrap_or(last_before)
    } else {
        last_before
    };
    let mut timeline = end.events;
    if let Some(c) = &server_closed {
        timeline.push((c.at, format!("broker socket {}", c.state)));
    }
    let release = crate::case::Releases { client: None, ..crate::case::releases(&tb, ready.local, addr) };
    if let Some(e) = crate::case::impairment_event(&tb)? {
        timeline.push(e);
    }
    let facts = RunFacts { case, fault, engine: applied.engine.clone(), config: ctx.config.effective("mqtt."), t0, timeline, release };
    let (client_exp, server_exp) = match &imp {
        // rumqttc fails when the PINGRESP is not in by its next tick, K later;
        // the broker allows 1.5 × K between packets that come every K.
        Some(i) => (
            crate::case::impaired_expectation("Keep Alive K (the PINGRESP's time before the next tick) =", k, i, case.spec),
            crate::case::impaired_expectation("the broker's slack, 1.5 × K − K =", k / 2, i, case.spec),
        ),
        None => (client_expectation(k, fault, since_ms), server_expectation(k, fault, rel_ms(t0, last_heard))),
    };
    Ok(facts.both_sides(
        client_implementation(),
        broker_impl,
        Side { expected: client_exp, detected_at: end.failed_at, error: end.error, deadline_ms: client_deadline_ms },
        Side::from_socket(server_exp, server_closed, server_deadline_ms, "broker"),
        &ctx.deviations,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_window_is_two_periods_after_the_last_ping() {
        let e = client_expectation(Duration::from_secs(2), FaultKind::Blackhole, 1000);
        assert_eq!((e.min_ms, e.max_ms), (Some(3000), Some(3000)));
        let r = client_expectation(Duration::from_secs(2), FaultKind::Reset, 1000);
        assert_eq!(r.max_ms, Some(1000));
        assert!(!client_expectation(Duration::ZERO, FaultKind::Blackhole, 0).expects_detection());
    }

    #[test]
    fn server_window_is_one_and_a_half_keep_alives_of_silence() {
        let e = server_expectation(Duration::from_secs(4), FaultKind::Blackhole, -2000);
        assert_eq!((e.min_ms, e.max_ms), (Some(2000), Some(4000)));
        assert_eq!(e.level, Level::Must);
        // One-way: the broker still heard a PINGREQ 2 s after the fault.
        let down = server_expectation(Duration::from_secs(4), FaultKind::BlackholeDown, 2000);
        assert_eq!((down.min_ms, down.max_ms, down.level), (Some(6000), Some(8000), Level::Must));
    }
}
