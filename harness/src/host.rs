//! A host: one isolated network stack (a network namespace, or a
//! container's namespace attached under a name) with an address, that can
//! run threads and processes inside it.
//!
//! A leaf: it knows nothing of testbeds, faults or observers (Mininet's
//! "nodes execute commands"), so every other module can build on it. Threads
//! enter the namespace with setns(2), which moves only the calling thread;
//! processes enter it between fork and exec.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sched::{setns, CloneFlags};

use crate::cmd;
use crate::{Error, Result};

/// One isolated network stack with an address.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace name (`kaspec-TAG-ROLE`).
    pub ns: String,
    /// This host's address on its link.
    pub addr: Ipv4Addr,
}

impl Host {
    fn ns_file(&self) -> Result<File> {
        File::open(format!("/run/netns/{}", self.ns)).map_err(|e| Error::io(format!("opening namespace {}", self.ns), e))
    }

    /// Moves the calling thread into this host's namespace. Sockets the thread
    /// opens afterwards, and threads it spawns, live there.
    pub fn enter(&self) -> Result<()> {
        let f = self.ns_file()?;
        setns(f.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::io(format!("entering namespace {}", self.ns), e.into()))
    }

    /// Runs `f` on a new thread that lives in this host's namespace. Returns
    /// once the thread is inside (or failed to get there: then `f` never runs).
    pub fn spawn_thread<F, T>(&self, name: &str, f: F) -> Result<NsThread<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let host = self.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || match host.enter() {
                Ok(()) => {
                    let _ = tx.send(Ok(()));
                    Some(f())
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    None
                }
            })
            .map_err(|e| Error::io("spawning a namespace thread", e))?;
        rx.recv().map_err(|_| Error::Other(format!("thread for {} died before entering it", self.ns)))??;
        Ok(NsThread { handle, ns: self.ns.clone() })
    }

    /// Runs `f` to completion on a thread inside this namespace.
    pub fn run<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_thread("kaspec-ns", f)?.join()
    }

    /// A command that will execute inside this namespace. The child gets
    /// SIGKILL if the thread that spawned it dies (PR_SET_PDEATHSIG), so a
    /// killed kaspec does not leave servers behind.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>, tag: &str) -> Result<Command> {
        self.command_as(program, tag, None)
    }

    /// Like [`command`](Self::command), run as `user` (uid, gid) when given:
    /// the namespace is entered first (that needs root), then the
    /// credentials are dropped.
    pub fn command_as(&self, program: impl AsRef<std::ffi::OsStr>, tag: &str, user: Option<(u32, u32)>) -> Result<Command> {
        let f = self.ns_file()?;
        let parent = std::process::id() as libc::pid_t;
        let mut c = Command::new(program);
        // Inherited by whatever it forks: `kaspec clean` finds them all by it.
        c.env(crate::cleanup::TAG_VAR, tag);
        unsafe {
            c.pre_exec(move || {
                setns(f.as_fd(), CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
                if let Some((uid, gid)) = user {
                    if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // kaspec died between fork and prctl: do not start orphaned.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("kaspec exited while starting the server"));
                }
                Ok(())
            });
        }
        Ok(c)
    }

    /// `ip -n NS args...`
    pub(crate) fn ip(&self, context: &str, args: &[&str]) -> Result<()> {
        let mut full = vec!["-n", self.ns.as_str()];
        full.extend_from_slice(args);
        cmd::run(context, "ip", &full, None).map(|_| ())
    }

    /// `ip netns exec NS program args...`: a system tool run inside this
    /// namespace (set-up only, see [`cmd`]).
    pub(crate) fn exec(&self, context: &str, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let mut full = vec!["netns", "exec", self.ns.as_str(), program];
        full.extend_from_slice(args);
        cmd::run(context, "ip", &full, stdin)
    }
}

/// A thread running inside a host's namespace.
pub struct NsThread<T> {
    handle: std::thread::JoinHandle<Option<T>>,
    ns: String,
}

impl<T> NsThread<T> {
    pub fn join(self) -> Result<T> {
        match self.handle.join() {
            Ok(Some(v)) => Ok(v),
            _ => Err(Error::Other(format!("a thread in namespace {} panicked", self.ns))),
        }
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}
