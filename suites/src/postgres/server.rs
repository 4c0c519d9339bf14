//! The PostgreSQL server under test: kaspec's throw-away cluster (never the
//! machine's), its settings from fixtures/postgres/kaspec.conf, shared by the
//! run's cases (or docker-compose.yml's postgres service).

use super::*;

/// The server's settings of `fixtures/postgres/kaspec.conf`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerSettings {
    /// tcp_keepalives_* (0 = the kernel default: 7200 s, 75 s, 9) and tcp_user_timeout.
    pub tcp: TcpConfig,
    /// Zero means off.
    pub idle_session_timeout: Duration,
    /// Zero means off.
    pub check_interval: Duration,
}

pub fn server_config(fixtures: &Path) -> PathBuf {
    fixtures.join("postgres/kaspec.conf")
}

impl ServerSettings {
    pub fn load(fixtures: &Path) -> Result<ServerSettings> {
        let path = server_config(fixtures);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        ServerSettings::parse(&text).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
    }

    /// Reads the six settings kaspec uses (`name = value`, PostgreSQL's
    /// default units, optionally quoted with a unit: '2s', '1500ms', '1min').
    pub fn parse(text: &str) -> std::result::Result<ServerSettings, String> {
        let mut s = ServerSettings {
            tcp: TcpConfig {
                keepalive: true,
                idle: Duration::ZERO,
                interval: Duration::ZERO,
                count: 0,
                user_timeout: Duration::ZERO,
            },
            idle_session_timeout: Duration::ZERO,
            check_interval: Duration::ZERO,
        };
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim().trim_matches('\''));
            let secs = matches!(k, "tcp_keepalives_idle" | "tcp_keepalives_interval");
            let val = |default_unit_ms: u64| -> std::result::Result<Duration, String> {
                let n = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
                let unit = &v[n.len()..];
                let n: u64 = n
                    .trim()
                    .parse()
                    .map_err(|_| format!("{k} = {v}: expected a whole number"))?;
                let per = match unit {
                    "" => default_unit_ms,
                    "ms" => 1,
                    "s" => 1000,
                    "min" => 60_000,
                    other => return Err(format!("{k} = {v}: unit `{other}` (use ms, s or min)")),
                };
                Ok(Duration::from_millis(n * per))
            };
            match k {
                "tcp_keepalives_idle"
                | "tcp_keepalives_interval"
                | "tcp_user_timeout"
                | "idle_session_timeout"
                | "client_connection_check_interval" => {
                    let d = val(if secs { 1000 } else { 1 })?;
                    match k {
                        "tcp_keepalives_idle" => s.tcp.idle = d,
                        "tcp_keepalives_interval" => s.tcp.interval = d,
                        "tcp_user_timeout" => s.tcp.user_timeout = d,
                        "idle_session_timeout" => s.idle_session_timeout = d,
                        _ => s.check_interval = d,
                    }
                }
                "tcp_keepalives_count" => {
                    s.tcp.count = v
                        .parse()
                        .map_err(|_| format!("{k} = {v}: expected a whole number"))?
                }
                _ => {}
            }
        }
        // 0 = the kernel's default (a new network namespace's).
        if s.tcp.idle.is_zero() {
            s.tcp.idle = Duration::from_secs(7200);
        }
        if s.tcp.interval.is_zero() {
            s.tcp.interval = Duration::from_secs(75);
        }
        if s.tcp.count == 0 {
            s.tcp.count = 9;
        }
        Ok(s)
    }

    pub(crate) fn report(&self) -> Vec<(String, String)> {
        let t = &self.tcp;
        vec![
            (
                "server.tcp_keepalives_idle".into(),
                format!("{}s", t.idle.as_secs()),
            ),
            (
                "server.tcp_keepalives_interval".into(),
                format!("{}s", t.interval.as_secs()),
            ),
            ("server.tcp_keepalives_count".into(), t.count.to_string()),
            (
                "server.tcp_user_timeout".into(),
                format!("{}ms", ms_of(t.user_timeout)),
            ),
            (
                "server.idle_session_timeout".into(),
                format!("{}ms", ms_of(self.idle_session_timeout)),
            ),
            (
                "server.client_connection_check_interval".into(),
                format!("{}ms", ms_of(self.check_interval)),
            ),
        ]
    }
}

/// The server's program: the newest installed here, or the container's on
/// the docker testbed (its version the image's).
pub(crate) fn server_program(ctx: &Ctx) -> Result<PathBuf> {
    match ctx.docker {
        None => postgres_binary(),
        Some(_) => Ok("postgres".into()),
    }
}

/// The newest `/usr/lib/postgresql/*/bin/postgres`.
pub fn postgres_binary() -> Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_string_lossy().parse().ok()?;
            let p = e.path().join("bin/postgres");
            p.is_file().then_some((v, p))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p).ok_or_else(|| {
        Error::Capability("PostgreSQL server not found (no /usr/lib/postgresql/*/bin/postgres): apt-get install postgresql, or run fixtures/bootstrap.sh".into())
    })
}

/// `postgres --version`: `postgres (PostgreSQL) 15.18 (Debian ...)`.
pub fn server_implementation(program: &Path) -> Implementation {
    let version = std::process::Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into());
    Implementation::new("postgresql", version)
}

/// The shared server's connection slots: a few dozen leases at once.
pub(crate) const SHARED_CONNECTIONS: u32 = 40;

/// Starts a server: initdb as `postgres` into a throw-away directory, the
/// fixture's settings included, then the postmaster in the server host with
/// `max_connections` slots; ready once it logs that it accepts connections.
pub(crate) fn start_server(tb: &Testbed, fixtures: &Path, max_connections: u32) -> Result<Started> {
    if tb.is_docker() {
        // docker-compose.yml's postgres: fixtures/postgres/kaspec.conf as its whole configuration.
        let server = Server::start(
            tb,
            &ServerSpec {
                name: "postgres".into(),
                addr: SocketAddrV4::new(tb.server.addr, tb.server_port(PORT)),
                ready_within: Duration::from_secs(30),
                container: Some(ContainerCheck {
                    service: "postgres".into(),
                    args: vec!["config_file=/etc/kaspec/postgres.conf".into()],
                    files: vec![("/etc/kaspec/postgres.conf".into(), server_config(fixtures))],
                    ..Default::default()
                }),
                ..Default::default()
            },
        )?;
        return Ok(Started {
            processes: vec![server],
            dirs: Vec::new(),
        });
    }
    let program = postgres_binary()?;
    let bin = program.parent().expect("a bin directory").to_path_buf();
    let user = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .ok_or_else(|| Error::Capability("no `postgres` user (the postgresql package creates it): apt-get install postgresql".into()))?;
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    let conf = server_config(fixtures);
    let conf_text = std::fs::read_to_string(&conf)
        .map_err(|e| Error::io(format!("reading {}", conf.display()), e))?;
    ServerSettings::parse(&conf_text)
        .map_err(|e| Error::Other(format!("{}: {e}", conf.display())))?;

    let io = |what: String| move |e| Error::io(what, e);
    let dir = kaspec_harness::cleanup::scratch_dir(&tb.tag, "postgres").map_err(io(format!(
        "creating a throw-away directory for run {}",
        tb.tag
    )))?;
    // From here on the directory goes with the group (or now, on error).
    let cleanup = crate::shared::DirGuard::new(dir.clone());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("chmod {}", dir.display())))?;
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
        .map_err(io(format!("chown {}", dir.display())))?;
    let data = dir.join("data");
    let out = tb
        .server
        .command_as(bin.join("initdb"), &tb.tag, Some((uid, gid)))?
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-N",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .env("LC_ALL", "C")
        .output()
        .map_err(io(format!("running {}", bin.join("initdb").display())))?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "initdb {} failed ({}): {}",
            data.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let write = |name: &str, text: &str| -> Result<()> {
        let p = data.join(name);
        std::fs::write(&p, text).map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
        std::os::unix::fs::chown(&p, Some(uid), Some(gid))
            .map_err(|e| Error::io(format!("chown {}", p.display()), e))
    };
    write(
        "pg_hba.conf",
        "local all all trust\nhost all all 0.0.0.0/0 trust\n",
    )?;
    write("kaspec.conf", &conf_text)?;
    let main_conf = data.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&main_conf)
        .map_err(io(format!("reading {}", main_conf.display())))?;
    text.push_str(&format!(
        "\n# kaspec: the settings under test ({})\ninclude 'kaspec.conf'\n",
        conf.display()
    ));
    write("postgresql.conf", &text)?;

    let addr = SocketAddrV4::new(tb.server.addr, PORT);
    let c = |kv: &str| ["-c".to_string(), kv.to_string()];
    let mut args = vec!["-D".to_string(), data.display().to_string()];
    for kv in [
        format!("listen_addresses={}", tb.server.addr),
        format!("port={PORT}"),
        format!("unix_socket_directories={}", dir.display()),
        "log_destination=stderr".into(),
        "logging_collector=off".into(),
        "log_line_prefix=%m [%p] ".into(),
        "log_connections=on".into(),
        "log_disconnections=on".into(),
        "fsync=off".into(),
        "synchronous_commit=off".into(),
        "full_page_writes=off".into(),
        format!("max_connections={max_connections}"),
    ] {
        args.extend(c(&kv));
    }
    // A restart (after a crash) keeps the earlier log: postgres, postgres-2, ...
    let logs = tb.run_dir.join("logs");
    let name = (1..)
        .map(|n: u32| {
            if n == 1 {
                "postgres".to_string()
            } else {
                format!("postgres-{n}")
            }
        })
        .find(|n| !logs.join(format!("{n}-{}.log", tb.tag)).exists())
        .expect("a free name");
    let server = Server::start(
        tb,
        &ServerSpec {
            name,
            program,
            args,
            addr,
            ready_within: Duration::from_secs(30),
            env: vec![("LC_ALL".into(), "C".into())],
            user: Some((uid, gid)),
            ready_log: Some("database system is ready to accept connections".into()),
            stop_signal: nix::sys::signal::Signal::SIGINT,
            container: None,
        },
    )?;
    Ok(Started {
        processes: vec![server],
        dirs: cleanup.keep(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_parses_with_postgres_units() {
        let s = ServerSettings::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures"))
            .unwrap();
        assert_eq!(
            (s.tcp.idle, s.tcp.interval, s.tcp.count),
            (Duration::from_secs(2), Duration::from_secs(1), 3)
        );
        assert_eq!(s.idle_session_timeout, Duration::from_millis(1500));
        assert_eq!(s.check_interval, Duration::from_millis(500));
        let t = ServerSettings::parse("tcp_keepalives_idle = 0\nidle_session_timeout = '2s'  # x\nclient_connection_check_interval='1min'\n").unwrap();
        assert_eq!(
            (t.tcp.idle, t.tcp.count),
            (Duration::from_secs(7200), 9),
            "0 is the kernel default"
        );
        assert_eq!(
            (t.idle_session_timeout, t.check_interval),
            (Duration::from_secs(2), Duration::from_secs(60))
        );
        assert!(ServerSettings::parse("tcp_user_timeout = 5h")
            .unwrap_err()
            .contains("unit"));
    }

    fn tcp(i: u64, v: u64, n: u32, ka: bool) -> TcpConfig {
        TcpConfig {
            keepalive: ka,
            idle: Duration::from_secs(i),
            interval: Duration::from_secs(v),
            count: n,
            user_timeout: Duration::ZERO,
        }
    }

    #[test]
    fn a_one_way_blackhole_lets_the_earlier_peers_rst_through() {
        let own = tcp(4, 1, 3, true);
        let peer = tcp(2, 1, 3, true);
        let alone = keepalive_window(&own, 300, None, FaultKind::Blackhole, "c", "s");
        assert_eq!(alone.min_ms, Some(7000 - 300));
        let via_peer = keepalive_window(
            &own,
            300,
            Some((&peer, 300)),
            FaultKind::BlackholeUp,
            "c",
            "s",
        );
        assert_eq!(via_peer.min_ms, Some(5000 - 300));
        let off = keepalive_window(
            &tcp(2, 1, 3, false),
            300,
            None,
            FaultKind::Blackhole,
            "c",
            "s",
        );
        assert!(!off.expects_detection());
        let reset = keepalive_window(&own, 300, None, FaultKind::Reset, "c", "s");
        assert_eq!(reset.min_ms, Some(3700));
    }
}
