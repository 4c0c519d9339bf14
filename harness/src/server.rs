//! Real server processes, run inside the server host, with their output
//! captured into the run folder and readiness checked by connecting (from the
//! client host, through the router: the path the case will use).

use std::fs::File;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::host::Host;
use crate::testbed::{DockerPath, Testbed};
use crate::{Error, Result};

/// What to start.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Short name for logs and errors (`mosquitto`, `kaspec-tcp`).
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Where it listens; readiness = a TCP connect to this succeeds.
    pub addr: SocketAddrV4,
    /// How long it may take to become ready.
    pub ready_within: Duration,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Run as this (uid, gid) instead of root (servers that refuse root).
    pub user: Option<(u32, u32)>,
    /// Ready only once its log has this line too (servers that accept
    /// connections before they can serve them).
    pub ready_log: Option<String>,
    /// What stopping it sends first (SIGTERM unless the server's fast
    /// shutdown is another signal: SIGINT for PostgreSQL, whose SIGTERM
    /// waits for its clients).
    pub stop_signal: Signal,
    /// On the `docker` testbed: the compose service that stands for this
    /// server, and what it must run for the case's expectation to hold.
    /// None: the server has no container (the case runs on netns only).
    pub container: Option<ContainerCheck>,
}

/// What an adopted container must be running: the case computed its
/// expectation from these settings, so a container that runs others is an
/// error naming the difference, never a measurement.
#[derive(Debug, Clone, Default)]
pub struct ContainerCheck {
    /// Its `org.kaspec.service` label.
    pub service: String,
    /// Arguments its command must contain, contiguous and in this order.
    pub args: Vec<String>,
    /// Arguments its command must not contain (settings the case needs
    /// left at their defaults).
    pub without: Vec<String>,
    /// (path inside the container, file on this host) that must be equal:
    /// the fixture docker-compose.yml mounts.
    pub files: Vec<(String, PathBuf)>,
}

impl Default for ServerSpec {
    fn default() -> Self {
        ServerSpec {
            name: String::new(),
            program: PathBuf::new(),
            args: Vec::new(),
            addr: SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0),
            ready_within: Duration::from_secs(10),
            env: Vec::new(),
            user: None,
            ready_log: None,
            stop_signal: Signal::SIGTERM,
            container: None,
        }
    }
}

/// With `KASPEC_TIMINGS=FILE` (benches/run.sh): appends `server NAME MS`,
/// the time from spawning a server to it accepting connections.
fn note_start(name: &str, took: Duration) {
    if let Some(path) = std::env::var_os("KASPEC_TIMINGS") {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "server {name} {}", took.as_millis());
        }
    }
}

/// A running server. Dropping it stops it (TERM, then KILL) — unless it
/// is an adopted container, which compose owns: that is only continued if
/// it was frozen.
pub struct Server {
    pub name: String,
    pub addr: SocketAddrV4,
    pub log: PathBuf,
    process: Process,
    stop_signal: Signal,
}

enum Process {
    Child(Child),
    /// A container's main process (host pid namespace).
    Container(u32),
}

impl Server {
    /// Starts `spec` in the testbed's server host; returns once it accepts
    /// connections from the client host, or fails with the log tail.
    pub fn start(tb: &Testbed, spec: &ServerSpec) -> Result<Server> {
        if let Some(d) = tb.docker_path() {
            return Self::adopt(tb, spec, d);
        }
        Self::start_in(tb, &tb.server, &tb.client, spec)
    }

    /// Starts `spec` in `host` of the testbed (the proxy host of the
    /// [`PROXY`](crate::testbed::PROXY) topology, or its server); ready once
    /// it accepts connections from `ready_from` (the host whose connections
    /// it serves: the proxy for an upstream server).
    pub fn start_in(tb: &Testbed, host: &Host, ready_from: &Host, spec: &ServerSpec) -> Result<Server> {
        let logs = tb.run_dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| Error::io(format!("creating {}", logs.display()), e))?;
        let log = logs.join(format!("{}-{}.log", spec.name, tb.tag));
        let out = File::create(&log).map_err(|e| Error::io(format!("creating {}", log.display()), e))?;
        let err = out.try_clone().map_err(|e| Error::io("duplicating a log handle", e))?;
        let child = host
            .command_as(&spec.program, &tb.tag, spec.user)?
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| Error::io(format!("starting {} ({})", spec.name, spec.program.display()), e))?;
        let mut server = Server { name: spec.name.clone(), addr: spec.addr, log, process: Process::Child(child), stop_signal: spec.stop_signal };
        let started = Instant::now();
        let deadline = started + spec.ready_within;
        loop {
            if let Process::Child(child) = &mut server.process {
                if let Some(status) = child.try_wait().map_err(|e| Error::io("checking a server", e))? {
                    return Err(server.not_ready(started, &format!(" exited with {status};")));
                }
            }
            let logged = spec.ready_log.as_ref().is_none_or(|l| std::fs::read_to_string(&server.log).is_ok_and(|t| t.contains(l.as_str())));
            if logged && connects_from(ready_from, spec.addr)? {
                note_start(&spec.name, started.elapsed());
                return Ok(server);
            }
            if Instant::now() >= deadline {
                return Err(server.not_ready(started, ""));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The docker testbed's server: the testbed's container, checked
    /// against what the case needs, ready once it accepts connections from
    /// the client host through the router.
    fn adopt(tb: &Testbed, spec: &ServerSpec, d: &DockerPath) -> Result<Server> {
        let c = &d.container;
        let check = spec.container.as_ref().ok_or_else(|| {
            Error::Other(format!("server {} has no service in docker-compose.yml: this case runs on the netns testbed only", spec.name))
        })?;
        if check.service != c.service {
            return Err(Error::Other(format!("server {} is service {}, but this testbed holds {} ({})", spec.name, check.service, c.service, c.name)));
        }
        check_command(check, &c.name, &c.command)?;
        for (inside, fixture) in &check.files {
            let there = PathBuf::from(format!("/proc/{}/root{inside}", c.pid));
            let a = std::fs::read(&there).map_err(|e| Error::io(format!("reading {inside} in container {}", c.name), e))?;
            let b = std::fs::read(fixture).map_err(|e| Error::io(format!("reading {}", fixture.display()), e))?;
            if a != b {
                return Err(Error::Other(format!(
                    "container {}'s {inside} differs from {}: the case's expectation is computed from the fixture (docker-compose.yml mounts it; recreate the container)",
                    c.name,
                    fixture.display()
                )));
            }
        }
        let log = c.log.clone().unwrap_or_else(|| PathBuf::from(format!("(docker logs {})", c.name)));
        let server = Server { name: spec.name.clone(), addr: spec.addr, log, process: Process::Container(c.pid), stop_signal: spec.stop_signal };
        let started = Instant::now();
        let deadline = started + spec.ready_within;
        while !connects_from(&tb.client, spec.addr)? {
            if Instant::now() >= deadline {
                return Err(server.not_ready(started, " (through the router on the compose bridge);"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    fn not_ready(&self, started: Instant, how: &str) -> Error {
        Error::ServerNotReady {
            name: self.name.clone(),
            addr: self.addr.to_string(),
            waited_ms: started.elapsed().as_millis(),
            log: self.log.display().to_string(),
            tail: format!("{how} log tail:\n{}", log_tail(&self.log, 15)),
        }
    }

    pub fn pid(&self) -> u32 {
        match &self.process {
            Process::Child(c) => c.id(),
            Process::Container(pid) => *pid,
        }
    }

    /// Whether this is an adopted container's process.
    pub fn is_container(&self) -> bool {
        matches!(self.process, Process::Container(_))
    }

    /// Whether the process is still running (not exited, not killed).
    pub fn alive(&mut self) -> bool {
        match &mut self.process {
            Process::Child(c) => matches!(c.try_wait(), Ok(None)),
            Process::Container(pid) => std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| !s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z'))),
        }
    }

    /// Stops it with `signal` first (e.g. SIGINT for PostgreSQL's fast
    /// shutdown), then as on drop. An adopted container is left running.
    pub fn stop_with(mut self, signal: Signal) {
        if !self.is_container() && self.alive() {
            let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGCONT);
            let _ = kill(Pid::from_raw(self.pid() as i32), signal);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && self.alive() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// The last lines of this server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let stop_signal = self.stop_signal;
        let child = match &mut self.process {
            Process::Child(c) => c,
            Process::Container(pid) => {
                // Compose owns it: only undo a freeze.
                if self_alive_pid(*pid) {
                    let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGCONT);
                }
                return;
            }
        };
        // Already reaped: its pid may belong to someone else by now.
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGCONT);
        let _ = kill(pid, stop_signal);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn self_alive_pid(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether a TCP connect from `host` to `addr` succeeds within 200 ms.
fn connects_from(host: &Host, addr: SocketAddrV4) -> Result<bool> {
    host.run(move || std::net::TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200)).is_ok())
}

/// A server program's version as it prints it: the first word of
/// `program --version`'s output that starts with `prefix`, without it
/// (`unknown` if none does).
pub fn version_of(program: &std::path::Path, prefix: &str) -> String {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().find_map(|w| w.strip_prefix(prefix).map(str::to_string)))
        .unwrap_or_else(|| "unknown".into())
}

/// The last `lines` lines of a file (empty if unreadable).
pub fn log_tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].iter().map(|l| format!("  | {l}")).collect::<Vec<_>>().join("\n")
}

/// Whether container `name`'s `command` runs what `check` asks for: its
/// arguments contiguous and in order, none of its `without` arguments.
fn check_command(check: &ContainerCheck, name: &str, command: &[String]) -> Result<()> {
    if !check.args.is_empty() && !command.windows(check.args.len()).any(|w| w == check.args.as_slice()) {
        return Err(Error::Other(format!(
            "container {name} runs `{}`, but the case's expectation needs `{}` (the settings of fixtures/, as docker-compose.yml passes them)",
            command.join(" "),
            check.args.join(" ")
        )));
    }
    if let Some(extra) = check.without.iter().find(|a| command.contains(a)) {
        return Err(Error::Other(format!(
            "container {name} runs `{}`, but the case's expectation needs `{extra}` left at its default",
            command.join(" ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn a_container_must_run_the_arguments_and_none_of_the_absent_ones() {
        let keepalive = ContainerCheck { service: "g".into(), args: words("--keepalive-time 1500ms"), ..Default::default() };
        let defaults = ContainerCheck { service: "g".into(), args: words("serve grpc"), without: words("--keepalive-time"), ..Default::default() };
        let with = words("kaspec serve grpc --listen 0.0.0.0:50051 --keepalive-time 1500ms");
        let plain = words("kaspec serve grpc --listen 0.0.0.0:50051");
        assert!(check_command(&keepalive, "c", &with).is_ok());
        assert!(check_command(&keepalive, "c", &plain).unwrap_err().to_string().contains("needs `--keepalive-time 1500ms`"));
        assert!(check_command(&keepalive, "c", &words("kaspec serve grpc --keepalive-time 2s")).is_err());
        assert!(check_command(&defaults, "c", &plain).is_ok());
        assert!(check_command(&defaults, "c", &with).unwrap_err().to_string().contains("`--keepalive-time` left at its default"));
    }
}
