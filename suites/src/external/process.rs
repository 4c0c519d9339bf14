//! The external client's process in the client host: started with the run
//! tag in its environment (`kaspec clean` finds it) and SIGKILL on
//! kaspec's death, in a process group of its own (a wrapper script's
//! children are stopped and killed with it), killed and reaped on drop; its
//! stdout lines timestamped on arrival, its stderr in the run's logs.

use std::io::{BufRead, BufReader};
use std::net::SocketAddrV4;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kaspec_harness::observe::{tcp_state_name, TcpSocket};
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
        // Its own process group: `stall` and `crash` signal the whole
        // program, however many processes it is.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
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

    /// `client-stall` for a program kaspec cannot reach into: SIGSTOP to its
    /// process group. Nothing of the program runs any more (a library's
    /// background heartbeat thread neither), its kernel still acknowledges
    /// data and answers keep-alive probes.
    pub fn stall(&self) -> Result<()> {
        self.signal(libc::SIGSTOP)
            .map_err(|e| Error::io("stopping the client (SIGSTOP)", e))
    }

    /// `client-crash`, after the path was blackholed: SIGKILL to its process
    /// group; its kernel's FIN dies at the router.
    pub fn crash(&self) -> Result<()> {
        self.signal(libc::SIGKILL)
            .map_err(|e| Error::io("killing the client (SIGKILL)", e))
    }

    fn signal(&self, sig: libc::c_int) -> std::io::Result<()> {
        // The group's id is the child's pid (process_group(0)).
        match unsafe { libc::kill(-(self.child.id() as libc::pid_t), sig) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
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

    /// Waits for its connection to `server`: a socket of its own (its
    /// process or a descendant holds it) ESTABLISHED towards `server`. Other
    /// clients in the same host (a shared testbed) are never taken for it.
    pub fn connected(&mut self, server: SocketAddrV4, within: Duration) -> Result<SocketAddrV4> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self
                .sockets()
                .into_iter()
                .find(|s| s.remote == server && s.state == 1)
            {
                return Ok(s.local);
            }
            if let Some(why) = self.exited() {
                return Err(Error::Other(format!(
                    "the client did not connect to {server}: {why}"
                )));
            }
            if Instant::now() >= deadline {
                return Err(Error::Other(format!(
                    "the client did not connect to {server} within {} ms (its stderr: {})",
                    within.as_millis(),
                    self.log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Its connections to `server` other than `old` (a reconnect), as
    /// `local state`.
    pub fn others(&self, server: SocketAddrV4, old: SocketAddrV4) -> Vec<String> {
        self.sockets()
            .into_iter()
            .filter(|s| s.remote == server && s.local != old)
            .map(|s| format!("{} {}", s.local, tcp_state_name(s.state)))
            .collect()
    }

    /// The TCP sockets its process tree holds: the socket inodes of its
    /// fds (/proc/PID/fd) looked up in its namespace's table
    /// (/proc/PID/net/tcp, which names each socket's inode).
    fn sockets(&self) -> Vec<TcpSocket> {
        let root = self.child.id();
        let mut inodes = std::collections::HashSet::new();
        let mut pids = vec![root];
        while let Some(pid) = pids.pop() {
            if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
                for fd in fds.flatten() {
                    let link = std::fs::read_link(fd.path()).unwrap_or_default();
                    let link = link.to_string_lossy();
                    if let Some(n) = link
                        .strip_prefix("socket:[")
                        .and_then(|l| l.strip_suffix(']'))
                    {
                        inodes.insert(n.to_string());
                    }
                }
            }
            // Its children, thread by thread (procfs: task/TID/children).
            if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
                for t in tasks.flatten() {
                    let kids =
                        std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                    pids.extend(
                        kids.split_whitespace()
                            .filter_map(|k| k.parse::<u32>().ok()),
                    );
                }
            }
        }
        // IPv4 sockets, and IPv6 ones with IPv4-mapped addresses: a client
        // on a dual-stack socket (grpc-core's) is in tcp6.
        let table = ["tcp", "tcp6"]
            .map(|t| std::fs::read_to_string(format!("/proc/{root}/net/{t}")).unwrap_or_default());
        table
            .iter()
            .flat_map(|t| t.lines().skip(1))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let (local, remote, state, inode) = (f.get(1)?, f.get(2)?, f.get(3)?, f.get(9)?);
                inodes.contains(*inode).then_some(())?;
                Some(TcpSocket {
                    local: proc_addr(local)?,
                    remote: proc_addr(remote)?,
                    state: u8::from_str_radix(state, 16).ok()?,
                })
            })
            .collect()
    }
}

/// An address of /proc/net/tcp: `0100007F:1F90` (the IPv4 address as the
/// kernel's __be32 printed as a native-endian number, the port in hex), or
/// of /proc/net/tcp6 (four such words) when it is IPv4-mapped.
fn proc_addr(s: &str) -> Option<SocketAddrV4> {
    let (ip, port) = s.split_once(':')?;
    let word = |w: &str| Some(u32::from_str_radix(w, 16).ok()?.to_ne_bytes());
    let ip = match ip.len() {
        8 => std::net::Ipv4Addr::from(word(ip)?),
        32 => {
            let mut b = [0u8; 16];
            for (i, c) in b.chunks_mut(4).enumerate() {
                c.copy_from_slice(&word(ip.get(8 * i..8 * i + 8)?)?);
            }
            std::net::Ipv6Addr::from(b).to_ipv4_mapped()?
        }
        _ => return None,
    };
    Some(SocketAddrV4::new(ip, u16::from_str_radix(port, 16).ok()?))
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.signal(libc::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn proc_net_tcp_addresses() {
        let a = super::proc_addr("0200A8C0:0E8B").unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(a.to_string(), "192.168.0.2:3723");
        }
        assert!(super::proc_addr("zz:1").is_none());
        // tcp6: ::ffff:192.168.0.2 (a dual-stack socket), and a real IPv6 one.
        let m = super::proc_addr("0000000000000000FFFF00000200A8C0:0E8B").unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(m.to_string(), "192.168.0.2:3723");
        }
        assert!(super::proc_addr("B80D0120000000000000000001000000:0E8B").is_none());
    }
}
