//! The MQTT fleet: N idle MQTT 3.1.1 connections to Mosquitto, each a
//! minimal CONNECT / PINGREQ client on one tokio thread (rumqttc's event
//! loop per connection is not needed to hold a session open), cut at once.
//!
//! The client keeps rumqttc's algorithm (see the folder's doc): a tick every
//! K from CONNACK; each tick sends PINGREQ, unless the previous one is still
//! unanswered, and then the connection is dead. So a connection whose last
//! tick before the fault, at t_l, was answered dies at t_l + 2K; one whose
//! PINGREQ at t_l was still unanswered at the fault dies at t_l + K. The
//! broker is judged per connection by [MQTT-3.1.2-24] from the last data
//! segment its socket received (sock_diag, after the fault): its last
//! PINGREQ.

use std::cell::RefCell;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::drive::fleet::{ConnEnd, ConnSides, ConnView, Connected, Deadlines, Stop};

/// Heartbeats kept per connection: the last few are all the windows need.
const PINGS_KEPT: usize = 4;

/// How long one run of the fleet may take: connecting, then the broker's
/// window and its documented lateness, twice.
pub(crate) fn fleet_budget(ctx: &Ctx) -> Duration {
    let k = super::knobs::MqttConfig::of(&ctx.config)
        .keep_alive
        .max(Duration::from_secs(1));
    Duration::from_secs(20)
        + Duration::from_millis(2 * ctx.config.count(&crate::drive::fleet::CONNECTIONS))
        + 4 * k
}

/// MQTT 3.1.1 §3.1: CONNECT with a clean session and Keep Alive `k` seconds.
fn connect_packet(id: &str, k: u16) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02];
    body.extend(k.to_be_bytes());
    body.extend((id.len() as u16).to_be_bytes());
    body.extend(id.as_bytes());
    let mut p = vec![0x10, body.len() as u8];
    p.extend(body);
    p
}

/// One connection: CONNECT, CONNACK, report, then ping every K until a
/// PINGREQ goes unanswered for a whole period or the case stops it.
async fn conn(
    addr: SocketAddrV4,
    id: String,
    k: Duration,
    connected: Connected,
    mut stop: Stop,
) -> ConnEnd {
    let mut end = ConnEnd::default();
    let setup = async {
        let mut s =
            tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| std::io::Error::other("connect timed out"))??;
        s.set_nodelay(true)?;
        s.write_all(&connect_packet(&id, k.as_secs() as u16))
            .await?;
        let mut ack = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut ack))
            .await
            .map_err(|_| std::io::Error::other("no CONNACK in 5 s"))??;
        if ack != [0x20, 0x02, 0x00, 0x00] {
            return Err(std::io::Error::other(format!(
                "CONNACK refused: {ack:02x?}"
            )));
        }
        let SocketAddr::V4(local) = s.local_addr()? else {
            unreachable!("IPv4 testbed")
        };
        Ok((s, local, Instant::now()))
    };
    let (mut stream, local, connack) = match setup.await {
        Ok(v) => v,
        Err(e) => {
            connected.send(Err(e));
            return end;
        }
    };
    end.local = Some(local);
    connected.send(Ok(local));
    // The CONNACK is tick 0, answered.
    let pings = RefCell::new(vec![(connack, Some(connack))]);
    let late = std::cell::Cell::new(Duration::ZERO);
    let life = async {
        let mut tick = tokio::time::interval_at((connack + k).into(), k);
        let mut buf = [0u8; 64];
        loop {
            tokio::select! {
                at = tick.tick() => {
                    let at: Instant = at.into_std();
                    if pings.borrow().last().is_some_and(|(_, answered)| answered.is_none()) {
                        let now = Instant::now();
                        late.set(now - at);
                        return (now, format!("no PINGRESP for the PINGREQ sent one Keep Alive before (tick at +{} ms)", rel_ms(connack, at)));
                    }
                    if let Err(e) = stream.write_all(&[0xC0, 0x00]).await {
                        return (Instant::now(), format!("write: {e}"));
                    }
                    // The tick's own instant: the next tick is K after it,
                    // however late this one ran (the windows count from it).
                    let mut p = pings.borrow_mut();
                    p.push((at, None));
                    if p.len() > PINGS_KEPT {
                        p.remove(0);
                    }
                }
                r = stream.read(&mut buf) => match r {
                    Ok(0) => return (Instant::now(), "read: end of stream (the broker closed the connection)".to_string()),
                    // Only PINGRESPs (0xD0 0x00) come on an idle session.
                    Ok(_) => {
                        if let Some(last) = pings.borrow_mut().last_mut() {
                            last.1.get_or_insert_with(Instant::now);
                        }
                    }
                    Err(e) => return (Instant::now(), format!("read: {e}")),
                },
            }
        }
    };
    if let Some((at, error)) = crate::drive::fleet::or_stop(life, &mut stop).await {
        end.failed_at = Some(at);
        end.error = Some(error);
    }
    end.pings = pings.into_inner();
    end.stamped_late = late.get();
    end
}

/// The client window of one connection (see the file's doc), from its last
/// tick before t0 (the tick's scheduled instant: a PINGREQ it sent after t0,
/// late, was lost) and whether that tick's PINGREQ was answered by then.
fn fleet_client_expectation(
    k: Duration,
    t0: Instant,
    pings: &[(Instant, Option<Instant>)],
) -> Expectation {
    let spec = "MQTT 3.1.1 §3.1.2.10 + rumqttc keep-alive algorithm";
    let k_ms = ms_of(k);
    let Some((sent, answer)) = pings.iter().rev().find(|(s, _)| *s < t0) else {
        return Expectation::not_applicable("no tick before the fault", spec);
    };
    let since = rel_ms(*sent, t0).max(0) as u64;
    let (periods, why) = match answer {
        Some(a) if *a < t0 => (2, "the last tick before the fault was answered: the next PINGREQ goes unanswered, the tick after fails"),
        _ => (1, "the last PINGREQ before the fault was still unanswered: the next tick fails"),
    };
    let d = (periods * k_ms).saturating_sub(since);
    Expectation::window(
        d,
        d,
        format!("{why}: {periods}K − (t0 − last tick) = {periods}×{k_ms} − {since} = {d} ms"),
        spec,
        Level::Must,
    )
}

pub(crate) fn run_fleet(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let k = super::knobs::MqttConfig::of(&ctx.config).keep_alive;
    if k.is_zero() {
        return Err(Error::Other(format!(
            "{}: the fleet measures Keep Alive: needs mqtt.keep_alive ≥ 1s; got 0s",
            case.id
        )));
    }
    let n = crate::drive::fleet::size(ctx)?;
    let program = broker_program(ctx)?;
    let broker_impl = broker_implementation(&program);
    let tb = ctx.testbed()?;
    let (broker, addr) = start_broker(ctx, &tb, program)?;
    // The broker: 3× its window plus what the documented deviation allows.
    let server_ms = 3 * ms_of(k) * 3 / 2
        + crate::deviations::late_allowance_ms(
            &ctx.deviations,
            case.id,
            "server",
            &broker_impl.name,
        );
    let deadlines = Deadlines {
        client_ms: 3 * ms_of(k),
        server_ms,
    };
    let tag = tb.tag.clone();
    let run = crate::drive::fleet::run(
        &tb,
        &broker,
        addr,
        n,
        &deadlines,
        move |i, connected, stop| conn(addr, format!("kf-{tag}-{i}"), k, connected, stop),
    )?;
    let t0 = run.t0;
    let sides = |c: &ConnView<'_>| {
        let client_exp = fleet_client_expectation(k, t0, &c.end.pings);
        // What the broker last received from this client: its last data segment.
        let last_heard = c
            .server_age
            .map(|a| a.last_data)
            .or_else(|| c.end.pings.iter().rev().map(|(s, _)| *s).find(|s| *s < t0))
            .unwrap_or(t0);
        let server_exp = server_expectation(k, fault, rel_ms(t0, last_heard));
        let mut timeline: Vec<(Instant, String)> = c
            .end
            .pings
            .iter()
            .filter(|(s, _)| *s < t0)
            .map(|(s, _)| (*s, "PINGREQ sent (or CONNACK)".to_string()))
            .collect();
        timeline.push((
            last_heard,
            "last data segment received by the broker".into(),
        ));
        let server_error = c
            .server_closed
            .map(|_| "broker socket no longer open".to_string());
        ConnSides {
            // The detection is a tick: the driver adds how late the one
            // client thread ran it (measured per connection).
            client: Side::library(
                client_exp,
                c.end.failed_at,
                c.end.error.clone(),
                deadlines.client_ms,
            ),
            server: Side::observed(
                server_exp,
                c.server_closed,
                server_error,
                deadlines.server_ms,
            ),
            timeline,
        }
    };
    let mut config = ctx.config.effective("mqtt.");
    config.extend(ctx.config.effective("fleet."));
    crate::drive::fleet::results(
        ctx,
        case,
        &tb,
        run,
        config,
        fleet_client_implementation(),
        broker_impl,
        sides,
    )
}

/// The fleet's client: rumqttc's keep-alive algorithm in a few lines per
/// connection (kaspec's own).
pub fn fleet_client_implementation() -> Implementation {
    Implementation::new("kaspec-mqtt-fleet", env!("CARGO_PKG_VERSION"))
}
