//! nats-server under test: Debian's package, started per case in the server
//! host with a throw-away copy of fixtures/nats/kaspec.conf (its
//! `ping_interval` and `ping_max` replaced by the case's overrides, and
//! `listen` on the server host's address); never the machine's instance.

use super::*;

/// The settings of `fixtures/nats/kaspec.conf` kaspec's windows use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerSettings {
    pub ping_interval: Duration,
    pub ping_max: u64,
}

pub fn server_config(fixtures: &Path) -> PathBuf {
    fixtures.join("nats/kaspec.conf")
}

/// A Go duration as nats-server's config takes it: `"1s"`, `"500ms"`, `"2m"`
/// or a bare number of seconds.
fn duration(v: &str) -> std::result::Result<Duration, String> {
    let v = v.trim().trim_matches('"').trim_matches('\'');
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{v}: expected a duration such as \"1s\""))?;
    Ok(match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(60 * n),
        "h" => Duration::from_secs(3600 * n),
        _ => return Err(format!("{v}: unit {unit} not understood (ms, s, m, h)")),
    })
}

fn key_value(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if line.starts_with('#') || line.starts_with("//") {
        return None;
    }
    let i = line.find([':', '=', ' ', '\t'])?;
    Some((
        line[..i].trim(),
        line[i + 1..].trim().trim_start_matches([':', '=']).trim(),
    ))
}

impl ServerSettings {
    pub fn load(fixtures: &Path) -> Result<ServerSettings> {
        let path = server_config(fixtures);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        ServerSettings::parse(&text).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
    }

    /// Reads `key: value` lines (nats-server's defaults for a setting not
    /// given: ping_interval 2 m, ping_max 2).
    pub fn parse(text: &str) -> std::result::Result<ServerSettings, String> {
        let mut s = ServerSettings {
            ping_interval: Duration::from_secs(120),
            ping_max: 2,
        };
        for (k, v) in text.lines().filter_map(key_value) {
            match k {
                "ping_interval" => s.ping_interval = duration(v)?,
                "ping_max" => {
                    s.ping_max = v
                        .parse()
                        .map_err(|_| format!("ping_max {v}: expected a whole number"))?
                }
                _ => {}
            }
        }
        Ok(s)
    }

    pub(crate) fn report(&self) -> Vec<(String, String)> {
        vec![
            (
                "server.ping_interval".into(),
                format!("{}ms", ms_of(self.ping_interval)),
            ),
            ("server.ping_max".into(), self.ping_max.to_string()),
        ]
    }
}

/// The throw-away configuration: the fixture without the lines the case
/// overrides, then `listen` and the overrides.
pub fn config_text(fixture: &str, listen: SocketAddrV4, ping_interval: Option<Duration>) -> String {
    let mut out: Vec<String> = fixture
        .lines()
        .filter(|l| {
            !matches!(key_value(l), Some(("listen", _)))
                && !(ping_interval.is_some() && matches!(key_value(l), Some(("ping_interval", _))))
        })
        .map(str::to_string)
        .collect();
    out.push(format!("listen: \"{listen}\""));
    if let Some(p) = ping_interval {
        out.push(format!("ping_interval: \"{}ms\"", ms_of(p)));
    }
    out.join("\n") + "\n"
}

/// `nats-server --version`: `nats-server: v2.9.10`.
pub fn server_implementation(program: &Path) -> Implementation {
    Implementation::new(
        "nats-server",
        kaspec_harness::server::version_of(program, "v"),
    )
}

/// A running nats-server and its throw-away directory (removed after it).
pub(crate) struct NatsServer {
    pub(crate) server: Option<Server>,
    dir: PathBuf,
    pub(crate) addr: SocketAddrV4,
    pub(crate) settings: ServerSettings,
    pub(crate) implementation: Implementation,
}

impl NatsServer {
    pub(crate) fn pid(&self) -> u32 {
        self.server.as_ref().map(|s| s.pid()).unwrap_or(0)
    }

    pub(crate) fn log_tail(&self, n: usize) -> String {
        self.server
            .as_ref()
            .map(|s| s.log_tail(n))
            .unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        drop(self.server.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The compose service of a case whose server pings every `ping_interval`
/// (the fixture's if None): `nats` runs fixtures/nats/kaspec.conf,
/// `nats-quiet` fixtures/nats/quiet.conf (the same, ping_interval 1 h).
pub(crate) fn service(ping_interval: Option<Duration>) -> &'static str {
    match ping_interval {
        None => "nats",
        Some(_) => "nats-quiet",
    }
}

pub fn quiet_config(fixtures: &Path) -> PathBuf {
    fixtures.join("nats/quiet.conf")
}

/// Starts nats-server in `tb`'s server host with the fixture and, if given,
/// the case's own `ping_interval` (on the docker testbed: adopts the
/// container of [`service`], checked to run the fixture's files and, for
/// `nats-quiet`, that its ping_interval is the case's).
pub(crate) fn start_server(
    ctx: &Ctx,
    tb: &Testbed,
    ping_interval: Option<Duration>,
) -> Result<NatsServer> {
    let program = match ctx.docker {
        None => require_program("nats-server", "nats-server")?,
        Some(_) => "nats-server".into(),
    };
    let fixture_path = server_config(&ctx.fixtures);
    let fixture = std::fs::read_to_string(&fixture_path)
        .map_err(|e| Error::io(format!("reading {}", fixture_path.display()), e))?;
    let mut settings = ServerSettings::parse(&fixture)
        .map_err(|e| Error::Other(format!("{}: {e}", fixture_path.display())))?;
    if let Some(p) = ping_interval {
        settings.ping_interval = p;
    }
    let dir = kaspec_harness::cleanup::scratch_dir(&tb.tag, "nats").map_err(|e| {
        Error::io(
            format!("creating a throw-away directory for run {}", tb.tag),
            e,
        )
    })?;
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let conf = dir.join("nats-server.conf");
    std::fs::write(&conf, config_text(&fixture, addr, ping_interval))
        .map_err(|e| Error::io(format!("writing {}", conf.display()), e))?;
    let mut files = vec![("/etc/nats/kaspec.conf".to_string(), fixture_path.clone())];
    let mut conf_in_container = "/etc/nats/kaspec.conf";
    if let Some(p) = ping_interval {
        let quiet = quiet_config(&ctx.fixtures);
        let text = std::fs::read_to_string(&quiet)
            .map_err(|e| Error::io(format!("reading {}", quiet.display()), e))?;
        let q = ServerSettings::parse(&text)
            .map_err(|e| Error::Other(format!("{}: {e}", quiet.display())))?;
        if tb.is_docker() && q.ping_interval != p {
            return Err(Error::Other(format!(
                "{}: ping_interval {} ms, but the case needs {} ms (service nats-quiet runs this file)",
                quiet.display(),
                ms_of(q.ping_interval),
                ms_of(p)
            )));
        }
        files.push(("/etc/nats/quiet.conf".to_string(), quiet));
        conf_in_container = "/etc/nats/quiet.conf";
    }
    let implementation = match ctx.docker {
        None => server_implementation(&program),
        // The image's version, named by the runner.
        Some(_) => Implementation::new("nats-server", "container"),
    };
    let mut n = NatsServer {
        server: None,
        dir,
        addr,
        settings,
        implementation,
    };
    n.server = Some(Server::start(
        tb,
        &ServerSpec {
            name: "nats-server".into(),
            program,
            args: vec!["-c".into(), conf.display().to_string()],
            addr,
            ready_within: Duration::from_secs(10),
            ready_log: Some("Server is ready".into()),
            container: Some(ContainerCheck {
                service: service(ping_interval).into(),
                args: vec!["-c".into(), conf_in_container.into()],
                files,
                ..Default::default()
            }),
            ..Default::default()
        },
    )?);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_parses_and_the_throw_away_config_overrides_it() {
        let s = ServerSettings::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures"))
            .unwrap();
        assert_eq!((s.ping_interval, s.ping_max), (Duration::from_secs(1), 2));
        // quiet.conf includes kaspec.conf, then sets ping_interval again
        // (nats-server's parser: the later value wins); what it parses here
        // is what the case expects of the nats-quiet service.
        let q = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/nats/quiet.conf"),
        )
        .unwrap();
        assert!(q.contains("include \"kaspec.conf\""));
        assert_eq!(
            ServerSettings::parse(&q).unwrap().ping_interval,
            Duration::from_secs(3600)
        );
        let d = ServerSettings::parse("# x\nport: 4222\n").unwrap();
        assert_eq!(
            (d.ping_interval, d.ping_max),
            (Duration::from_secs(120), 2),
            "nats-server's defaults"
        );
        assert_eq!(
            ServerSettings::parse("ping_interval = 500ms\nping_max 5").unwrap(),
            ServerSettings {
                ping_interval: Duration::from_millis(500),
                ping_max: 5
            }
        );
        assert!(ServerSettings::parse("ping_interval: \"1d\"")
            .unwrap_err()
            .contains("unit"));
        let addr = SocketAddrV4::new(std::net::Ipv4Addr::new(10, 0, 0, 2), PORT);
        let t = config_text(
            "ping_interval: \"1s\"\nping_max: 2\nlisten: 0.0.0.0:1\n",
            addr,
            Some(Duration::from_secs(3600)),
        );
        assert_eq!(
            ServerSettings::parse(&t).unwrap().ping_interval,
            Duration::from_secs(3600)
        );
        assert!(
            t.contains("listen: \"10.0.0.2:4222\"") && !t.contains("0.0.0.0:1"),
            "{t}"
        );
    }
}
