//! kaspec-suites' one integration-test binary: every case runs for real,
//! with short timings — real servers in the server namespace, a real client
//! in the client namespace, faults committed on the router. Each test
//! asserts what the configuration predicts: the measured detection falls in
//! the computed window or, for the informational cases, does not happen.
//! Needs root (network namespaces) and the servers `fixtures/bootstrap.sh`
//! installs. Try not to add another binary: add a module here.
//!
//! Index:
//! - [`common`]: a context like a run's, running one case, assertions.
//! - [`tcp`]: TCP keep-alive, keep-alive off, TCP_USER_TIMEOUT, half-open, NAT.
//! - [`mqtt`]: rumqttc vs Mosquitto Keep Alive, idle and through a NAT.
//! - [`websocket`]: heartbeats vs our server and Python `websockets`.
//! - [`grpc`]: tonic HTTP/2 keep-alive vs our tonic server and grpcio.
//! - [`paths`]: what several protocols share (crash without FIN, slow and
//!   lossy paths).
//! - [`postgres`]: tokio-postgres vs a shared PostgreSQL.
//! - [`amqp`]: lapin vs shared RabbitMQ nodes.
//! - [`redis`]: redis-rs vs redis-server's `timeout` and `tcp-keepalive`,
//!   redis-rs's response timeout.
//! - [`nats`]: async-nats vs nats-server: the server's stale-connection
//!   close (`ping_interval`, `ping_max`), the client's PINGs, a frozen server.
//! - [`mariadb`]: mysql_async vs a shared mariadbd: wait_timeout and what
//!   the next query sees (a `Conn`, a `Pool`), a query in flight, both
//!   sides' keep-alive, the NAT case.
//! - [`verdicts`]: every verdict can fail — a window shifted by 50 ms turns
//!   each protocol's pass into a fail.
//! - [`inputs`]: a property test over every input surface (knobs, profiles,
//!   network profiles, conninfo, report files): one-line refusal or a value
//!   in range, never a panic or a wrap.
//!
//! The testbed's own hygiene (drop, panic, clean) is tested with the
//! harness (harness/tests/harness.rs).

mod amqp;
mod common;
mod grpc;
mod inputs;
mod mqtt;
mod nats;
mod paths;
mod postgres;
mod mariadb;
mod redis;
mod tcp;
mod verdicts;
mod websocket;
