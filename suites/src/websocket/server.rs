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
