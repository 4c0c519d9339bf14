//! kaspec-suites: one module per protocol; every case cites its spec section,
//! states the requirement it checks and computes its expectation from the
//! configuration, with the formula written out.
//!
//! - [`config`]: the client knobs (`--set`, TOML profiles).
//! - [`case`]: case metadata, selection by id prefix, building results.
//! - [`tcp`]: TCP keep-alive through socket2 against our echo server.
//! - [`mqtt`]: rumqttc against a real Mosquitto.
//! - [`websocket`]: tokio-tungstenite heartbeats against our server and Python `websockets`.
//! - [`grpc`]: tonic HTTP/2 keep-alive against our tonic server and Python grpcio.
//! - [`postgres`]: tokio-postgres against a real PostgreSQL (shared server).
//! - [`amqp`]: lapin against a real RabbitMQ (AMQP 0-9-1 heartbeats).
//! - [`shared`]: servers started once per run and shared by its cases.
//! - [`runner`]: runs a selection of cases × faults into a report.
//! - [`deviations`]: documented deviations of implementations (fixtures).

pub mod amqp;
pub mod case;
pub mod config;
pub mod deviations;
pub mod docker;
pub mod grpc;
pub mod linux;
pub mod mqtt;
pub mod nat;
pub mod network;
pub mod postgres;
pub mod runner;
pub mod serve;
pub mod servers;
pub mod shared;
pub mod tcp;
pub mod validate;
pub mod websocket;

pub use case::{CaseDef, Ctx};
pub use config::Config;
