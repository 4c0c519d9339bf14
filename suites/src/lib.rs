//! kaspec-suites: one folder per protocol; every case quotes its spec
//! sentence, states the requirement it checks and computes its expectation
//! from the configuration, with the formula written out.
//!
//! Where things live (imports only go down this list):
//!
//! - [`registry`]: every protocol, in report order — the only importer of
//!   protocol folders.
//! - [`tcp`], [`mqtt`], [`websocket`], [`grpc`], [`postgres`], [`amqp`]: one
//!   folder each: `mod.rs` (its case table, NAT case included), `client.rs`,
//!   `expect.rs` (its windows), and the orchestration.
//! - [`runner`]: runs a selection of cases × faults into a report;
//!   [`validate`]: reviews a client profile and confirms by measurement.
//! - [`peers`]: kaspec's own servers (`kaspec serve ...`) and the Python ones'
//!   helpers.
//! - [`outcome`]: how a run's measurements become results.
//! - [`model`]: shared timing rules (Linux TCP, periodic senders, impaired
//!   paths, NAT).
//! - [`drive`]: the client-thread handshake shared by every case.
//! - [`case`] (the row type), [`ctx`] (what a run gives a case), [`shared`]
//!   (servers shared by a run's cases), [`config`], [`network`],
//!   [`deviations`].

pub mod amqp;
pub mod case;
pub mod config;
pub mod ctx;
pub mod deviations;
pub mod drive;
pub mod grpc;
pub mod model;
pub mod mqtt;
pub mod network;
pub mod outcome;
pub mod peers;
pub mod postgres;
pub mod protocol;
pub mod registry;
pub mod rules;
pub mod runner;
pub mod shared;
pub mod tcp;
pub mod validate;
pub mod websocket;

pub use case::CaseDef;
pub use config::Config;
pub use ctx::Ctx;
