//! The gRPC servers under test: kaspec's tonic server (`kaspec serve grpc`)
//! and Python's grpcio (fixtures/grpc/grpc_server.py), with their keep-alive
//! from fixtures/grpc/servers.toml.

use super::*;

/// A server's HTTP/2 keep-alive (fixtures/grpc/servers.toml).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerKeepalive {
    pub time: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GrpcServer {
    Kaspec,
    PythonGrpcio,
}

pub const SERVERS: [GrpcServer; 2] = [GrpcServer::Kaspec, GrpcServer::PythonGrpcio];

/// The servers a run measures: all here, ours only on the docker testbed
/// (docker-compose.yml's kaspec-grpc and kaspec-grpc-defaults).
pub(crate) fn measured(ctx: &Ctx) -> impl Iterator<Item = GrpcServer> {
    let docker = ctx.docker.is_some();
    SERVERS
        .into_iter()
        .filter(move |s| !docker || *s == GrpcServer::Kaspec)
}

/// How a server is started: with the fixture's keep-alive (detection cases)
/// or with its defaults (the ping-policy case).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    Keepalive(ServerKeepalive),
    Defaults,
}

impl GrpcServer {
    pub fn keepalive(self, fixtures: &Path) -> Result<ServerKeepalive> {
        let section = match self {
            GrpcServer::Kaspec => "kaspec",
            GrpcServer::PythonGrpcio => "python-grpcio",
        };
        let d = servers::durations(
            &fixtures.join("grpc/servers.toml"),
            section,
            &["keepalive_time", "keepalive_timeout"],
        )?;
        Ok(ServerKeepalive {
            time: d[0],
            timeout: d[1],
        })
    }

    pub fn implementation(self) -> Implementation {
        match self {
            GrpcServer::Kaspec => Implementation::new(
                "kaspec-grpc (tonic)",
                format!(
                    "kaspec {} / tonic {}",
                    env!("CARGO_PKG_VERSION"),
                    env!("KASPEC_VERSION_TONIC")
                ),
            ),
            GrpcServer::PythonGrpcio => {
                Implementation::new("python-grpcio", servers::python_version("grpc"))
            }
        }
    }

    pub(crate) fn spec(self, ctx: &Ctx, addr: SocketAddrV4, mode: Mode) -> Result<ServerSpec> {
        let (name, program, args) = match (self, mode) {
            (GrpcServer::Kaspec, _) => {
                let mut args = ctx.serve.args.clone();
                args.extend(["grpc".into(), "--listen".into(), addr.to_string()]);
                if let Mode::Keepalive(k) = mode {
                    args.extend([
                        "--keepalive-time".into(),
                        format!("{}ms", ms_of(k.time)),
                        "--keepalive-timeout".into(),
                        format!("{}ms", ms_of(k.timeout)),
                    ]);
                }
                ("kaspec-grpc", ctx.serve.program.clone(), args)
            }
            (GrpcServer::PythonGrpcio, _) => {
                let python = require_program(servers::PYTHON, "python3")?;
                servers::python_module("grpc", "python3-grpcio")?;
                let (t, to, policy) = match mode {
                    Mode::Keepalive(k) => (ms_of(k.time), ms_of(k.timeout), "permissive"),
                    Mode::Defaults => (0, 0, "default"),
                };
                let script = ctx.fixtures.join("grpc/grpc_server.py");
                let args = vec![
                    script.display().to_string(),
                    addr.ip().to_string(),
                    addr.port().to_string(),
                    t.to_string(),
                    to.to_string(),
                    policy.to_string(),
                ];
                ("python-grpcio", python, args)
            }
        };
        // docker-compose.yml's kaspec-grpc runs the [kaspec] keepalive of
        // fixtures/grpc/servers.toml, kaspec-grpc-defaults none.
        let container = match (self, mode) {
            (GrpcServer::Kaspec, Mode::Keepalive(k)) => Some(ContainerCheck {
                service: "kaspec-grpc".into(),
                args: vec![
                    "--keepalive-time".into(),
                    format!("{}ms", ms_of(k.time)),
                    "--keepalive-timeout".into(),
                    format!("{}ms", ms_of(k.timeout)),
                ],
                ..Default::default()
            }),
            (GrpcServer::Kaspec, Mode::Defaults) => Some(ContainerCheck {
                service: "kaspec-grpc-defaults".into(),
                args: vec!["serve".into(), "grpc".into()],
                without: vec!["--keepalive-time".into(), "--keepalive-timeout".into()],
                ..Default::default()
            }),
            _ => None,
        };
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
