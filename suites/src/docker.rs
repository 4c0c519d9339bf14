//! What runs on the `docker` testbed: the cases whose server is a service
//! of docker-compose.yml running with the settings of fixtures/ (the case
//! checks that, see [`kaspec_harness::server::ContainerCheck`]), the faults
//! that apply to a container, and the server versions the images state.
//!
//! Every case whose server runs with the one configuration of its compose
//! service runs here. The others need a server configured per case or a
//! different path; they report `unsupported` with the reason ([`NOT_HERE`]).

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

const TCP: (&str, &str) = ("kaspec-tcp", "kaspec-tcp-echo");
const MQTT: (&str, &str) = ("mosquitto", "mosquitto");
const WS: (&str, &str) = ("kaspec-ws", "kaspec-ws (tokio-tungstenite)");
const WS_QUIET: (&str, &str) = ("kaspec-ws-quiet", "kaspec-ws (tokio-tungstenite)");
const GRPC: (&str, &str) = ("kaspec-grpc", "kaspec-grpc (tonic)");
const GRPC_DEFAULTS: (&str, &str) = ("kaspec-grpc-defaults", "kaspec-grpc (tonic)");
const PG: (&str, &str) = ("postgres", "postgresql");
const AMQP: (&str, &str) = ("rabbitmq", "rabbitmq");

const fn case(id: &'static str, (service, implementation): (&'static str, &'static str)) -> DockerCase {
    DockerCase { id, service, implementation }
}

pub const CASES: &[DockerCase] = &[
    case("tcp/rfc1122-4.2.3.6/1", TCP),
    case("tcp/rfc1122-4.2.3.6/2", TCP),
    case("tcp/rfc5482-3/1", TCP),
    case("tcp/rfc5382-5/1", TCP),
    case("mqtt/3.1.1-3.1.2.10/1", MQTT),
    case("mqtt/3.1.1-3.1.2.10/2", MQTT),
    case("websocket/rfc6455-5.5.2/1", WS),
    case("websocket/rfc6455-5.5.2/2", WS),
    case("websocket/rfc6455-5.5.2/3", WS),
    case("websocket/rfc6455-5.5.2/4", WS_QUIET),
    case("websocket/rfc6455-5.5.2/5", WS_QUIET),
    case("websocket/rfc6455-5.5.2/6", WS_QUIET),
    case("grpc/a8-keepalive/1", GRPC),
    case("grpc/a8-keepalive/2", GRPC),
    case("grpc/a8-ping-policy/1", GRPC_DEFAULTS),
    case("grpc/a8-keepalive/3", GRPC_DEFAULTS),
    case("postgres/libpq-keepalives/1", PG),
    case("postgres/libpq-tcp_user_timeout/1", PG),
    case("postgres/pg15-20.3-tcp_keepalives/1", PG),
    case("postgres/pg15-20.11-idle_session_timeout/1", PG),
    case("postgres/pg15-20.3-client_connection_check_interval/1", PG),
    case("postgres/libpq-keepalives/2", PG),
    case("amqp/0-9-1-4.2.7/1", AMQP),
    case("amqp/0-9-1-4.2.7/2", AMQP),
];

/// Why each other case is not on the docker testbed.
pub const NOT_HERE: &[(&str, &str)] = &[
    ("tcp/rfc9293-3.5.2/1", "a crash kills the server and destroys its sockets; kaspec does not kill containers compose owns (it would have to restart them)"),
    ("amqp/0-9-1-2.3.3/1", "reads the broker's side with rabbitmqctl on the server host, which kaspec does not run inside the container"),
    ("amqp/0-9-1-2.3.3/2", "needs a second broker that proposes heartbeat 0 (fixtures/rabbitmq/rabbitmq-hb0.conf); the compose stack has one"),
];

/// Why `case` under `fault` does not run on the docker testbed, if it does not.
pub fn unsupported(case: &CaseDef, fault: FaultKind) -> Option<String> {
    if !CASES.iter().any(|c| c.id == case.id) {
        let why = NOT_HERE.iter().find(|(id, _)| *id == case.id).map_or("its server needs a configuration of its own", |(_, why)| why);
        return Some(format!("not on the docker testbed: {why}"));
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
        // Every other case says why, in its own words.
        for case in all.iter().filter(|d| !CASES.iter().any(|c| c.id == d.id)) {
            let (_, why) = NOT_HERE.iter().find(|(id, _)| *id == case.id).unwrap_or_else(|| panic!("{}: no reason in NOT_HERE", case.id));
            assert_eq!(unsupported(case, FaultKind::None), Some(format!("not on the docker testbed: {why}")));
        }
        assert!(NOT_HERE.iter().all(|(id, _)| all.iter().any(|d| d.id == *id)), "NOT_HERE names a case that does not exist");
    }
}
