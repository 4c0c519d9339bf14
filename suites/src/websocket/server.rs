//! The WebSocket servers under test: kaspec's (`kaspec serve websocket`) and
//! Python's `websockets` (fixtures/websocket/ws_server.py), with their
//! heartbeat settings from fixtures/websocket/servers.toml.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heartbeat {
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
}

/// Our server sending no Pings (in practice: one an hour), as
/// docker-compose.yml's kaspec-ws-quiet runs it.
pub const QUIET: Heartbeat = Heartbeat {
    ping_interval: Duration::from_secs(3600),
    pong_timeout: Duration::from_secs(3600),
};

/// The servers under test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WsServer {
    /// Our tokio-tungstenite server: closes after P + T without a frame.
    Kaspec,
    /// Python `websockets`: sleeps P, pings, waits T for the Pong.
    PythonWebsockets,
}

pub const SERVERS: [WsServer; 2] = [WsServer::Kaspec, WsServer::PythonWebsockets];

/// The servers a run measures: all here, ours only on the docker testbed
/// (docker-compose.yml's kaspec-ws and kaspec-ws-quiet).
pub(crate) fn measured(ctx: &Ctx) -> impl Iterator<Item = WsServer> {
    let docker = ctx.docker.is_some();
    SERVERS
        .into_iter()
        .filter(move |s| !docker || *s == WsServer::Kaspec)
}

impl WsServer {
    pub fn heartbeat(self, fixtures: &Path) -> Result<Heartbeat> {
        let section = match self {
            WsServer::Kaspec => "kaspec",
            WsServer::PythonWebsockets => "python-websockets",
        };
        let d = servers::durations(
            &servers_file(fixtures),
            section,
            &["ping_interval", "pong_timeout"],
        )?;
        Ok(Heartbeat {
            ping_interval: d[0],
            pong_timeout: d[1],
        })
    }

    pub fn implementation(self) -> Implementation {
        match self {
            WsServer::Kaspec => Implementation::new(
                "kaspec-ws (tokio-tungstenite)",
                format!(
                    "kaspec {} / tokio-tungstenite {}",
                    env!("CARGO_PKG_VERSION"),
                    env!("KASPEC_VERSION_TOKIO_TUNGSTENITE")
                ),
            ),
            WsServer::PythonWebsockets => {
                Implementation::new("python-websockets", servers::python_version("websockets"))
            }
        }
    }

    pub(crate) fn spec(self, ctx: &Ctx, addr: SocketAddrV4, hb: Heartbeat) -> Result<ServerSpec> {
        let (name, program, args) = match self {
            WsServer::Kaspec => {
                let mut args = ctx.serve.args.clone();
                args.extend([
                    "websocket".into(),
                    "--listen".into(),
                    addr.to_string(),
                    "--ping-interval".into(),
                    format!("{}ms", ms_of(hb.ping_interval)),
                    "--pong-timeout".into(),
                    format!("{}ms", ms_of(hb.pong_timeout)),
                ]);
                ("kaspec-ws", ctx.serve.program.clone(), args)
            }
            WsServer::PythonWebsockets => {
                let python = require_program(servers::PYTHON, "python3")?;
                servers::python_module("websockets", "python3-websockets")?;
                let script = ctx.fixtures.join("websocket/ws_server.py");
                (
                    "python-websockets",
                    python,
                    vec![
                        script.display().to_string(),
                        addr.ip().to_string(),
                        addr.port().to_string(),
                        format!("{}", hb.ping_interval.as_secs_f64()),
                        format!("{}", hb.pong_timeout.as_secs_f64()),
                    ],
                )
            }
        };
        // docker-compose.yml's kaspec-ws runs the [kaspec] heartbeat of
        // fixtures/websocket/servers.toml, kaspec-ws-quiet the QUIET one.
        let container = (self == WsServer::Kaspec).then(|| ContainerCheck {
            service: if hb == QUIET {
                "kaspec-ws-quiet"
            } else {
                "kaspec-ws"
            }
            .into(),
            args: vec![
                "--ping-interval".into(),
                format!("{}ms", ms_of(hb.ping_interval)),
                "--pong-timeout".into(),
                format!("{}ms", ms_of(hb.pong_timeout)),
            ],
            ..Default::default()
        });
        Ok(ServerSpec {
            name: name.into(),
            program,
            args,
            addr,
            ready_within: Duration::from_secs(10),
            container,
            ..Default::default()
        })
    }
}

/// Fixture path helper for callers that check prerequisites up front.
pub fn servers_file(fixtures: &Path) -> PathBuf {
    fixtures.join("websocket/servers.toml")
}

/// How late kaspec-ws's heartbeat timer fired for the connection from
/// `peer`, beyond tokio's tick (which the window already holds), as its log
/// says (peers/websocket.rs), in whole ms rounded up; None when it did not
/// time that connection out or its log is not a file (docker).
pub(crate) fn timer_lateness_ms(log: &Path, peer: SocketAddrV4) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    lateness_in(&text, peer)
}

fn lateness_in(log: &str, peer: SocketAddrV4) -> Option<u64> {
    let prefix = format!("closed {peer}: heartbeat:");
    let line = log.lines().rev().find(|l| l.starts_with(&prefix))?;
    let us: u64 = line
        .split("timer fired ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    Some(
        us.div_ceil(1000)
            .saturating_sub(super::expect::TOKIO_TICK_MS),
    )
}

#[cfg(test)]
mod lateness_tests {
    use super::*;

    #[test]
    fn the_server_timer_lateness_is_read_from_its_log() {
        let peer: SocketAddrV4 = "10.1.0.2:40000".parse().unwrap();
        let log = "kaspec-ws listening on 10.1.0.1:8080 (P = 500 ms, T = 700 ms)\n\
                   closed 10.1.0.2:39999: heartbeat: nothing received for P + T = 1200 ms; timer fired 30000 us after its deadline\n\
                   closed 10.1.0.2:40000: heartbeat: nothing received for P + T = 1200 ms; timer fired 9400 us after its deadline\n";
        assert_eq!(
            lateness_in(log, peer),
            Some(9),
            "10 ms rounded up, less the 1 ms tick"
        );
        let on_time = "closed 10.1.0.2:40000: heartbeat: nothing received for P + T = 1200 ms; timer fired 800 us after its deadline\n";
        assert_eq!(lateness_in(on_time, peer), Some(0));
        assert_eq!(
            lateness_in("closed 10.1.0.2:40000: end of stream\n", peer),
            None
        );
    }
}
