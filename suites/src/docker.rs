//! What runs on the `docker` testbed: the cases whose server is a service
//! of docker-compose.yml running with the settings of fixtures/ (the case
//! checks that, see [`kaspec_harness::server::ContainerCheck`]), the faults
//! that apply to a container, and the server versions the images state.
//!
//! One case per protocol so far, each the protocol's basic detection case.
//! The others need a server configured per case (a broker proposing
//! heartbeat 0, a server without heartbeat, a frozen or crashed server that
//! kaspec restarts, …), which a compose stack with one configuration per
//! service does not give; they report `unsupported` with that reason.

use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::CaseResult;

use crate::case::{CaseDef, Ctx};

/// A case the docker testbed runs, and the compose service it runs against.
pub struct DockerCase {
    pub id: &'static str,
    /// The `org.kaspec.service` label.
    pub service: &'static str,
    /// The server implementation's name in the case's results.
    pub implementation: &'static str,
}

pub const CASES: &[DockerCase] = &[
    DockerCase { id: "tcp/rfc1122-4.2.3.6/1", service: "kaspec-tcp", implementation: "kaspec-tcp-echo" },
    DockerCase { id: "mqtt/3.1.1-3.1.2.10/1", service: "mosquitto", implementation: "mosquitto" },
    DockerCase { id: "websocket/rfc6455-5.5.2/2", service: "kaspec-ws", implementation: "kaspec-ws (tokio-tungstenite)" },
    DockerCase { id: "grpc/a8-keepalive/1", service: "kaspec-grpc", implementation: "kaspec-grpc (tonic)" },
    DockerCase { id: "postgres/libpq-keepalives/1", service: "postgres", implementation: "postgresql" },
    DockerCase { id: "amqp/0-9-1-4.2.7/1", service: "rabbitmq", implementation: "rabbitmq" },
];

/// Why `case` under `fault` does not run on the docker testbed, if it does not.
pub fn unsupported(case: &CaseDef, fault: FaultKind) -> Option<String> {
    if !CASES.iter().any(|c| c.id == case.id) {
        return Some(format!(
            "not on the docker testbed: its server needs a configuration of its own, and the compose stack runs one per service (docker testbed cases: {})",
            CASES.iter().map(|c| c.id).collect::<Vec<_>>().join(", ")
        ));
    }
    match fault {
        FaultKind::Crash => Some("crash is not applied on the docker testbed: kaspec does not kill containers compose owns (it would have to restart them)".into()),
        _ => None,
    }
}

/// Whether the run is on the docker testbed.
pub fn active(ctx: &Ctx) -> bool {
    ctx.docker.is_some()
}

/// On the docker testbed, the server's version is the image's: each result
/// names the container's image next to it.
pub fn label_servers(ctx: &Ctx, results: &mut [CaseResult]) {
    let Some(stack) = &ctx.docker else { return };
    for c in CASES {
        let Some(container) = stack.containers.get(c.service) else { continue };
        let version = format!("{} (image {})", container.version.as_deref().unwrap_or("version not stated by the image"), container.image);
        for r in results.iter_mut() {
            for i in [&mut r.implementation, &mut r.peer] {
                if i.name == c.implementation {
                    i.version = version.clone();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_docker_case_exists_and_the_others_say_why_not() {
        let all = crate::case::all();
        for c in CASES {
            let case = all.iter().find(|d| d.id == c.id).unwrap_or_else(|| panic!("{} is not a case", c.id));
            assert_eq!(unsupported(case, FaultKind::Blackhole), None);
            assert_eq!(unsupported(case, FaultKind::Reset), None);
            assert!(unsupported(case, FaultKind::Crash).is_some_and(|r| r.contains("compose owns")));
        }
        let other = all.iter().find(|d| d.id == "websocket/rfc6455-5.5.2/3").unwrap();
        assert!(unsupported(other, FaultKind::Freeze).is_some_and(|r| r.contains("docker testbed cases: tcp/rfc1122-4.2.3.6/1")));
    }
}
