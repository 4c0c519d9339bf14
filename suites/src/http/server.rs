//! The HTTP servers under test, each started per case in the server host
//! and named with its version: nginx and HAProxy (Debian's packages, with
//! fixtures/http/nginx.conf and haproxy.cfg filled in a throw-away
//! directory; never the machine's own instance) and kaspec's own hyper
//! server (`kaspec serve http`). HTTP/1.1 on port 80, HTTP/2 with prior
//! knowledge on 81; each answers with the client port it saw.

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

    /// What sets S in this server, for formulas and reports.
    pub fn idle_setting(self) -> &'static str {
        match self {
            HttpServer::Nginx => "keepalive_timeout",
            HttpServer::Haproxy => "timeout http-keep-alive (h2: timeout client)",
            HttpServer::Hyper => "http1 header_read_timeout",
        }
    }

    pub fn implementation(self) -> Implementation {
        match self {
            // `nginx version: nginx/1.22.1` (on stderr).
            HttpServer::Nginx => Implementation::new(
                "nginx",
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
                "haproxy",
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
                "kaspec-http (hyper)",
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

/// A fixture template with @PREFIX@, @ADDR@ and @IDLE@ filled, written to `dir`.
fn fill(ctx: &Ctx, name: &str, dir: &Path, addr: Ipv4Addr, idle: Duration) -> Result<PathBuf> {
    let src = ctx.fixtures.join("http").join(name);
    let text = std::fs::read_to_string(&src)
        .map_err(|e| Error::io(format!("reading {}", src.display()), e))?;
    let text = text
        .replace("@PREFIX@", &dir.display().to_string())
        .replace("@ADDR@", &addr.to_string())
        .replace("@IDLE@", &format!("{}ms", ms_of(idle)));
    let out = dir.join(name);
    std::fs::write(&out, text).map_err(|e| Error::io(format!("writing {}", out.display()), e))?;
    Ok(out)
}

/// Starts `kind` in `tb`'s server host with idle timeout `idle`; `h2`
/// picks the address the case talks to.
pub fn start(ctx: &Ctx, tb: &Testbed, kind: HttpServer, idle: Idle, h2: bool) -> Result<Running> {
    let s = kind.idle_timeout(&ctx.fixtures, idle)?;
    let host = tb.server.addr;
    let addr = SocketAddrV4::new(host, if h2 { H2_PORT } else { H1_PORT });
    let mut dir = None;
    let (program, args, ready_log) = match kind {
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
                (p, args, None)
            } else {
                let conf = fill(ctx, "haproxy.cfg", &d, host, s)?;
                let p = require_program("haproxy", "haproxy")?;
                (
                    p,
                    vec!["-db".into(), "-f".into(), conf.display().to_string()],
                    None,
                )
            }
        }
        HttpServer::Hyper => {
            let mut args = ctx.serve.args.clone();
            args.extend([
                "http".into(),
                "--listen".into(),
                SocketAddrV4::new(host, H1_PORT).to_string(),
                "--header-read-timeout".into(),
                format!("{}ms", ms_of(s)),
            ]);
            (ctx.serve.program.clone(), args, None)
        }
    };
    let mut r = Running {
        server: None,
        dir,
        kind,
        addr,
        idle_timeout: s,
        implementation: kind.implementation(),
    };
    r.server = Some(Server::start(
        tb,
        &ServerSpec {
            name: kind.section().into(),
            program,
            args,
            addr,
            ready_within: Duration::from_secs(10),
            ready_log,
            ..Default::default()
        },
    )?);
    Ok(r)
}
