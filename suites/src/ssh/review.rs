//! `kaspec validate`'s rules for the `ssh.*` knobs, each with its source
//! and the case that confirms it by measurement.

use kaspec_harness::fault::FaultKind;

use super::{NAT, OPENSSH_CLIENT, RUSSH_CLIENT};
use crate::config::Config;
use crate::network::NetworkProfile;
use crate::rules::{broke_behind_nat, nat_finding, none_detected, Check, Finding, Severity};

pub(crate) fn review(c: &Config, net: Option<&NetworkProfile>) -> Vec<Finding> {
    let s = &super::knobs::SshConfig::of(c);
    let mut f = Vec::new();
    if s.server_alive_interval.is_zero() && !s.tcp_keepalive {
        f.push(Finding {
            rule: "ssh-no-dead-server-detection",
            severity: Severity::Warning,
            message: "ssh.server_alive_interval = 0 and ssh.tcp_keepalive = false: ssh sends nothing on an idle session and never notices a dead server (it hangs until the user types)".into(),
            source: "ssh_config(5) ServerAliveInterval (0 = off, the default) and TCPKeepAlive; clientloop.c server_alive_check",
            check: Ok(Check { case: &OPENSSH_CLIENT, fault: FaultKind::Blackhole, confirmed: none_detected, means: "ssh never detected the blackholed server" }),
        });
    }
    if !s.server_alive_interval.is_zero() && s.server_alive_count_max == 0 {
        f.push(Finding {
            rule: "ssh-server-alive-count-max-zero",
            severity: Severity::Warning,
            message: format!(
                "ssh.server_alive_count_max = 0: ssh exits at its first alive check ({} s after the last read), even when the server is alive and merely quiet",
                s.server_alive_interval.as_secs()
            ),
            source: "clientloop.c server_alive_check: `if (ssh_packet_inc_alive_timeouts(ssh) > options.server_alive_count_max)` exits before sending",
            check: Err("no case measures a live quiet server with this setting".into()),
        });
    }
    if !s.keepalive_interval.is_zero() && s.keepalive_max == 0 {
        f.push(Finding {
            rule: "russh-keepalive-max-zero",
            severity: Severity::Warning,
            message: "ssh.keepalive_max = 0: russh sends keepalives but never ends the session for unanswered ones (`keepalive_max != 0 &&` in client/mod.rs)".into(),
            source: "russh 0.65 src/client/mod.rs, the keepalive timer's branch",
            check: Ok(Check { case: &RUSSH_CLIENT, fault: FaultKind::Blackhole, confirmed: none_detected, means: "russh never ended the blackholed session" }),
        });
    }
    let nat = Check {
        case: &NAT,
        fault: FaultKind::NatExpiry,
        confirmed: broke_behind_nat,
        means: "the ssh session broke behind a NAT with this timeout",
    };
    f.extend(nat_finding(
        "ssh.server_alive_interval",
        (!s.server_alive_interval.is_zero()).then_some(s.server_alive_interval),
        net,
        nat,
    ));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(sets: &[&str], nat_s: Option<u64>) -> Vec<&'static str> {
        let net = nat_s.map(|n| NetworkProfile {
            nat_idle_timeout: Some(std::time::Duration::from_secs(n)),
            ..Default::default()
        });
        crate::rules::rules_raised(review, &super::super::knobs::KNOBS, sets, net.as_ref())
    }

    #[test]
    fn the_rules_fire_on_their_settings() {
        assert!(rules(&[], None).is_empty(), "the defaults raise nothing");
        assert_eq!(
            rules(&["ssh.options=ServerAliveInterval 0"], None),
            vec!["ssh-no-dead-server-detection"]
        );
        assert!(rules(
            &["ssh.options=ServerAliveInterval 0\nTCPKeepAlive yes"],
            None
        )
        .is_empty());
        assert_eq!(
            rules(&["ssh.server_alive_count_max=0"], None),
            vec!["ssh-server-alive-count-max-zero"]
        );
        assert_eq!(
            rules(&["ssh.keepalive_max=0"], None),
            vec!["russh-keepalive-max-zero"]
        );
        assert_eq!(
            rules(&["ssh.options=-o ServerAliveInterval=60"], Some(30)),
            vec!["keepalive-not-below-nat-timeout"]
        );
        assert!(rules(&["ssh.options=-o ServerAliveInterval=15"], Some(30)).is_empty());
    }
}
