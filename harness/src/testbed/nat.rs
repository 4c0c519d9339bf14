//! The router as a real NAT: it masquerades the client towards the server,
//! and with an idle timeout it forgets established TCP flows idle that long
//! (a conntrack timeout policy on the router's flows). Its later packets are
//! then dropped as a real NAT drops them: conntrack's loose pick-up is off
//! (`nf_conntrack_tcp_loose=0`), so a mid-stream segment of a forgotten flow
//! is INVALID and the router does not answer it.

use std::time::Duration;

use super::Testbed;
use crate::Result;

impl Testbed {
    /// The router hides the client behind its own address towards the server.
    pub(super) fn masquerade(&self) -> String {
        format!(
            "table inet {tb} {{\n  chain nat-masquerade {{\n    type nat hook postrouting priority srcnat; oifname \"{rs}\" masquerade;\n  }}\n}}\n",
            tb = self.table,
            rs = super::link::router_if(&self.tag, 's')
        )
    }

    pub(super) fn build_nat(&self, idle: Duration) -> Result<()> {
        let secs = idle.as_secs().max(1);
        self.router.exec(
            "making the router's conntrack strict (no mid-stream pick-up)",
            "sysctl",
            &["-qw", "net.netfilter.nf_conntrack_tcp_loose=0"],
            None,
        )?;
        let t = &self.tag;
        self.router.nft(
            "setting up NAT on the router",
            &format!(
                "table inet {tb} {{\n\
                   ct timeout nat-idle {{\n    protocol tcp; l3proto ip;\n    policy = {{ established: {secs}, close_wait: {secs}, fin_wait: {secs}, last_ack: {secs} }};\n  }}\n\
                   chain nat-timeouts {{\n    type filter hook prerouting priority filter; ct timeout set \"nat-idle\";\n  }}\n\
                   chain nat-forgotten {{\n    type filter hook forward priority -10; ct state invalid counter drop comment \"kaspec {t} nat: forgotten flow\";\n  }}\n\
                   chain nat-forgotten-local {{\n    type filter hook input priority -10; ct state invalid counter drop comment \"kaspec {t} nat: forgotten flow\";\n  }}\n}}\n",
                tb = self.table
            ),
        )?;
        self.router.nft("setting up NAT on the router", &self.masquerade())?;
        Ok(())
    }
}
