//! A stateful middlebox on one level of the proxy topology (`--network`'s
//! `middlebox_idle_timeout` and `middlebox_at`, [`crate::network`]): that
//! level's router forgets a TCP flow idle for M and drops its later
//! packets (harness `Testbed::forget_idle_flows`: a conntrack timeout
//! policy, strict conntrack, INVALID dropped), as a cloud load balancer or
//! a firewall does when its idle timeout passes.
//!
//! Which cases it changes: only the reuse race (case 5(c)) lets a pooled
//! connection idle past M (at least 1 s: conntrack takes whole seconds):
//! cases 5(a) and 5(b) cut the path at most ~300 ms after the last
//! exchange, and a cut path is already silent, so their windows stand.
//!
//! In the race, the middlebox matters when it forgets the pooled flow
//! before that flow's own end: the upstream's close at S or nginx's pool
//! expiry (upstream `keepalive_timeout`), whichever is first (upstream
//! level), or the proxy's client-side keep-alive (client level; reqwest's
//! pool keeps its connection for the whole case). A request sent on
//! the forgotten flow is dropped: through the upstream level the proxy
//! waits its read timeout and answers 504 (nginx ngx_http_upstream.c:2367 →
//! FT_TIMEOUT, no retry for a timeout on a cached connection (4310–4312
//! retry only FT_ERROR) → 504 at :4319; HAProxy `timeout server` → 504);
//! through the client level reqwest's own timeout ends it.

use kaspec_harness::testbed::Testbed;
use kaspec_harness::Result;

use super::client::Reply;
use crate::model::{linux, ms_of};
use crate::network::{Level, Middlebox};

/// Builds the middlebox on its level's router, if the network has one.
pub fn install(tb: &Testbed, m: Option<Middlebox>) -> Result<()> {
    match m {
        Some(m) => tb.forget_idle_flows(m.router(), m.idle),
        None => Ok(()),
    }
}

/// The middlebox's effect on the race: shots sent at an idle time (ms
/// since the response that pooled the connection) above `hi` meet a
/// forgotten flow; below `lo` the flow is alive; between, either.
#[derive(Debug, Clone, Copy)]
pub struct Effect {
    pub m: Middlebox,
    pub lo: i64,
    pub hi: i64,
}

/// ± around M: conntrack's timeout is kept in jiffies (`nf_ct_is_expired`
/// compares `ct->timeout` with `nfct_time_stamp`, the jiffies clock): ±1
/// jiffy; the race's anchor (the response reaching reqwest) is up to 1 ms
/// after the flow's last packet: +1.
pub fn margin_ms() -> i64 {
    linux::jiffy_ms() as i64 + 1
}

/// The effect on a race whose upstream closes at `s_ms`, whose proxy drops
/// an idle pooled upstream connection at `upstream_pool_ms` (nginx; None:
/// not before the server closes it) and closes an idle client connection
/// at `client_keepalive_ms`: None when the flow ends before the middlebox
/// would forget it.
pub fn effect(
    m: Option<Middlebox>,
    s_ms: i64,
    upstream_pool_ms: Option<i64>,
    client_keepalive_ms: i64,
) -> Option<Effect> {
    let m = m?;
    let at = ms_of(m.idle) as i64;
    let own_end = match m.at {
        Level::Upstream => upstream_pool_ms.map_or(s_ms, |k| k.min(s_ms)),
        Level::Client => client_keepalive_ms,
    };
    let margin = margin_ms();
    (at + margin < own_end).then_some(Effect {
        m,
        lo: at - margin,
        hi: at + margin,
    })
}

impl Effect {
    /// What a request on the forgotten flow gets.
    pub fn expected(&self) -> &'static str {
        match self.m.at {
            Level::Upstream => "504 from the proxy at its read timeout",
            Level::Client => "reqwest's timeout (the request never reaches the proxy)",
        }
    }

    /// Whether `r` ended as a request on the forgotten flow must.
    pub fn failed_as_expected(&self, r: &Reply) -> bool {
        match self.m.at {
            Level::Upstream => r.status() == Some(504),
            Level::Client => r
                .outcome
                .as_ref()
                .is_err_and(|e| e.contains("timed out") || e.contains("timeout")),
        }
    }

    pub fn formula(&self) -> String {
        format!(
            "the {} middlebox forgets a flow idle M = {} ms, before the flow's own end: a request sent at an idle time above M + {} ms = {} ms gets {}; below {} ms the flow is alive",
            self.m.level_name(),
            ms_of(self.m.idle),
            margin_ms(),
            self.hi,
            self.expected(),
            self.lo
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_middlebox_matters_only_when_it_forgets_before_the_flows_end() {
        let up = Middlebox {
            idle: Duration::from_secs(1),
            at: Level::Upstream,
        };
        let e = effect(Some(up), 1500, None, 1500).expect("M < S");
        assert!(e.lo < 1000 && e.hi > 1000 && e.hi < 1010);
        assert!(effect(Some(up), 1500, Some(10_000), 1500).is_some());
        assert!(
            effect(Some(up), 1500, Some(900), 1500).is_none(),
            "nginx's pool expires first"
        );
        assert!(
            effect(Some(up), 1000, None, 1500).is_none(),
            "M = S: the upstream closes first or with it"
        );
        assert!(effect(Some(up), 500, None, 1500).is_none());
        let client = Middlebox {
            at: Level::Client,
            ..up
        };
        assert!(effect(Some(client), 5000, None, 1500).is_some());
        assert!(effect(Some(client), 5000, None, 900).is_none());
        assert!(effect(None, 1500, None, 1500).is_none());
    }
}
