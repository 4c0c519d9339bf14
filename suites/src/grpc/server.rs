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
        // grpcio logs each PING it sends (writing.cc "SERVER: Ping sent")
        // and what it was for (its keepalive or its BDP estimator), stamped
        // with the wall clock in the zone TZ names.
        let env = match self {
            GrpcServer::PythonGrpcio => [
                ("GRPC_TRACE", "http_keepalive,bdp_estimator"),
                ("GRPC_VERBOSITY", "DEBUG"),
                ("TZ", "UTC"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .to_vec(),
            GrpcServer::Kaspec => Vec::new(),
        };
        Ok(ServerSpec {
            name: name.into(),
            program,
            args,
            addr,
            ready_within: Duration::from_secs(10),
            container,
            env,
            ..Default::default()
        })
    }
}

/// What a PING grpcio sent was for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PingFor {
    Keepalive,
    Bdp,
}

/// The first PING grpcio's log (GRPC_TRACE=http_keepalive,bdp_estimator,
/// TZ=UTC) shows sent to `peer` at or after `t0`: its offset from t0 in
/// ms (the log's UTC time of day against the wall clock at t0) and what it
/// was for (the line after it: "Start keepalive ping", or the BDP
/// estimator's "start").
pub fn grpcio_first_ping(log: &str, peer: SocketAddrV4, t0: Instant) -> Option<(f64, PingFor)> {
    let tod0 = linux::clock_secs(libc::CLOCK_REALTIME, t0).rem_euclid(86_400.0);
    // "I1201 04:27:47.736009328   14048 writing.cc:178] ..." (after the
    // harness's "  | " when read through `log_tail`): the first h:m:s word.
    let hms = |w: &str| -> Option<f64> {
        let mut p = w.split(':');
        let (h, m, s): (f64, f64, f64) = (
            p.next()?.parse().ok()?,
            p.next()?.parse().ok()?,
            p.next()?.parse().ok()?,
        );
        p.next().is_none().then_some(h * 3600.0 + m * 60.0 + s)
    };
    let at = |line: &str| -> Option<f64> {
        let tod = line.split_whitespace().take(3).find_map(hms)?;
        // Within half a day of t0 (a run around midnight wraps).
        let d = (tod - tod0 + 43_200.0).rem_euclid(86_400.0) - 43_200.0;
        Some(d * 1000.0)
    };
    let sent = format!("SERVER: Ping sent [ipv4:{peer}]");
    let lines: Vec<&str> = log.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.contains(&sent) && at(l).is_some_and(|ms| ms >= 0.0))?;
    let ms = at(lines[i])?;
    let kind = lines[i + 1..].iter().find_map(|l| {
        if l.contains(&format!("ipv4:{peer}: Start keepalive ping")) {
            Some(PingFor::Keepalive)
        } else if l.contains(&format!("bdp[ipv4:{peer}]:start")) {
            Some(PingFor::Bdp)
        } else {
            None
        }
    })?;
    Some((ms, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpcio_first_ping_after_t0_and_what_for() {
        let t0 = Instant::now();
        let tod0 = linux::clock_secs(libc::CLOCK_REALTIME, t0).rem_euclid(86_400.0);
        let stamp = |ms: f64| {
            let t = tod0 + ms / 1000.0;
            let (h, m, s) = (
                (t / 3600.0).floor(),
                ((t % 3600.0) / 60.0).floor(),
                t % 60.0,
            );
            format!("  | I1201 {h:02}:{m:02}:{s:012.9}   14048")
        };
        let peer: SocketAddrV4 = "198.18.0.2:53504".parse().unwrap();
        let log = [
            format!(
                "{} writing.cc:178] SERVER: Ping sent [ipv4:{peer}]: 0/0",
                stamp(-300.0)
            ),
            format!(
                "{} bdp_estimator.h:65] bdp[ipv4:{peer}]:start acc=0",
                stamp(-299.9)
            ),
            format!(
                "{} writing.cc:178] SERVER: Ping sent [ipv4:198.18.0.9:1]: 0/0",
                stamp(10.0)
            ),
            format!(
                "{} writing.cc:178] SERVER: Ping sent [ipv4:{peer}]: 0/0",
                stamp(55.5)
            ),
            format!(
                "{} chttp2_transport.cc:2647] ipv4:{peer}: Start keepalive ping",
                stamp(55.6)
            ),
        ]
        .join("\n");
        let (ms, kind) = grpcio_first_ping(&log, peer, t0).unwrap();
        assert!((ms - 55.5).abs() < 0.01, "{ms}");
        assert_eq!(kind, PingFor::Keepalive);
        assert!(grpcio_first_ping(&log.replace("Start keepalive ping", "x"), peer, t0).is_none());
    }
}
