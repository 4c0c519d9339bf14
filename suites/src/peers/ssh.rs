//! kaspec's SSH server (`kaspec serve ssh`): russh's server with its own
//! keep-alive (server::Config `keepalive_interval`, `keepalive_max`), the
//! host key the case generated, and any public key accepted (a throw-away
//! server on the testbed). No channel is needed: the client stays idle.

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

struct Accept;

impl russh::server::Handler for Accept {
    type Error = russh::Error;

    async fn auth_publickey(
        &mut self,
        _user: &str,
        _key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<russh::server::Auth, Self::Error> {
        Ok(russh::server::Auth::Accept)
    }
}

/// `timers`: how long the keep-alive's firings run before a session ends
/// for want of answers ((keepalive_max + 1) × keepalive_interval): the span
/// the logged wake-up lateness covers.
struct Factory {
    timers: Duration,
}

impl russh::server::Server for Factory {
    type Handler = Accept;

    fn new_client(&mut self, _peer: Option<std::net::SocketAddr>) -> Accept {
        Accept
    }

    fn handle_session_error(&mut self, error: russh::Error) {
        // The session's end, as russh reports it (the case reads this log).
        println!("session ended: {error}; {}", super::wake_note(self.timers));
    }
}

/// `--host-key new`: a fresh Ed25519 host key made at the start (the
/// docker testbed's kaspec-ssh container, which has no ssh-keygen).
pub const NEW_HOST_KEY: &str = "new";

/// An Ed25519 key from 32 bytes of /dev/urandom (ssh-key's
/// `Ed25519Keypair::from_seed`).
fn fresh_ed25519() -> std::io::Result<russh::keys::PrivateKey> {
    use std::io::Read as _;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    Ok(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed).into())
}

/// Serves SSH on `listen` with `host_key` (a file, or [`NEW_HOST_KEY`]) and
/// the keep-alive given.
pub fn serve(
    listen: SocketAddrV4,
    host_key: &str,
    keepalive_interval: Duration,
    keepalive_max: usize,
) -> std::io::Result<()> {
    let key = if host_key == NEW_HOST_KEY {
        fresh_ed25519()?
    } else {
        russh::keys::load_secret_key(host_key, None)
            .map_err(|e| std::io::Error::other(format!("host key {host_key}: {e}")))?
    };
    let config = russh::server::Config {
        keys: vec![key],
        keepalive_interval: Some(keepalive_interval),
        keepalive_max,
        inactivity_timeout: None,
        auth_rejection_time: Duration::from_millis(10),
        auth_rejection_time_initial: Some(Duration::ZERO),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        use russh::server::Server;
        println!("kaspec-ssh (russh) listening on {listen}, keepalive_interval {keepalive_interval:?}, keepalive_max {keepalive_max}");
        let timers = keepalive_interval * (keepalive_max as u32 + 1);
        Factory { timers }.run_on_address(Arc::new(config), listen).await
    })
}
