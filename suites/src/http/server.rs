//! The HTTP servers under test, each started per case in the server host
//! and named with its version: nginx and HAProxy (Debian's packages, with
//! fixtures/http/nginx.conf and haproxy.cfg filled in a throw-away
//! directory; never the machine's own instance) and kaspec's own hyper
//! server (`kaspec serve http`). HTTP/1.1 on port 80, HTTP/2 with prior
//! knowledge on 81; each answers with the client port it saw. On the
//! docker testbed: the compose service of each server and idle timeout
//! (docker-compose.yml: nginx, haproxy, kaspec-http and their -long
//! twins), checked to run fixtures/http/docker/ (the templates filled with
//! servers.toml's S) or hyper's S on its command line.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HttpServer {
    Nginx,
    Haproxy,
    Hyper,
}

pub const SERVERS: [HttpServer; 3] = [HttpServer::Nginx, HttpServer::Haproxy, HttpServer::Hyper];

/// How long the server keeps an idle connection: its fixture value (the
/// cases that measure it) or `[long]` (the cases that isolate the client).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Idle {
    Fixture,
    Long,
}

fn servers_toml(fixtures: &Path) -> PathBuf {
    fixtures.join("http/servers.toml")
}

/// `program flag`'s version, picked from the words it printed (stdout and stderr).
fn version(program: &Path, flag: &str, pick: impl Fn(&[&str]) -> Option<String>) -> String {
    std::process::Command::new(program)
        .arg(flag)
        .output()
        .ok()
        .and_then(|o| {
            let text = format!(
                "{} {}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            pick(&text.split_whitespace().collect::<Vec<_>>())
        })
        .unwrap_or_else(|| "unknown".into())
}

impl HttpServer {
    pub fn section(self) -> &'static str {
        match self {
            HttpServer::Nginx => "nginx",
            HttpServer::Haproxy => "haproxy",
            HttpServer::Hyper => "hyper",
        }
    }

    /// The idle timeout S this server is started with.
    pub fn idle_timeout(self, fixtures: &Path, idle: Idle) -> Result<Duration> {
        let section = match idle {
            Idle::Fixture => self.section(),
            Idle::Long => "long",
        };
        let d =
            crate::peers::python::durations(&servers_toml(fixtures), section, &["idle_timeout"])?;
        Ok(d[0])
    }

    /// The compose service that runs this server with idle timeout `idle`.
    pub fn service(self, idle: Idle) -> &'static str {
        match (self, idle) {
            (HttpServer::Nginx, Idle::Fixture) => "nginx",
            (HttpServer::Nginx, Idle::Long) => "nginx-long",
            (HttpServer::Haproxy, Idle::Fixture) => "haproxy",
            (HttpServer::Haproxy, Idle::Long) => "haproxy-long",
            (HttpServer::Hyper, Idle::Fixture) => "kaspec-http",
            (HttpServer::Hyper, Idle::Long) => "kaspec-http-long",
        }
    }

    /// nginx's and HAProxy's configuration: the template in fixtures/http/,
    /// the file its compose service mounts (fixtures/http/docker/), and
    /// where the container reads it (none: hyper, all on its command line).
    fn config_files(self, idle: Idle) -> Option<(&'static str, &'static str, &'static str)> {
        match (self, idle) {
            (HttpServer::Nginx, Idle::Fixture) => {
                Some(("nginx.conf", "docker/nginx.conf", "/etc/kaspec/nginx.conf"))
            }
            (HttpServer::Nginx, Idle::Long) => Some((
                "nginx.conf",
                "docker/nginx-long.conf",
                "/etc/kaspec/nginx.conf",
            )),
            (HttpServer::Haproxy, Idle::Fixture) => Some((
                "haproxy.cfg",
                "docker/haproxy.cfg",
                "/etc/kaspec/haproxy.cfg",
            )),
            (HttpServer::Haproxy, Idle::Long) => Some((
                "haproxy.cfg",
                "docker/haproxy-long.cfg",
                "/etc/kaspec/haproxy.cfg",
            )),
            (HttpServer::Hyper, _) => None,
        }
    }

    /// What sets S in this server, for formulas and reports.
    pub fn idle_setting(self) -> &'static str {
        match self {
            HttpServer::Nginx => "keepalive_timeout",
            HttpServer::Haproxy => "timeout http-keep-alive (h2: timeout client)",
            HttpServer::Hyper => "http1 header_read_timeout",
        }
    }

    /// Its name in results.
    pub fn name(self) -> &'static str {
        match self {
            HttpServer::Nginx => "nginx",
            HttpServer::Haproxy => "haproxy",
            HttpServer::Hyper => "kaspec-http (hyper)",
        }
    }

    pub fn implementation(self) -> Implementation {
        match self {
            // `nginx version: nginx/1.22.1` (on stderr).
            HttpServer::Nginx => Implementation::new(
                self.name(),
                require_program("nginx", "nginx")
                    .map(|p| {
                        version(&p, "-v", |w| {
                            w.iter()
                                .find_map(|x| x.strip_prefix("nginx/").map(str::to_string))
                        })
                    })
                    .unwrap_or_else(|_| "unknown".into()),
            ),
            // `HAProxy version 2.6.12-1+deb12u4 2023/...`.
            HttpServer::Haproxy => Implementation::new(
                self.name(),
                require_program("haproxy", "haproxy")
                    .map(|p| {
                        version(&p, "-v", |w| {
                            w.windows(2)
                                .find(|p| p[0] == "version")
                                .map(|p| p[1].to_string())
                        })
                    })
                    .unwrap_or_else(|_| "unknown".into()),
            ),
            HttpServer::Hyper => Implementation::new(
                self.name(),
                format!(
                    "kaspec {} / hyper {}",
                    env!("CARGO_PKG_VERSION"),
                    env!("KASPEC_VERSION_HYPER")
                ),
            ),
        }
    }
}

/// A running server, its throw-away directory, and what it was started with.
pub struct Running {
    server: Option<Server>,
    dir: Option<PathBuf>,
    pub kind: HttpServer,
    /// Port 80 (HTTP/1.1) or 81 (HTTP/2).
    pub addr: SocketAddrV4,
    pub idle_timeout: Duration,
    pub implementation: Implementation,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.server.as_ref().map(|s| s.pid()).unwrap_or(0)
    }

    pub fn report(&self) -> Vec<(String, String)> {
        vec![(
            format!("server.{}", self.kind.idle_setting()),
            format!("{}ms", ms_of(self.idle_timeout)),
        )]
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.server.take());
        if let Some(d) = self.dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

/// The fixture template `name` with @PREFIX@, @ADDR@ and @IDLE@ filled.
fn filled(
    fixtures: &Path,
    name: &str,
    prefix: &str,
    addr: Ipv4Addr,
    idle: Duration,
) -> Result<String> {
    Ok(read(&fixtures.join("http").join(name))?
        .replace("@PREFIX@", prefix)
        .replace("@ADDR@", &addr.to_string())
        .replace("@IDLE@", &format!("{}ms", ms_of(idle))))
}

/// A fixture template filled, written to `dir`.
fn fill(ctx: &Ctx, name: &str, dir: &Path, addr: Ipv4Addr, idle: Duration) -> Result<PathBuf> {
    let text = filled(&ctx.fixtures, name, &dir.display().to_string(), addr, idle)?;
    let out = dir.join(name);
    std::fs::write(&out, text).map_err(|e| Error::io(format!("writing {}", out.display()), e))?;
    Ok(out)
}

/// The settings of a configuration file: its lines but comments and blank ones.
fn settings(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect()
}

/// Where the compose services' nginx and HAProxy keep their files (the
/// @PREFIX@ of fixtures/http/docker/) and the address they listen on.
const DOCKER_PREFIX: &str = "/tmp";
const DOCKER_ADDR: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

/// Checks that `kind`'s compose-service file (fixtures/http/docker/) holds
/// the settings of its template filled with S = `idle` (servers.toml), so
/// that the window computed from S is the container's; returns the file
/// (the container's copy is compared with it byte for byte).
pub fn docker_config(
    fixtures: &Path,
    kind: HttpServer,
    idle: Idle,
) -> Result<Option<(String, PathBuf)>> {
    let Some((template, file, inside)) = kind.config_files(idle) else {
        return Ok(None);
    };
    let s = kind.idle_timeout(fixtures, idle)?;
    let want = filled(fixtures, template, DOCKER_PREFIX, DOCKER_ADDR, s)?;
    let path = fixtures.join("http").join(file);
    let have = read(&path)?;
    let (want, have) = (settings(&want), settings(&have));
    if want != have {
        let at = want
            .iter()
            .zip(&have)
            .position(|(a, b)| a != b)
            .unwrap_or(want.len().min(have.len()));
        return Err(Error::Other(format!(
            "{}: its settings are not fixtures/http/{template}'s with @IDLE@ {}ms (servers.toml's idle timeout for {}): setting {} is `{}`, the template gives `{}`; make it the filled template again",
            path.display(),
            ms_of(s),
            kind.service(idle),
            at + 1,
            have.get(at).map_or("(none)", |l| l.trim()),
            want.get(at).map_or("(none)", |l| l.trim()),
        )));
    }
    Ok(Some((inside.to_string(), path)))
}

/// Starts `kind` in `tb`'s server host with idle timeout `idle`; `h2`
/// picks the address the case talks to.
pub fn start(ctx: &Ctx, tb: &Testbed, kind: HttpServer, idle: Idle, h2: bool) -> Result<Running> {
    if ctx.docker.is_some() {
        return adopt(ctx, tb, kind, idle, h2);
    }
    let s = kind.idle_timeout(&ctx.fixtures, idle)?;
    let host = tb.server.addr;
    let addr = SocketAddrV4::new(host, if h2 { H2_PORT } else { H1_PORT });
    let mut dir = None;
    let (program, args) = match kind {
        HttpServer::Nginx | HttpServer::Haproxy => {
            let d = kaspec_harness::cleanup::scratch_dir(&tb.tag, kind.section()).map_err(|e| {
                Error::io(
                    format!("creating a throw-away directory for run {}", tb.tag),
                    e,
                )
            })?;
            dir = Some(d.clone());
            if kind == HttpServer::Nginx {
                let conf = fill(ctx, "nginx.conf", &d, host, s)?;
                let p = require_program("nginx", "nginx")?;
                let args = vec![
                    "-p".into(),
                    d.display().to_string(),
                    "-e".into(),
                    "stderr".into(),
                    "-c".into(),
                    conf.display().to_string(),
                ];
                (p, args)
            } else {
                let conf = fill(ctx, "haproxy.cfg", &d, host, s)?;
                let p = require_program("haproxy", "haproxy")?;
                (
                    p,
                    vec!["-db".into(), "-f".into(), conf.display().to_string()],
                )
            }
        }
        HttpServer::Hyper => {
            let mut args = ctx.serve.args.clone();
            args.extend([
                "http".into(),
                "--listen".into(),
                SocketAddrV4::new(host, H1_PORT).to_string(),
            ]);
            args.extend(hyper_args(s));
            (ctx.serve.program.clone(), args)
        }
    };
    let r = Running {
        server: None,
        dir,
        kind,
        addr,
        idle_timeout: s,
        implementation: kind.implementation(),
    };
    launch(tb, r, program, args, None)
}

/// `kaspec serve http`'s idle timeout S on its command line.
fn hyper_args(s: Duration) -> [String; 2] {
    ["--header-read-timeout".into(), format!("{}ms", ms_of(s))]
}

fn launch(
    tb: &Testbed,
    mut r: Running,
    program: PathBuf,
    args: Vec<String>,
    container: Option<ContainerCheck>,
) -> Result<Running> {
    r.server = Some(Server::start(
        tb,
        &ServerSpec {
            name: r.kind.section().into(),
            program,
            args,
            addr: r.addr,
            ready_within: Duration::from_secs(10),
            container,
            ..Default::default()
        },
    )?);
    Ok(r)
}

/// On the docker testbed: the container of `kind.service(idle)` (the
/// testbed's), checked to run what S is computed from: the mounted file
/// byte for byte the fixture whose settings are the template's with S
/// ([`docker_config`]), or hyper's S on its command line. HTTP/1.1 on the
/// service's `org.kaspec.port`, HTTP/2 on the port after it. Named with
/// the image (several services here share a server's name).
fn adopt(ctx: &Ctx, tb: &Testbed, kind: HttpServer, idle: Idle, h2: bool) -> Result<Running> {
    let s = kind.idle_timeout(&ctx.fixtures, idle)?;
    let service = kind.service(idle);
    let port = tb.server_port(H1_PORT);
    let addr = SocketAddrV4::new(tb.server.addr, if h2 { port + 1 } else { port });
    let (args, files) = match docker_config(&ctx.fixtures, kind, idle)? {
        Some((inside, file)) => {
            let flag = if kind == HttpServer::Nginx {
                "-c"
            } else {
                "-f"
            };
            (vec![flag.into(), inside.clone()], vec![(inside, file)])
        }
        None => (hyper_args(s).to_vec(), Vec::new()),
    };
    let implementation = Implementation::new(
        kind.name(),
        ctx.image_version(service)
            .unwrap_or_else(|| "container".into()),
    );
    let r = Running {
        server: None,
        dir: None,
        kind,
        addr,
        idle_timeout: s,
        implementation,
    };
    let check = ContainerCheck {
        service: service.into(),
        args,
        files,
        ..Default::default()
    };
    launch(tb, r, kind.section().into(), Vec::new(), Some(check))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
    }

    #[test]
    fn the_compose_services_run_servers_toml_s() {
        let f = fixtures();
        for kind in SERVERS {
            for idle in [Idle::Fixture, Idle::Long] {
                let got = docker_config(&f, kind, idle).unwrap();
                assert_eq!(got.is_some(), kind != HttpServer::Hyper);
            }
        }
        // hyper's S is on the compose service's command line.
        let compose = std::fs::read_to_string(f.join("../docker-compose.yml")).unwrap();
        for idle in [Idle::Fixture, Idle::Long] {
            let s = HttpServer::Hyper.idle_timeout(&f, idle).unwrap();
            let [flag, value] = hyper_args(s);
            let service = HttpServer::Hyper.service(idle);
            let at = compose.find(&format!("\n  {service}:\n")).unwrap();
            let block = &compose[at..][..compose[at + 1..]
                .find("\n  org.kaspec.service")
                .unwrap_or(400)
                .min(400)];
            assert!(
                block.contains(&format!("\"{flag}\", \"{value}\"")),
                "{service}: {block}"
            );
        }
    }

    #[test]
    fn a_compose_file_that_is_not_the_filled_template_is_refused() {
        let dir =
            std::env::temp_dir().join(format!("kaspec-http-docker-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("http/docker")).unwrap();
        for f in [
            "nginx.conf",
            "haproxy.cfg",
            "servers.toml",
            "docker/nginx.conf",
        ] {
            std::fs::copy(fixtures().join("http").join(f), dir.join("http").join(f)).unwrap();
        }
        assert!(docker_config(&dir, HttpServer::Nginx, Idle::Fixture).is_ok());
        let toml = std::fs::read_to_string(dir.join("http/servers.toml")).unwrap();
        let toml = toml.replacen("idle_timeout = \"1s\"", "idle_timeout = \"2s\"", 1);
        std::fs::write(dir.join("http/servers.toml"), toml).unwrap();
        let e = docker_config(&dir, HttpServer::Nginx, Idle::Fixture)
            .unwrap_err()
            .to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            e.contains("docker/nginx.conf")
                && e.contains("@IDLE@ 2000ms")
                && e.contains("`keepalive_timeout 1000ms;`")
                && e.contains("`keepalive_timeout 2000ms;`"),
            "{e}"
        );
    }
}
