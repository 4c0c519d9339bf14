//! The clients under test in the client host: Debian's `ssh` (OpenSSH 9.2)
//! as a child process — its exit, with its own last message, timestamped
//! by kaspec — and russh's client on a thread (its `disconnected`
//! callback). Both log in to the case's server with the scratch key and
//! stay idle (no channel, `ssh -N`) until they end or the case stops them.

use super::*;

/// How a client ended, if it did before the case stopped it.
#[derive(Default)]
pub(crate) struct ClientEnd {
    pub(crate) ended_at: Option<Instant>,
    pub(crate) error: Option<String>,
    pub(crate) events: Vec<(Instant, String)>,
}

/// What a started client hands the case.
pub(crate) struct Started {
    pub(crate) local: SocketAddrV4,
    /// The client's process (ssh) for `freeze`; kaspec's own for russh.
    pub(crate) pid: Option<u32>,
    done: Arc<std::sync::atomic::AtomicBool>,
    stop: Box<dyn FnOnce() -> Result<ClientEnd> + Send>,
}

impl Started {
    /// Whether the client has ended (ssh exited, russh's session closed).
    pub(crate) fn is_done(&self) -> bool {
        self.done.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops the client if it still runs and returns how it ended.
    pub(crate) fn stop(self) -> Result<ClientEnd> {
        (self.stop)()
    }
}

/// The OpenSSH client's options: the `ssh.*` knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenSshOptions {
    pub server_alive_interval: u64,
    pub server_alive_count_max: u64,
    pub tcp_keepalive: bool,
    pub connect_timeout: u64,
}

impl OpenSshOptions {
    pub fn of(c: &crate::config::SshConfig) -> OpenSshOptions {
        OpenSshOptions {
            server_alive_interval: c.server_alive_interval.as_secs(),
            server_alive_count_max: c.server_alive_count_max,
            tcp_keepalive: c.tcp_keepalive,
            connect_timeout: c.connect_timeout.as_secs(),
        }
    }

    /// A silent client: no alive messages, no TCP keep-alive.
    pub const SILENT: OpenSshOptions = OpenSshOptions { server_alive_interval: 0, server_alive_count_max: 3, tcp_keepalive: false, connect_timeout: 0 };

    fn args(&self) -> Vec<String> {
        let mut v = vec![
            format!("ServerAliveInterval={}", self.server_alive_interval),
            format!("ServerAliveCountMax={}", self.server_alive_count_max),
            format!("TCPKeepAlive={}", if self.tcp_keepalive { "yes" } else { "no" }),
        ];
        if self.connect_timeout > 0 {
            v.push(format!("ConnectTimeout={}", self.connect_timeout));
        }
        v.into_iter().flat_map(|o| ["-o".to_string(), o]).collect()
    }

    pub(crate) fn report(&self) -> Vec<(String, String)> {
        vec![
            ("ssh.ServerAliveInterval".into(), format!("{}s", self.server_alive_interval)),
            ("ssh.ServerAliveCountMax".into(), self.server_alive_count_max.to_string()),
            ("ssh.TCPKeepAlive".into(), if self.tcp_keepalive { "yes" } else { "no" }.into()),
        ]
    }
}

/// `ssh -N` to the server, logged in with the scratch key; ready once it
/// says "Authenticated to" and `settle` has passed. LogLevel DEBUG3: its
/// "send packet: type N" / "receive packet: type N" lines (packet.c), each
/// timestamped here as it arrives, place its reads and alive requests on
/// the clock (see [`ssh_anchor`]).
pub(crate) fn start_openssh(tb: &Testbed, scratch: &Scratch, server: SocketAddrV4, o: &OpenSshOptions, settle: Duration) -> Result<Started> {
    let program = require_program(SSH, "openssh-client")?;
    let mut cmd = tb.client.command(&program, &tb.tag)?;
    let known = scratch.dir.join("known_hosts");
    cmd.args(["-F", "none", "-N", "-p", &server.port().to_string(), "-i"])
        .arg(scratch.client_key())
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "GlobalKnownHostsFile=/dev/null"])
        .args(["-o", &format!("UserKnownHostsFile={}", known.display()), "-o", "LogLevel=DEBUG3", "-o", "ControlMaster=no", "-o", "ControlPath=none"])
        .args(o.args())
        .arg(format!("root@{}", server.ip()))
        .env_remove("SSH_AUTH_SOCK")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let (pid_tx, pid_rx) = mpsc::channel::<std::result::Result<u32, String>>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let done: Arc<std::sync::atomic::AtomicBool> = Arc::default();
    let exited = done.clone();
    // The thread that spawns ssh also waits for it: ssh gets SIGKILL if that
    // thread dies (PR_SET_PDEATHSIG), so it lives as long as the client.
    let thread = std::thread::Builder::new()
        .name("kaspec-ssh-client".into())
        .spawn(move || -> ClientEnd {
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    let _ = pid_tx.send(Err(format!("starting {}: {e}", SSH)));
                    return ClientEnd::default();
                }
            };
            let _ = pid_tx.send(Ok(child.id()));
            let mut events = Vec::new();
            let mut ready = Some(ready_tx);
            if let Some(err) = child.stderr.take() {
                use std::io::BufRead;
                for line in std::io::BufReader::new(err).lines().map_while(|l| l.ok()) {
                    if line.starts_with("Authenticated to") {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    events.push((Instant::now(), format!("ssh: {line}")));
                }
            }
            let status = child.wait();
            let at = Instant::now();
            exited.store(true, std::sync::atomic::Ordering::SeqCst);
            // Its own last word (not the debug trace).
            let last = events.iter().rev().map(|(_, l)| l.as_str()).find(|l| !l.starts_with("ssh: debug") && !l.contains("Transferred") && !l.contains("Bytes per second")).unwrap_or("").to_string();
            let error = Some(format!("{} ({})", last.trim_start_matches("ssh: "), status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())));
            ClientEnd { ended_at: Some(at), error, events }
        })
        .map_err(|e| Error::io("starting the ssh client thread", e))?;
    let pid = match pid_rx.recv() {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return Err(Error::Other(e)),
        Err(_) => return Err(Error::Other("the ssh client thread ended at once".into())),
    };
    let stop = move || -> Result<ClientEnd> {
        let stopped = Instant::now();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGCONT);
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        let mut end = thread.join().map_err(|_| Error::Other("the ssh client thread panicked".into()))?;
        if end.ended_at.is_some_and(|t| t >= stopped) {
            // Killed by kaspec at the end of the case: no detection.
            end.ended_at = None;
            end.error = None;
        }
        Ok(end)
    };
    if ready_rx.recv_timeout(Duration::from_secs(15)).is_err() {
        let end = stop()?;
        let said: Vec<String> = end.events.iter().rev().take(5).rev().map(|(_, l)| l.clone()).collect();
        return Err(Error::Other(format!("ssh did not log in to {server} within 15 s: {}", said.join(" | "))));
    }
    std::thread::sleep(settle);
    let local = tb.client.run(move || kaspec_harness::observe::local_end_towards(server))??;
    Ok(Started { local, pid: Some(pid), done, stop: Box::new(stop) })
}

/// russh's client settings for a case.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RusshClient {
    pub keepalive_interval: Option<Duration>,
    pub keepalive_max: u64,
    pub inactivity_timeout: Option<Duration>,
}

impl RusshClient {
    pub(crate) fn report(&self) -> Vec<(String, String)> {
        let d = |v: Option<Duration>| v.map(|d| format!("{}ms", ms_of(d))).unwrap_or_else(|| "None".into());
        vec![
            ("ssh.keepalive_interval".into(), d(self.keepalive_interval)),
            ("ssh.keepalive_max".into(), self.keepalive_max.to_string()),
            ("ssh.inactivity_timeout".into(), d(self.inactivity_timeout)),
        ]
    }
}

struct Recorder {
    events: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl russh::client::Handler for Recorder {
    type Error = russh::Error;

    async fn check_server_key(&mut self, _key: &russh::keys::PublicKeyOrCertificate) -> std::result::Result<bool, Self::Error> {
        Ok(true)
    }

    async fn disconnected(&mut self, reason: russh::client::DisconnectReason<Self::Error>) -> std::result::Result<(), Self::Error> {
        let what = match reason {
            russh::client::DisconnectReason::ReceivedDisconnect(i) => format!("received disconnect: {i:?}"),
            russh::client::DisconnectReason::Error(e) => format!("session ended: {e}"),
        };
        self.events.lock().expect("events").push((Instant::now(), what));
        Ok(())
    }
}

/// russh's client, logged in as root with the scratch key, idle.
pub(crate) fn start_russh(tb: &Testbed, scratch: &Scratch, server: SocketAddrV4, c: RusshClient, settle: Duration) -> Result<Started> {
    let key_path = scratch.client_key();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let done: Arc<std::sync::atomic::AtomicBool> = Arc::default();
    let closed = done.clone();
    let (thread, ready) = drive::client::start_or_fail(&tb.client, "kaspec-russh-client", "russh client", settle + Duration::from_secs(15), format!("russh client to {server}"), move |ready| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let events: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let ev = events.clone();
        let seen = events.clone();
        let kept = rt.block_on(async move {
            let events = seen;
            let config = russh::client::Config { keepalive_interval: c.keepalive_interval, keepalive_max: c.keepalive_max as usize, inactivity_timeout: c.inactivity_timeout, ..Default::default() };
            let fail = |e: String| {
                let _ = ready.send(Err(e));
                None
            };
            let key = match russh::keys::load_secret_key(&key_path, None) {
                Ok(k) => k,
                Err(e) => return fail(format!("loading {}: {e}", key_path.display())),
            };
            let mut handle = match russh::client::connect(Arc::new(config), server, Recorder { events: ev }).await {
                Ok(h) => h,
                Err(e) => return fail(format!("russh could not connect to {server}: {e}")),
            };
            match handle.authenticate_publickey("root", russh::keys::PrivateKeyWithHashAlg::new(Arc::new(key), None)).await {
                Ok(r) if r.success() => {}
                Ok(r) => return fail(format!("russh: publickey login refused: {r:?}")),
                Err(e) => return fail(format!("russh: publickey login: {e}")),
            }
            tokio::time::sleep(settle).await;
            match kaspec_harness::observe::local_end_towards(server) {
                Ok(l) => {
                    let _ = ready.send(Ok(l));
                }
                Err(e) => return fail(format!("the client's connection to {server}: {e}")),
            }
            // Idle: the session task runs on this runtime until stopped.
            loop {
                if stop_rx.try_recv().is_ok() {
                    break;
                }
                if handle.is_closed() || !events.lock().expect("events").is_empty() {
                    closed.store(true, std::sync::atomic::Ordering::SeqCst);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Some((handle, stop_rx))
        });
        // After the session ended (or was stopped), until the case stops it.
        if let Some((h, stop_rx)) = kept {
            let _ = stop_rx.recv();
            drop(h);
        }
        drop(rt);
        let events = std::mem::take(&mut *events.lock().expect("events"));
        ClientEnd { ended_at: events.first().map(|(t, _)| *t), error: events.first().map(|(_, e)| format!("russh: {e}")), events }
    })?;
    let local = ready;
    let stop = move || -> Result<ClientEnd> {
        let at = Instant::now();
        let _ = stop_tx.send(());
        let _ = stop_tx.send(());
        let mut end = thread.join()?;
        if end.ended_at.is_some_and(|t| t >= at) {
            end.ended_at = None;
            end.error = None;
        }
        Ok(end)
    };
    Ok(Started { local, pid: None, done, stop: Box::new(stop) })
}

/// Where ssh's last read before its end falls on CLOCK_BOOTTIME, from its
/// DEBUG3 trace: a read that answers its own alive request (`send packet:
/// type 80`, SSH2_MSG_GLOBAL_REQUEST, at most 100 ms before) came after that
/// request, which ssh sent at a whole second (its check): ⌊L⌋ is that
/// second, exactly. Any other read: the line's arrival, less up to 2 ms of
/// logging and pipe delay.
pub(crate) fn ssh_anchor(events: &[(Instant, String)], before: Instant) -> Option<Anchor> {
    let recv = events.iter().rev().find(|(t, l)| *t <= before && l.contains("receive packet: type"))?;
    let sent = events.iter().rev().find(|(t, l)| *t <= recv.0 && l.contains("send packet: type 80"));
    match sent {
        Some((ts, _)) if recv.0 - *ts <= Duration::from_millis(100) => Some(Anchor::Second(boot_secs(*ts).floor())),
        _ => {
            let b = boot_secs(recv.0);
            Some(Anchor::Range(b - 0.002, b))
        }
    }
}
