//! The MariaDB server under test: Debian's mariadb-server package, started
//! once per run (see [`crate::shared`]) in the server host with a
//! throw-away data directory (`mariadb-install-db` into the run's scratch
//! directory, then `mariadbd --no-defaults` with the settings of
//! fixtures/mariadb/kaspec.cnf on its command line); never the machine's
//! instance. Also: the keep-alive options mariadbd set on a client's
//! socket, read back from the server process.

use super::*;

/// The settings of `fixtures/mariadb/kaspec.cnf` kaspec's windows use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerSettings {
    /// `wait_timeout` (whole seconds).
    pub wait_timeout: Duration,
    pub interactive_timeout: Duration,
    pub net_read_timeout: Duration,
    pub net_write_timeout: Duration,
    /// tcp_keepalive_time / _interval / _probes (0 = the kernel's).
    pub keepalive_time: u64,
    pub keepalive_interval: u64,
    pub keepalive_probes: u32,
}

pub fn server_config(fixtures: &Path) -> PathBuf {
    fixtures.join("mariadb/kaspec.cnf")
}

/// The fixture's `name = value` lines (comments and blanks skipped).
fn entries(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().replace('-', "_"), v.trim().to_string()))
        })
        .collect()
}

impl ServerSettings {
    pub fn load(fixtures: &Path) -> Result<ServerSettings> {
        let path = server_config(fixtures);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        ServerSettings::parse(&text).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
    }

    /// MariaDB 10.11's defaults for a setting not given: wait_timeout and
    /// interactive_timeout 28800, net_read_timeout 30, net_write_timeout 60,
    /// tcp_keepalive_* 0.
    pub fn parse(text: &str) -> std::result::Result<ServerSettings, String> {
        let mut s = ServerSettings {
            wait_timeout: Duration::from_secs(28800),
            interactive_timeout: Duration::from_secs(28800),
            net_read_timeout: Duration::from_secs(30),
            net_write_timeout: Duration::from_secs(60),
            keepalive_time: 0,
            keepalive_interval: 0,
            keepalive_probes: 0,
        };
        for (k, v) in entries(text) {
            let n = || {
                v.parse::<u64>()
                    .map_err(|_| format!("{k} = {v}: expected a whole number"))
            };
            match k.as_str() {
                "wait_timeout" => s.wait_timeout = Duration::from_secs(n()?),
                "interactive_timeout" => s.interactive_timeout = Duration::from_secs(n()?),
                "net_read_timeout" => s.net_read_timeout = Duration::from_secs(n()?),
                "net_write_timeout" => s.net_write_timeout = Duration::from_secs(n()?),
                "tcp_keepalive_time" => s.keepalive_time = n()?,
                "tcp_keepalive_interval" => s.keepalive_interval = n()?,
                "tcp_keepalive_probes" => s.keepalive_probes = n()? as u32,
                _ => {}
            }
        }
        Ok(s)
    }

    /// What mariadbd sets on every client socket (sql_connect.cc: SO_KEEPALIVE,
    /// then TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT where the variable is
    /// non-zero); a zero stays the kernel's default (7200 s, 75 s, 9).
    pub fn keepalive(&self) -> TcpConfig {
        let or = |v: u64, d: u64| if v == 0 { d } else { v };
        TcpConfig {
            keepalive: true,
            idle: Duration::from_secs(or(self.keepalive_time, 7200)),
            interval: Duration::from_secs(or(self.keepalive_interval, 75)),
            count: or(self.keepalive_probes as u64, 9) as u32,
            user_timeout: Duration::ZERO,
        }
    }

    pub(crate) fn report(&self) -> Vec<(String, String)> {
        let s = |d: Duration| format!("{}s", d.as_secs());
        vec![
            ("server.wait_timeout".into(), s(self.wait_timeout)),
            (
                "server.interactive_timeout".into(),
                s(self.interactive_timeout),
            ),
            ("server.net_read_timeout".into(), s(self.net_read_timeout)),
            ("server.net_write_timeout".into(), s(self.net_write_timeout)),
            (
                "server.tcp_keepalive_time".into(),
                format!("{}s", self.keepalive_time),
            ),
            (
                "server.tcp_keepalive_interval".into(),
                format!("{}s", self.keepalive_interval),
            ),
            (
                "server.tcp_keepalive_probes".into(),
                self.keepalive_probes.to_string(),
            ),
        ]
    }
}

pub fn mariadbd() -> Result<PathBuf> {
    require_program("mariadbd", "mariadb-server")
}

/// The server's program: mariadbd here, or the container's on the docker
/// testbed (its version the image's, named by the runner).
pub(crate) fn server_program(ctx: &Ctx) -> Result<PathBuf> {
    match ctx.docker {
        None => mariadbd(),
        Some(_) => Ok("mariadbd".into()),
    }
}

pub fn init_sql(fixtures: &Path) -> PathBuf {
    fixtures.join("mariadb/init.sql")
}

/// docker-compose.yml's mariadb: the fixture as an option file read after
/// the image's own, the init file making kaspec's user.
fn adopt_server(tb: &Testbed, fixtures: &Path) -> Result<Started> {
    let server = Server::start(
        tb,
        &ServerSpec {
            name: "mariadbd".into(),
            addr: SocketAddrV4::new(tb.server.addr, tb.server_port(PORT)),
            ready_within: Duration::from_secs(30),
            container: Some(ContainerCheck {
                service: "mariadb".into(),
                args: vec!["--init-file=/etc/kaspec/mariadb-init.sql".into()],
                files: vec![
                    (
                        "/etc/mysql/conf.d/zz-kaspec.cnf".into(),
                        server_config(fixtures),
                    ),
                    ("/etc/kaspec/mariadb-init.sql".into(), init_sql(fixtures)),
                ],
                ..Default::default()
            }),
            ..Default::default()
        },
    )?;
    Ok(Started {
        processes: vec![server],
        dirs: Vec::new(),
    })
}

/// `mariadbd --version`: `mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for ...`.
pub fn server_implementation(program: &Path) -> Implementation {
    let out = std::process::Command::new(program)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut words = out.split_whitespace().skip_while(|w| *w != "Ver");
    Implementation::new("mariadb", words.nth(1).unwrap_or("unknown"))
}

/// Starts the shared server: `mariadb-install-db` into a throw-away
/// directory, then mariadbd in the server host (`--no-defaults`, the
/// fixture's settings, its own socket, port and pid file, a `kaspec` user
/// for any host made by its init file) and `overrides`; ready once it logs so.
pub(crate) fn start_server(
    tb: &Testbed,
    fixtures: &Path,
    overrides: &[(&str, &str)],
) -> Result<Started> {
    if tb.is_docker() && overrides.is_empty() {
        return adopt_server(tb, fixtures);
    }
    let program = mariadbd()?;
    let install = require_program("mariadb-install-db", "mariadb-server")?;
    let conf = server_config(fixtures);
    let conf_text = std::fs::read_to_string(&conf)
        .map_err(|e| Error::io(format!("reading {}", conf.display()), e))?;
    ServerSettings::parse(&conf_text)
        .map_err(|e| Error::Other(format!("{}: {e}", conf.display())))?;
    let io = |what: String| move |e| Error::io(what, e);
    let dir = kaspec_harness::cleanup::scratch_dir(&tb.tag, "mariadb").map_err(io(format!(
        "creating a throw-away directory for run {}",
        tb.tag
    )))?;
    let guard = crate::shared::DirGuard::new(dir.clone());
    let data = dir.join("data");
    // Its own tmpdir: a starting mariadbd deletes every `#sql*` file in its
    // tmpdir (leftover temporary tables), so two servers sharing /tmp (tests
    // in parallel) break each other's bootstrap.
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    let out = tb
        .server
        .command(&install, &tb.tag)?
        .args([
            "--no-defaults",
            "--user=root",
            "--skip-test-db",
            "--auth-root-authentication-method=normal",
        ])
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .output()
        .map_err(io(format!("running {}", install.display())))?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "mariadb-install-db --datadir={} failed ({}): {}",
            data.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let init = init_sql(fixtures);
    let addr = SocketAddrV4::new(tb.server.addr, PORT);
    let mut args: Vec<String> = vec![
        "--no-defaults".into(),
        "--user=root".into(),
        format!("--datadir={}", data.display()),
        format!("--tmpdir={}", tmp.display()),
        format!("--socket={}", dir.join("mariadbd.sock").display()),
        format!("--pid-file={}", dir.join("mariadbd.pid").display()),
        format!("--port={PORT}"),
        format!("--bind-address={}", tb.server.addr),
        format!("--init-file={}", init.display()),
        "--skip-log-bin".into(),
        "--skip-name-resolve".into(),
        "--innodb-buffer-pool-size=8M".into(),
        "--max-connections=40".into(),
        "--log-warnings=4".into(),
    ];
    args.extend(
        entries(&conf_text)
            .into_iter()
            .map(|(k, v)| format!("--{}={v}", k.replace('_', "-"))),
    );
    // A testbed's own settings (the NAT one's), after the fixture's: the last one given wins.
    args.extend(
        overrides
            .iter()
            .map(|(k, v)| format!("--{}={v}", k.replace('_', "-"))),
    );
    // A restart (after a crash) keeps the earlier log: mariadbd, mariadbd-2, ...
    let logs = tb.run_dir.join("logs");
    let name = (1..)
        .map(|n: u32| {
            if n == 1 {
                "mariadbd".to_string()
            } else {
                format!("mariadbd-{n}")
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
            ready_log: Some("ready for connections".into()),
            ..Default::default()
        },
    )?;
    Ok(Started {
        processes: vec![server],
        dirs: guard.keep(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_parses_and_zero_keepalive_is_the_kernels() {
        let s = ServerSettings::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures"))
            .unwrap();
        assert_eq!(
            (s.wait_timeout, s.interactive_timeout),
            (Duration::from_secs(2), Duration::from_secs(30))
        );
        let k = s.keepalive();
        assert_eq!(
            (k.idle, k.interval, k.count),
            (Duration::from_secs(1), Duration::from_secs(1), 2)
        );
        let d = ServerSettings::parse("# x\nwait-timeout = 5\n").unwrap();
        assert_eq!(d.wait_timeout, Duration::from_secs(5));
        assert_eq!(
            (d.keepalive().idle, d.keepalive().count),
            (Duration::from_secs(7200), 9)
        );
        assert!(ServerSettings::parse("wait_timeout = 2s")
            .unwrap_err()
            .contains("whole number"));
    }
}
