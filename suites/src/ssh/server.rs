//! The servers under test: Debian's sshd (openssh-server 9.2) started per
//! case in the server host with its own host key, the client's key and a
//! throw-away copy of fixtures/ssh/sshd_config (never /etc/ssh, never the
//! machine's sshd service), and kaspec's russh server (`kaspec serve ssh`,
//! fixtures/ssh/russh-server.conf). Both named as what they are.

use super::*;

/// sshd's settings the windows use (sshd_config(5) defaults where the
/// fixture is silent: ClientAliveInterval 0, ClientAliveCountMax 3,
/// TCPKeepAlive yes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SshdSettings {
    pub client_alive_interval: u64,
    pub client_alive_count_max: u64,
    pub tcp_keepalive: bool,
}

/// kaspec's russh server's keep-alive (server::Config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RusshServerSettings {
    pub keepalive_interval: Duration,
    pub keepalive_max: u64,
}

fn key_value(line: &str) -> Option<(String, &str)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let i = line.find(|c: char| c == '=' || c.is_whitespace())?;
    Some((
        line[..i].to_ascii_lowercase(),
        line[i + 1..].trim().trim_start_matches('=').trim(),
    ))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

impl SshdSettings {
    pub fn load(fixtures: &Path) -> Result<SshdSettings> {
        let path = fixtures.join("ssh/sshd_config");
        SshdSettings::parse(&read(&path)?)
            .map_err(|e| Error::Other(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> std::result::Result<SshdSettings, String> {
        let mut s = SshdSettings {
            client_alive_interval: 0,
            client_alive_count_max: 3,
            tcp_keepalive: true,
        };
        for (k, v) in text.lines().filter_map(key_value) {
            match k.as_str() {
                "clientaliveinterval" => s.client_alive_interval = convtime(v).ok_or_else(|| format!("ClientAliveInterval {v}: whole seconds with optional units s, m, h (sshd's convtime)"))?,
                "clientalivecountmax" => s.client_alive_count_max = v.parse().map_err(|_| format!("ClientAliveCountMax {v}: expected a whole number"))?,
                "tcpkeepalive" => s.tcp_keepalive = matches!(v.to_ascii_lowercase().as_str(), "yes" | "true"),
                _ => {}
            }
        }
        Ok(s)
    }

    pub(crate) fn report(&self) -> Vec<(String, String)> {
        vec![
            (
                "server.ClientAliveInterval".into(),
                format!("{}s", self.client_alive_interval),
            ),
            (
                "server.ClientAliveCountMax".into(),
                self.client_alive_count_max.to_string(),
            ),
            (
                "server.TCPKeepAlive".into(),
                if self.tcp_keepalive { "yes" } else { "no" }.into(),
            ),
        ]
    }
}

impl RusshServerSettings {
    pub fn load(fixtures: &Path) -> Result<RusshServerSettings> {
        let path = fixtures.join("ssh/russh-server.conf");
        let text = read(&path)?;
        let mut s = RusshServerSettings {
            keepalive_interval: Duration::ZERO,
            keepalive_max: 3,
        };
        for (k, v) in text.lines().filter_map(key_value) {
            match k.as_str() {
                "keepalive_interval" => {
                    s.keepalive_interval = humantime::parse_duration(v).map_err(|e| {
                        Error::Other(format!("{}: keepalive_interval {v}: {e}", path.display()))
                    })?
                }
                "keepalive_max" => {
                    s.keepalive_max = v.parse().map_err(|_| {
                        Error::Other(format!(
                            "{}: keepalive_max {v}: expected a whole number",
                            path.display()
                        ))
                    })?
                }
                other => {
                    return Err(Error::Other(format!(
                        "{}: unknown key {other} (allowed: keepalive_interval, keepalive_max)",
                        path.display()
                    )))
                }
            }
        }
        if s.keepalive_interval.is_zero() {
            return Err(Error::Other(format!(
                "{}: keepalive_interval must be set (e.g. 1s): the russh-server case measures it",
                path.display()
            )));
        }
        Ok(s)
    }

    pub(crate) fn report(&self) -> Vec<(String, String)> {
        vec![
            (
                "server.keepalive_interval".into(),
                format!("{}ms", ms_of(self.keepalive_interval)),
            ),
            (
                "server.keepalive_max".into(),
                self.keepalive_max.to_string(),
            ),
        ]
    }
}

/// The throw-away sshd_config: the fixture without the lines kaspec sets,
/// then those (`overrides` are (key, value) in sshd_config spelling).
pub fn sshd_config_text(
    fixture: &str,
    dir: &Path,
    listen: SocketAddrV4,
    overrides: &[(&str, String)],
) -> String {
    let ours = [
        "listenaddress",
        "port",
        "hostkey",
        "authorizedkeysfile",
        "pidfile",
    ];
    let mut out: Vec<String> = fixture
        .lines()
        .filter(|l| {
            !key_value(l).is_some_and(|(k, _)| {
                ours.contains(&k.as_str())
                    || overrides.iter().any(|(o, _)| o.eq_ignore_ascii_case(&k))
            })
        })
        .map(str::to_string)
        .collect();
    out.push(format!("ListenAddress {}:{}", listen.ip(), listen.port()));
    out.push(format!("HostKey {}", dir.join("host_ed25519").display()));
    out.push(format!(
        "AuthorizedKeysFile {}",
        dir.join("authorized_keys").display()
    ));
    out.push(format!("PidFile {}", dir.join("sshd.pid").display()));
    out.extend(overrides.iter().map(|(k, v)| format!("{k} {v}")));
    out.join("\n") + "\n"
}

/// `ssh -V` / `sshd -V` print `OpenSSH_9.2p1 Debian-2+deb12u10, OpenSSL ...` on stderr.
pub fn openssh_version(program: &str) -> String {
    std::process::Command::new(program)
        .arg("-V")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stderr)
                .split([' ', ','])
                .find_map(|w| w.strip_prefix("OpenSSH_").map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// A key pair made by ssh-keygen in `dir` (`name`, `name.pub`).
fn keygen(dir: &Path, name: &str) -> Result<()> {
    let path = dir.join(name);
    let out = std::process::Command::new(SSH_KEYGEN)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "kaspec", "-f"])
        .arg(&path)
        .output()
        .map_err(|e| Error::io(format!("running {SSH_KEYGEN}"), e))?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "{SSH_KEYGEN} -f {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The scratch directory of one case: the host key, the client's key, its
/// authorized_keys and known_hosts, the configuration. Removed on drop.
pub(crate) struct Scratch {
    pub(crate) dir: PathBuf,
}

impl Scratch {
    pub(crate) fn new(tb: &Testbed) -> Result<Scratch> {
        let dir = kaspec_harness::cleanup::scratch_dir(&tb.tag, "ssh").map_err(|e| {
            Error::io(
                format!("creating a throw-away directory for run {}", tb.tag),
                e,
            )
        })?;
        let s = Scratch { dir };
        keygen(&s.dir, "host_ed25519")?;
        keygen(&s.dir, "client_ed25519")?;
        let public = read(&s.dir.join("client_ed25519.pub"))?;
        std::fs::write(s.dir.join("authorized_keys"), public)
            .map_err(|e| Error::io("writing authorized_keys", e))?;
        Ok(s)
    }

    pub(crate) fn client_key(&self) -> PathBuf {
        self.dir.join("client_ed25519")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Which server a case talks to, with the settings it runs with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ServerKind {
    Sshd(SshdSettings),
    Russh(RusshServerSettings),
}

impl ServerKind {
    pub(crate) fn report(&self) -> Vec<(String, String)> {
        match self {
            ServerKind::Sshd(s) => s.report(),
            ServerKind::Russh(s) => s.report(),
        }
    }
}

/// A running server of a case.
pub(crate) struct SshServer {
    pub(crate) server: Server,
    pub(crate) addr: SocketAddrV4,
    pub(crate) kind: ServerKind,
    pub(crate) implementation: Implementation,
}

impl SshServer {
    /// The process that serves the connection `local <-> peer` (the
    /// server's end): sshd forks a privileged monitor per connection and it
    /// may fork the session's child, which reads and writes the socket;
    /// kaspec's russh server is one process. Of the listener's descendants,
    /// the deepest that holds this connection's socket — on the docker
    /// testbed one sshd serves every case (and a healthcheck's connections),
    /// so depth alone would pick another session's process.
    pub(crate) fn session_pid(&self, local: SocketAddrV4, peer: SocketAddrV4) -> u32 {
        let root = self.server.pid();
        if let ServerKind::Russh(_) = self.kind {
            return root;
        }
        let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let ppid = stat
                    .rsplit(')')
                    .next()?
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()?;
                Some((pid, ppid))
            })
            .collect();
        let holds = |pid: u32| crate::drive::sockopts::of_process(pid, local, peer).is_ok();
        let (mut pid, mut depth) = (root, 0);
        let mut stack = vec![(root, 0)];
        while let Some((p, d)) = stack.pop() {
            if d > depth && holds(p) {
                (pid, depth) = (p, d);
            }
            stack.extend(
                parents
                    .iter()
                    .filter(|(_, pp)| *pp == p)
                    .map(|(c, _)| (*c, d + 1)),
            );
        }
        pid
    }
}

/// The compose service of a server choice (docker-compose.yml): `sshd`
/// runs the fixture, `sshd-silent` the fixture with ClientAliveInterval 0
/// and TCPKeepAlive no on its command line, `kaspec-ssh` kaspec's russh
/// server; None when no service runs those settings.
pub(crate) fn service(server: &ServerChoice) -> Option<&'static str> {
    match server {
        ServerChoice::Russh => Some("kaspec-ssh"),
        ServerChoice::Sshd(o) => sshd_service(o),
    }
}

fn sshd_service(overrides: &[(&str, String)]) -> Option<&'static str> {
    let o: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match o.as_slice() {
        [] => Some("sshd"),
        [("ClientAliveInterval", "0"), ("TCPKeepAlive", "no")] => Some("sshd-silent"),
        _ => None,
    }
}

/// Where the sshd container keeps the keys its entrypoint made
/// (fixtures/docker/sshd-entrypoint.sh).
const CONTAINER_KEYS: &str = "/etc/kaspec/ssh";

/// On the docker testbed: the client key the container's sshd accepts,
/// copied from the container (through /proc/PID/root) over the scratch
/// directory's own.
fn take_container_client_key(server: &Server, scratch: &Scratch) -> Result<()> {
    let to = scratch.client_key();
    // ssh offers the public key of `KEY.pub` first: both go.
    for ext in ["", ".pub"] {
        let from = PathBuf::from(format!(
            "/proc/{}/root{CONTAINER_KEYS}/client_ed25519{ext}",
            server.pid()
        ));
        let key = std::fs::read(&from).map_err(|e| {
            Error::io(
                format!(
                    "reading the client key of the sshd container ({})",
                    from.display()
                ),
                e,
            )
        })?;
        let to = PathBuf::from(format!("{}{ext}", to.display()));
        // Over ssh-keygen's own files: their modes (0600 for the key) stay.
        std::fs::write(&to, key).map_err(|e| Error::io(format!("writing {}", to.display()), e))?;
    }
    Ok(())
}

/// Starts sshd in `tb`'s server host (its settings from the fixture with
/// `overrides`), or kaspec's russh server. On the docker testbed: adopts
/// the container of [`service`], checked to run the fixture with the
/// overrides as `-o` options, and takes its client key.
pub(crate) fn start_sshd(
    ctx: &Ctx,
    tb: &Testbed,
    scratch: &Scratch,
    overrides: &[(&str, String)],
) -> Result<SshServer> {
    let program = match ctx.docker {
        None => require_program(SSHD, "openssh-server")?,
        Some(_) => PathBuf::from("/usr/sbin/sshd"),
    };
    let fixture_path = ctx.fixtures.join("ssh/sshd_config");
    let fixture = read(&fixture_path)?;
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let text = sshd_config_text(&fixture, &scratch.dir, addr, overrides);
    let settings = SshdSettings::parse(&text)
        .map_err(|e| Error::Other(format!("{}: {e}", fixture_path.display())))?;
    let conf = scratch.dir.join("sshd_config");
    std::fs::write(&conf, text).map_err(|e| Error::io(format!("writing {}", conf.display()), e))?;
    // sshd's compiled-in privilege separation directory (Debian's package
    // creates it when its service starts; kaspec never starts that).
    if !tb.is_docker() && !Path::new("/run/sshd").exists() {
        std::fs::create_dir_all("/run/sshd").map_err(|e| {
            Error::io(
                "creating /run/sshd (sshd's privilege separation directory)",
                e,
            )
        })?;
    }
    let mut container_args = vec!["-f".to_string(), "/etc/kaspec/sshd_config".to_string()];
    for (k, v) in overrides {
        container_args.extend(["-o".to_string(), format!("{k}={v}")]);
    }
    let server = Server::start(
        tb,
        &ServerSpec {
            name: "sshd".into(),
            program,
            args: vec![
                "-D".into(),
                "-e".into(),
                "-f".into(),
                conf.display().to_string(),
            ],
            addr,
            ready_within: Duration::from_secs(10),
            ready_log: Some("Server listening on".into()),
            container: sshd_service(overrides).map(|s| ContainerCheck {
                service: s.into(),
                args: container_args,
                without: if overrides.is_empty() {
                    vec!["-o".into()]
                } else {
                    Vec::new()
                },
                files: vec![("/etc/kaspec/sshd_config".into(), fixture_path.clone())],
            }),
            ..Default::default()
        },
    )?;
    if tb.is_docker() {
        take_container_client_key(&server, scratch)?;
    }
    Ok(SshServer {
        server,
        addr,
        kind: ServerKind::Sshd(settings),
        implementation: Implementation::new("openssh-sshd", openssh_version(SSHD)),
    })
}

pub(crate) fn start_russh_server(ctx: &Ctx, tb: &Testbed, scratch: &Scratch) -> Result<SshServer> {
    let settings = RusshServerSettings::load(&ctx.fixtures)?;
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let keepalive = vec![
        "--keepalive-interval".to_string(),
        format!("{}ms", ms_of(settings.keepalive_interval)),
        "--keepalive-max".to_string(),
        settings.keepalive_max.to_string(),
    ];
    let mut args = ctx.serve.args.clone();
    args.extend([
        "ssh".into(),
        "--listen".into(),
        addr.to_string(),
        "--host-key".into(),
        scratch.dir.join("host_ed25519").display().to_string(),
    ]);
    args.extend(keepalive.iter().cloned());
    let server = Server::start(
        tb,
        &ServerSpec {
            name: "kaspec-ssh".into(),
            program: ctx.serve.program.clone(),
            args,
            addr,
            ready_within: Duration::from_secs(10),
            // docker-compose.yml's kaspec-ssh: fixtures/ssh/russh-server.conf's keep-alive.
            container: Some(ContainerCheck {
                service: "kaspec-ssh".into(),
                args: keepalive,
                ..Default::default()
            }),
            ..Default::default()
        },
    )?;
    Ok(SshServer {
        server,
        addr,
        kind: ServerKind::Russh(settings),
        implementation: Implementation::new("kaspec-ssh (russh)", env!("KASPEC_VERSION_RUSSH")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixtures_parse_and_the_throw_away_config_overrides_them() {
        let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
        let s = SshdSettings::load(&f).unwrap();
        assert_eq!(
            s,
            SshdSettings {
                client_alive_interval: 1,
                client_alive_count_max: 2,
                tcp_keepalive: false
            }
        );
        assert_eq!(
            SshdSettings::parse("# nothing\n").unwrap(),
            SshdSettings {
                client_alive_interval: 0,
                client_alive_count_max: 3,
                tcp_keepalive: true
            },
            "sshd's defaults"
        );
        let r = RusshServerSettings::load(&f).unwrap();
        assert_eq!(
            (r.keepalive_interval, r.keepalive_max),
            (Duration::from_secs(1), 2)
        );
        let addr = SocketAddrV4::new(std::net::Ipv4Addr::new(10, 0, 0, 2), PORT);
        let t = sshd_config_text(
            "ClientAliveInterval 1\nPort 2222\nTCPKeepAlive no\n",
            Path::new("/tmp/x"),
            addr,
            &[("ClientAliveInterval", "0".into())],
        );
        assert_eq!(SshdSettings::parse(&t).unwrap().client_alive_interval, 0);
        assert!(
            t.contains("ListenAddress 10.0.0.2:22")
                && !t.contains("Port 2222")
                && t.contains("HostKey /tmp/x/host_ed25519"),
            "{t}"
        );
    }
}
