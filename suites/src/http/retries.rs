//! Which requests hyper-util's pool retried. hyper-util 0.1.21
//! client/legacy/client.rs `send_request` (lines 248–271) loops on
//! `TrySendError::Retryable` — a request the reused connection gave back
//! unsent — and emits `trace!("unstarted request canceled, trying again
//! (reason={:?})", error)` (line 264) before each new try; nothing else
//! tells a caller. A [`Counter`] installed as the client thread's tracing
//! subscriber counts those events; both HTTP clients run their runtime on
//! one thread (current-thread tokio), so every event of their requests
//! reaches it. The server cannot see such a retry: the first try was never
//! written to the wire.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata};

/// The event's message (hyper-util client/legacy/client.rs:264).
pub const RETRY_EVENT: &str = "unstarted request canceled, trying again";

/// Counts hyper-util's retries of unsent requests.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Installs a counter as this thread's subscriber until the guard drops.
    pub fn install() -> (Counter, tracing::subscriber::DefaultGuard) {
        let c = Counter::default();
        let guard = tracing::subscriber::set_default(c.clone());
        (c, guard)
    }

    /// Retries seen so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct Message(bool);

impl Visit for Message {
    fn record_debug(&mut self, f: &Field, v: &dyn Debug) {
        if f.name() == "message" && format!("{v:?}").contains(RETRY_EVENT) {
            self.0 = true;
        }
    }
}

impl tracing::Subscriber for Counter {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target().starts_with("hyper_util::client::legacy") && m.is_event()
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut m = Message(false);
        e.record(&mut m);
        if m.0 {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_hyper_utils_retry_event() {
        let (c, _g) = Counter::install();
        tracing::trace!(target: "hyper_util::client::legacy::client", "unstarted request canceled, trying again (reason={:?})", "x");
        tracing::trace!(target: "hyper_util::client::legacy::client", "something else");
        tracing::trace!(target: "other", "unstarted request canceled, trying again");
        assert_eq!(c.count(), 1);
    }
}
