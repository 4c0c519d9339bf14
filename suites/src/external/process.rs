//! The external client's process in the client host: started with the run
//! tag in its environment (`kaspec clean` finds it) and SIGKILL on
//! kaspec's death, killed and reaped on drop; its stdout lines timestamped
//! on arrival, its stderr in the run's logs.

use std::io::{BufRead, BufReader};
use std::net::SocketAddrV4;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kaspec_harness::observe::SockDiag;
use kaspec_harness::testbed::Testbed;
use kaspec_harness::{Error, Result};

/// A running external client.
pub struct Client {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
    pub log: std::path::PathBuf,
}

impl Client {
    /// Starts `argv` in `tb`'s client host.
    pub fn start(tb: &Testbed, name: &str, argv: &[String]) -> Result<Client> {
        let logs = tb.run_dir.join("logs");
        std::fs::create_dir_all(&logs)
            .map_err(|e| Error::io(format!("creating {}", logs.display()), e))?;
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let log = logs.join(format!("client-{safe}-{}.log", tb.tag));
        let err = std::fs::File::create(&log)
            .map_err(|e| Error::io(format!("creating {}", log.display()), e))?;
        let mut cmd = tb.client.command(&argv[0], &tb.tag)?;
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err);
        let mut child = cmd.spawn().map_err(|e| {
            Error::Other(format!(
                "client {name}: cannot start `{}`: {e}",
                argv.join(" ")
            ))
        })?;
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name("kaspec-client-lines".into())
            .spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((Instant::now(), line.trim().to_string())).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::io("spawning the client's line reader", e))?;
        Ok(Client {
            child,
            lines,
            seen: Vec::new(),
            log,
        })
    }

    /// Every line so far, timestamped on arrival.
    pub fn lines(&mut self) -> &[(Instant, String)] {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        &self.seen
    }

    /// The first `detected` line at or after `since`.
    pub fn detected_since(&mut self, since: Instant) -> Option<(Instant, String)> {
        self.lines()
            .iter()
            .find(|(t, l)| *t >= since && (l == "detected" || l.starts_with("detected ")))
            .cloned()
    }

    /// Why it is not running any more, if it is not (with its log's tail).
    pub fn exited(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok().flatten()?;
        let tail = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Some(format!(
            "it exited ({status}); its stderr ends: {}",
            tail.join(" | ")
        ))
    }

    /// Waits for its connection to `server` (ESTABLISHED in the client host).
    pub fn connected(
        &mut self,
        tb: &Testbed,
        server: SocketAddrV4,
        within: Duration,
    ) -> Result<SocketAddrV4> {
        let deadline = Instant::now() + within;
        let (tx, rx) = mpsc::channel();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let finder = tb
            .client
            .spawn_thread("kaspec-client-find", move || -> Result<()> {
                let mut d = SockDiag::new()?;
                while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Some(s) = d
                        .dump_tcp()?
                        .into_iter()
                        .find(|s| s.remote == server && s.state == 1)
                    {
                        let _ = tx.send(s.local);
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(())
            })?;
        let found = loop {
            if let Ok(local) = rx.recv_timeout(Duration::from_millis(20)) {
                break Ok(local);
            }
            if let Some(why) = self.exited() {
                break Err(Error::Other(format!(
                    "the client did not connect to {server}: {why}"
                )));
            }
            if Instant::now() >= deadline || finder.is_finished() {
                break Err(Error::Other(format!(
                    "the client did not connect to {server} within {} ms (its stderr: {})",
                    within.as_millis(),
                    self.log.display()
                )));
            }
        };
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        finder.join()??;
        found
    }

    /// Connections to `server` other than `old` (a reconnect), as
    /// `local state`.
    pub fn others(tb: &Testbed, server: SocketAddrV4, old: SocketAddrV4) -> Result<Vec<String>> {
        tb.client.run(move || -> Result<Vec<String>> {
            Ok(SockDiag::new()?
                .dump_tcp()?
                .into_iter()
                .filter(|s| s.remote == server && s.local != old)
                .map(|s| {
                    format!(
                        "{} {}",
                        s.local,
                        kaspec_harness::observe::tcp_state_name(s.state)
                    )
                })
                .collect())
        })?
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
