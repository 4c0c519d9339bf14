//! redis-server under test: Debian's package, started per case in the server
//! host with fixtures/redis/kaspec.conf, a throw-away directory of the run
//! and the case's own settings on its command line; never the machine's
//! instance. Also: the keep-alive options Redis really set on a client's
//! socket, read back from the server process (pidfd_getfd + getsockopt).

use super::*;

/// The settings of `fixtures/redis/kaspec.conf` kaspec's windows use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerSettings {
    /// `timeout` (whole seconds; zero = never).
    pub timeout: Duration,
    /// `tcp-keepalive` (whole seconds; zero = off).
    pub tcp_keepalive: Duration,
    /// `hz`: serverCron (and clientsCron) runs every 1000/hz ms.
    pub hz: u64,
}

pub fn server_config(fixtures: &Path) -> PathBuf {
    fixtures.join("redis/kaspec.conf")
}

impl ServerSettings {
    pub fn load(fixtures: &Path) -> Result<ServerSettings> {
        let path = server_config(fixtures);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        ServerSettings::parse(&text).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
    }

    /// Reads `name value` lines (redis.conf syntax; Redis's defaults for a
    /// setting not given: timeout 0, tcp-keepalive 300, hz 10).
    pub fn parse(text: &str) -> std::result::Result<ServerSettings, String> {
        let mut s = ServerSettings {
            timeout: Duration::ZERO,
            tcp_keepalive: Duration::from_secs(300),
            hz: 10,
        };
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once(char::is_whitespace) else {
                continue;
            };
            let v = v.trim();
            let n = || {
                v.parse::<u64>()
                    .map_err(|_| format!("{k} {v}: expected a whole number"))
            };
            match k.to_ascii_lowercase().as_str() {
                "timeout" => s.timeout = Duration::from_secs(n()?),
                "tcp-keepalive" => s.tcp_keepalive = Duration::from_secs(n()?),
                "hz" => s.hz = n()?.clamp(1, 500),
                _ => {}
            }
        }
        Ok(s)
    }

    /// With a case's command-line overrides (`timeout`, `tcp-keepalive`).
    pub fn with(mut self, overrides: &[(&str, u64)]) -> ServerSettings {
        for (k, v) in overrides {
            match *k {
                "timeout" => self.timeout = Duration::from_secs(*v),
                "tcp-keepalive" => self.tcp_keepalive = Duration::from_secs(*v),
                _ => {}
            }
        }
        self
    }

    /// What anetKeepAlive (anet.c, Redis 7.0) sets for `tcp-keepalive` K:
    /// SO_KEEPALIVE, TCP_KEEPIDLE K, TCP_KEEPINTVL max(K/3, 1), TCP_KEEPCNT 3.
    pub fn keepalive(&self) -> TcpConfig {
        let k = self.tcp_keepalive.as_secs();
        TcpConfig {
            keepalive: k > 0,
            idle: Duration::from_secs(k.max(1)),
            interval: Duration::from_secs((k / 3).max(1)),
            count: 3,
            user_timeout: Duration::ZERO,
        }
    }

    pub(crate) fn report(&self) -> Vec<(String, String)> {
        vec![
            (
                "server.timeout".into(),
                format!("{}s", self.timeout.as_secs()),
            ),
            (
                "server.tcp-keepalive".into(),
                format!("{}s", self.tcp_keepalive.as_secs()),
            ),
            ("server.hz".into(), self.hz.to_string()),
        ]
    }
}

/// `redis-server --version`: `Redis server v=7.0.15 sha=...`.
pub fn server_implementation(program: &Path) -> Implementation {
    Implementation::new(
        "redis-server",
        kaspec_harness::server::version_of(program, "v="),
    )
}

/// A running redis-server and its throw-away directory (removed after it).
pub(crate) struct RedisServer {
    pub(crate) server: Option<Server>,
    dir: PathBuf,
    pub(crate) addr: SocketAddrV4,
    pub(crate) settings: ServerSettings,
    pub(crate) implementation: Implementation,
}

impl RedisServer {
    pub(crate) fn pid(&self) -> u32 {
        self.server.as_ref().map(|s| s.pid()).unwrap_or(0)
    }

    pub(crate) fn log_tail(&self) -> String {
        self.server
            .as_ref()
            .map(|s| s.log_tail(10))
            .unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        drop(self.server.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The compose service that runs the fixture with `overrides` on its
/// command line (docker-compose.yml), if one does.
pub(crate) fn service(overrides: &[(&str, u64)]) -> Option<&'static str> {
    match overrides {
        [] => Some("redis"),
        [("timeout", 0)] | [("timeout", 0), ("tcp-keepalive", 1)] => Some("redis-no-timeout"),
        [("timeout", 0), ("tcp-keepalive", 0)] => Some("redis-quiet"),
        _ => None,
    }
}

/// Starts redis-server in `tb`'s server host: the fixture, then `--bind`,
/// `--dir`, `--logfile ""` and the case's `overrides` (on the docker
/// testbed: adopts the container of [`service`], checked to run the
/// fixture and the overrides).
pub(crate) fn start_server(
    ctx: &Ctx,
    tb: &Testbed,
    overrides: &[(&str, u64)],
) -> Result<RedisServer> {
    let program = match ctx.docker {
        None => require_program("redis-server", "redis-server")?,
        Some(_) => "redis-server".into(),
    };
    let conf = server_config(&ctx.fixtures);
    let settings = ServerSettings::load(&ctx.fixtures)?.with(overrides);
    let dir = kaspec_harness::cleanup::scratch_dir(&tb.tag, "redis").map_err(|e| {
        Error::io(
            format!("creating a throw-away directory for run {}", tb.tag),
            e,
        )
    })?;
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let mut args = vec![conf.display().to_string()];
    for (k, v) in [
        ("bind", tb.server.addr.to_string()),
        ("port", PORT.to_string()),
        ("dir", dir.display().to_string()),
        ("logfile", String::new()),
    ] {
        args.extend([format!("--{k}"), v]);
    }
    // The overrides as the container must run them: the NAT case's
    // tcp-keepalive equal to the fixture's is the fixture's own.
    let fixture_keepalive = ServerSettings::load(&ctx.fixtures)?.tcp_keepalive.as_secs();
    let mut container_args = vec!["/usr/local/etc/redis/redis.conf".to_string()];
    for (k, v) in overrides {
        args.extend([format!("--{k}"), v.to_string()]);
        if !(*k == "tcp-keepalive" && *v == fixture_keepalive) {
            container_args.extend([format!("--{k}"), v.to_string()]);
        }
    }
    let implementation = match ctx.docker {
        None => server_implementation(&program),
        // The image's version, named by the runner.
        Some(_) => Implementation::new("redis-server", "container"),
    };
    let mut r = RedisServer {
        server: None,
        dir,
        addr,
        settings,
        implementation,
    };
    r.server = Some(Server::start(
        tb,
        &ServerSpec {
            name: "redis-server".into(),
            program,
            args,
            addr,
            ready_within: Duration::from_secs(10),
            ready_log: Some("Ready to accept connections".into()),
            container: service(overrides).map(|s| ContainerCheck {
                service: s.into(),
                args: container_args,
                files: vec![("/usr/local/etc/redis/redis.conf".into(), conf.clone())],
                ..Default::default()
            }),
            ..Default::default()
        },
    )?);
    Ok(r)
}

/// The keep-alive options on redis-server's (process `pid`) socket
/// `local <-> peer`, and the same as text.
pub(crate) fn server_sockopts(
    pid: u32,
    local: SocketAddrV4,
    peer: SocketAddrV4,
) -> Result<(TcpConfig, String)> {
    crate::drive::sockopts::of_process(pid, local, peer)
}

/// The socket options as compared and reported: with SO_KEEPALIVE off the
/// keep-alive timings are inert (the kernel's defaults, never used), so they
/// are not shown.
pub(crate) fn sockopts_text(t: &TcpConfig) -> String {
    crate::drive::sockopts::text(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_parses_and_keepalive_follows_anet() {
        let s = ServerSettings::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures"))
            .unwrap();
        assert_eq!(
            (s.timeout, s.tcp_keepalive, s.hz),
            (Duration::from_secs(1), Duration::from_secs(1), 10)
        );
        let k = ServerSettings::parse("tcp-keepalive 10\n")
            .unwrap()
            .keepalive();
        assert_eq!(
            (k.keepalive, k.idle, k.interval, k.count),
            (true, Duration::from_secs(10), Duration::from_secs(3), 3)
        );
        let d = ServerSettings::parse("# x\ntimeout 0\n").unwrap();
        assert_eq!(
            (d.timeout, d.tcp_keepalive, d.hz),
            (Duration::ZERO, Duration::from_secs(300), 10),
            "Redis's defaults"
        );
        assert!(!d.with(&[("tcp-keepalive", 0)]).keepalive().keepalive);
        assert!(ServerSettings::parse("timeout 1s")
            .unwrap_err()
            .contains("whole number"));
    }
}
