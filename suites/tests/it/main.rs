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
//! - [`http`]: reqwest vs nginx, HAProxy and kaspec's hyper server: the
//!   idle close and the next request, GOAWAY, the reuse race, a dead pooled
//!   connection.
//! - [`paths`]: what several protocols share (crash without FIN, slow and
//!   lossy paths).
//! - [`postgres`]: tokio-postgres vs a shared PostgreSQL.
//! - [`amqp`]: lapin vs shared RabbitMQ nodes.
//! - [`redis`]: redis-rs vs redis-server's `timeout` and `tcp-keepalive`,
//!   redis-rs's response timeout.
//! - [`nats`]: async-nats vs nats-server: the server's stale-connection
//!   close (`ping_interval`, `ping_max`), the client's PINGs, a frozen server.
//! - [`fleet`]: a few hundred connections cut at once (TCP, MQTT), each
//!   judged against its own window.
//! - [`ssh`]: OpenSSH's ssh and russh vs sshd and kaspec's russh server:
//!   each side's alive messages under every fault, a frozen peer,
//!   russh's inactivity_timeout, NAT both sides of the threshold,
//!   TCPKeepAlive only.
//! - [`jobs`]: `--jobs` gives the serial run's keys, verdicts and
//!   detection times; leases of a shared server side by side, or alone
//!   under the faults that touch more than their flow.
//! - [`mariadb`]: mysql_async vs a shared mariadbd: wait_timeout and what
//!   the next query sees (a `Conn`, a `Pool`), a query in flight, both
//!   sides' keep-alive, the NAT case.
//! - [`clients`]: external clients (`--client FILE`): adapter files good
//!   and bad, each shipped adapter against the real server, both
//!   observation modes, a shifted window failing.
//! - [`http_proxy`]: two keep-alive levels through nginx and HAProxy on
//!   the proxy topology (issue 15 case 5).
//! - [`situations`]: the client's own situations — a stalled client
//!   application, a client host crashing without FIN: each server's
//!   detection judged, the client reported.
//! - [`rpc_situations`]: the same for gRPC and PostgreSQL: each server's
//!   keep-alive against a stalled or crashed client.
//! - [`busy_rpc`]: a busy gRPC channel and PostgreSQL connection (a call
//!   or query every 100 ms) whose path dies: the PING, TCP_USER_TIMEOUT.
//! - [`busy`]: the busy connection — the path dies while the client
//!   publishes or sends and receives every 100 ms: both sides judged from
//!   each implementation's algorithm, anchored on the last traffic.
//! - [`verdicts`]: every verdict can fail — a window shifted by 50 ms turns
//!   each protocol's pass into a fail.
//! - [`config`]: the knob parser over every protocol's keys (`--set`,
//!   profiles, a pasted libpq string) and its one-line errors.
//! - [`inputs`]: a property test over every input surface (knobs, profiles,
//!   network profiles, conninfo, report files): one-line refusal or a value
//!   in range, never a panic or a wrap.
//!
//! The testbed's own hygiene (drop, panic, clean) is tested with the
//! harness (harness/tests/harness.rs).

mod amqp;
mod busy;
mod busy_rpc;
mod clients;
mod common;
mod config;
mod fleet;
mod grpc;
mod http;
mod http_proxy;
mod inputs;
mod jobs;
mod mariadb;
mod mqtt;
mod nats;
mod paths;
mod postgres;
mod redis;
mod rpc_situations;
mod situations;
mod ssh;
mod tcp;
mod verdicts;
mod websocket;
