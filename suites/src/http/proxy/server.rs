//! The proxies under test, started per case in the proxy host of the
//! [`PROXY`](kaspec_harness::testbed::PROXY) topology with a throw-away
//! configuration rendered from `fixtures/http/proxy/` (never the machine's
//! own instances), and named with their versions; and the upstream server
//! behind them (kaspec's, in the server host).

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kaspec_harness::caps::require_program;
use kaspec_harness::report::Implementation;
use kaspec_harness::server::{Server, ServerSpec};
use kaspec_harness::testbed::Testbed;
use kaspec_harness::{Error, Result};

use crate::model::ms_of;

/// The proxy's port (on its client-side address).
pub const PROXY_PORT: u16 = 8080;
/// The upstream server's port.
pub const UPSTREAM_PORT: u16 = 8000;

/// Which proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    Nginx,
    Haproxy,
}

impl ProxyKind {
    pub const ALL: [ProxyKind; 2] = [ProxyKind::Nginx, ProxyKind::Haproxy];

    pub fn name(self) -> &'static str {
        match self {
            ProxyKind::Nginx => "nginx",
            ProxyKind::Haproxy => "haproxy",
        }
    }

    fn program(self) -> Result<PathBuf> {
        match self {
            ProxyKind::Nginx => require_program("nginx", "nginx"),
            ProxyKind::Haproxy => require_program("haproxy", "haproxy"),
        }
    }

    /// The fixture this proxy's configuration is rendered from.
    pub fn fixture(self, fixtures: &Path) -> PathBuf {
        fixtures.join("http/proxy").join(match self {
            ProxyKind::Nginx => "nginx.conf",
            ProxyKind::Haproxy => "haproxy.cfg",
        })
    }
}

/// A proxy's settings that the windows are computed from; each is one
/// directive of the rendered fixture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProxySettings {
    pub kind: ProxyKind,
    /// How long the proxy waits for the upstream's response: nginx
    /// `proxy_read_timeout`, HAProxy `timeout server`.
    pub read_timeout: Duration,
    /// How long an idle upstream connection stays in the proxy's pool:
    /// nginx upstream `keepalive_timeout` (HAProxy keeps idle server
    /// connections until `timeout server`, the same value as `read_timeout`).
    pub upstream_keepalive_timeout: Duration,
    /// The client side's idle timeout between two requests: nginx
    /// `keepalive_timeout`, HAProxy `timeout http-keep-alive`.
    pub keepalive_timeout: Duration,
    /// HAProxy `timeout client` (nginx: unused).
    pub timeout_client: Duration,
    /// nginx `proxy_next_upstream error timeout` (on) or `off`; HAProxy
    /// `http-reuse always` (on) or `safe`.
    pub retry: bool,
}

impl ProxySettings {
    /// The cases' short timings: a 1 s read timeout, a pool that keeps an
    /// idle upstream connection 10 s, a 1.5 s client-side idle timeout.
    pub fn short(kind: ProxyKind) -> ProxySettings {
        ProxySettings {
            kind,
            read_timeout: Duration::from_secs(1),
            upstream_keepalive_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_millis(1500),
            timeout_client: Duration::from_secs(5),
            retry: true,
        }
    }

    /// The `{{NAME}}` values of the fixture.
    fn values(
        &self,
        listen: SocketAddrV4,
        upstream: SocketAddrV4,
        dir: &Path,
    ) -> Vec<(&'static str, String)> {
        let ms = |d: Duration| format!("{}ms", ms_of(d));
        let mut v = vec![
            ("LISTEN", listen.to_string()),
            ("UPSTREAM", upstream.to_string()),
        ];
        match self.kind {
            ProxyKind::Nginx => v.extend([
                ("RUNDIR", dir.display().to_string()),
                ("KEEPALIVE", "4".into()),
                (
                    "UPSTREAM_KEEPALIVE_TIMEOUT",
                    ms(self.upstream_keepalive_timeout),
                ),
                ("KEEPALIVE_TIMEOUT", ms(self.keepalive_timeout)),
                ("READ_TIMEOUT", ms(self.read_timeout)),
                (
                    "NEXT_UPSTREAM",
                    if self.retry { "error timeout" } else { "off" }.into(),
                ),
            ]),
            ProxyKind::Haproxy => v.extend([
                ("TIMEOUT_CLIENT", ms(self.timeout_client)),
                ("TIMEOUT_SERVER", ms(self.read_timeout)),
                ("TIMEOUT_HTTP_KEEP_ALIVE", ms(self.keepalive_timeout)),
                (
                    "HTTP_REUSE",
                    if self.retry { "always" } else { "safe" }.into(),
                ),
            ]),
        }
        v
    }

    /// The settings as the report's configuration lists them.
    pub fn report(&self) -> Vec<(String, String)> {
        let ms = |d: Duration| format!("{}ms", ms_of(d));
        let p = self.kind.name();
        match self.kind {
            ProxyKind::Nginx => vec![
                (format!("{p}.proxy_read_timeout"), ms(self.read_timeout)),
                (format!("{p}.upstream.keepalive"), "4".into()),
                (
                    format!("{p}.upstream.keepalive_timeout"),
                    ms(self.upstream_keepalive_timeout),
                ),
                (format!("{p}.keepalive_timeout"), ms(self.keepalive_timeout)),
                (
                    format!("{p}.proxy_next_upstream"),
                    if self.retry { "error timeout" } else { "off" }.into(),
                ),
                (format!("{p}.proxy_http_version"), "1.1".into()),
            ],
            ProxyKind::Haproxy => vec![
                (format!("{p}.timeout_server"), ms(self.read_timeout)),
                (format!("{p}.timeout_client"), ms(self.timeout_client)),
                (
                    format!("{p}.timeout_http-keep-alive"),
                    ms(self.keepalive_timeout),
                ),
                (
                    format!("{p}.http-reuse"),
                    if self.retry { "always" } else { "safe" }.into(),
                ),
            ],
        }
    }
}

/// Fills the fixture's `{{NAME}}` placeholders; an unknown or unfilled one
/// is an error naming it and the file.
pub fn render(template: &str, values: &[(&str, String)], file: &Path) -> Result<String> {
    let mut out = template.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    if let Some(i) = out.find("{{") {
        let name: String = out[i..].chars().take_while(|c| *c != '\n').collect();
        return Err(Error::Other(format!(
            "{}: placeholder {name} has no value (kaspec fills {})",
            file.display(),
            values
                .iter()
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(out)
}

/// A proxy's version as it prints it (`nginx -v`: `nginx version:
/// nginx/1.22.1` on stderr; `haproxy -v`: `HAProxy version 2.6.12-1 ...`).
pub fn proxy_implementation(kind: ProxyKind, program: &Path) -> Implementation {
    let (flag, after) = match kind {
        ProxyKind::Nginx => ("-v", "nginx/"),
        ProxyKind::Haproxy => ("-v", "version "),
    };
    let out = std::process::Command::new(program).arg(flag).output();
    let text = out
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default();
    let version = text
        .split_once(after)
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("unknown");
    Implementation::new(kind.name(), version)
}

/// A running proxy and its throw-away directory (removed after it).
pub struct Proxy {
    pub server: Option<Server>,
    pub addr: SocketAddrV4,
    pub settings: ProxySettings,
    pub implementation: Implementation,
    dir: PathBuf,
}

impl Proxy {
    /// Starts `settings.kind` in `tb`'s proxy host, listening on the
    /// proxy's client-side address, forwarding to `upstream`.
    pub fn start(
        fixtures: &Path,
        tb: &Testbed,
        settings: ProxySettings,
        upstream: SocketAddrV4,
    ) -> Result<Proxy> {
        let host = tb.proxy().ok_or_else(|| {
            Error::Other(format!(
                "the {} topology has no proxy host",
                tb.topology().name
            ))
        })?;
        let kind = settings.kind;
        let program = kind.program()?;
        let fixture = kind.fixture(fixtures);
        let template = std::fs::read_to_string(&fixture)
            .map_err(|e| Error::io(format!("reading {}", fixture.display()), e))?;
        let dir = kaspec_harness::cleanup::scratch_dir(&tb.tag, kind.name()).map_err(|e| {
            Error::io(
                format!("creating a throw-away directory for run {}", tb.tag),
                e,
            )
        })?;
        let addr = SocketAddrV4::new(host.addr, PROXY_PORT);
        let mut proxy = Proxy {
            server: None,
            addr,
            settings,
            implementation: proxy_implementation(kind, &program),
            dir,
        };
        let text = render(
            &template,
            &settings.values(addr, upstream, &proxy.dir),
            &fixture,
        )?;
        let conf = proxy.dir.join(fixture.file_name().unwrap_or_default());
        std::fs::write(&conf, text)
            .map_err(|e| Error::io(format!("writing {}", conf.display()), e))?;
        let conf = conf.display().to_string();
        let args = match kind {
            ProxyKind::Nginx => vec![
                "-p".into(),
                proxy.dir.display().to_string(),
                "-c".into(),
                conf,
            ],
            ProxyKind::Haproxy => vec!["-db".into(), "-f".into(), conf],
        };
        let spec = ServerSpec {
            name: kind.name().into(),
            program,
            args,
            addr,
            ready_within: Duration::from_secs(10),
            ..Default::default()
        };
        proxy.server = Some(Server::start_in(tb, host, &tb.client, &spec)?);
        Ok(proxy)
    }

    /// Per request the proxy logged (fixtures' `kaspec-req` lines): its
    /// path and how many times the proxy tried the upstream for it — nginx
    /// `$upstream_status` has one status per try ("502, 200": the cached
    /// connection failed, a new one answered); HAProxy 1 + `%rc` (its
    /// connection retries).
    pub fn upstream_tries(&self) -> Vec<(String, u32)> {
        let file = match self.settings.kind {
            ProxyKind::Nginx => self.dir.join("access.log"),
            ProxyKind::Haproxy => match &self.server {
                Some(s) => s.log.clone(),
                None => return Vec::new(),
            },
        };
        let text = std::fs::read_to_string(file).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_once("kaspec-req ").map(|(_, r)| r))
            .filter_map(|r| {
                let (path, rest) = r.split_once(' ')?;
                let tries = match self.settings.kind {
                    ProxyKind::Nginx => rest.split(',').count() as u32,
                    ProxyKind::Haproxy => {
                        1 + rest
                            .split_whitespace()
                            .next()?
                            .trim_start_matches('+')
                            .parse::<u32>()
                            .ok()?
                    }
                };
                Some((path.to_string(), tries))
            })
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.server.as_ref().map_or(0, Server::pid)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        drop(self.server.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
