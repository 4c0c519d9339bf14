//! kaspec-suites: one folder per protocol; every case quotes its spec
//! sentence, states the requirement it checks and computes its expectation
//! from the configuration, with the formula written out.
//!
//! Where things live (imports only go down this list):
//!
//! - [`registry`]: every protocol, in report order — the only importer of
//!   protocol folders.
//! - [`tcp`], [`mqtt`], [`websocket`], [`grpc`], [`postgres`], [`amqp`],
//!   [`redis`], [`nats`], [`ssh`], [`mariadb`], [`http`]: one
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
pub mod catalog;
pub mod config;
pub mod ctx;
pub mod deviations;
pub mod drive;
pub mod external;
pub mod grpc;
pub mod http;
pub mod mariadb;
pub mod model;
pub mod mqtt;
pub mod nats;
pub mod network;
pub mod outcome;
pub mod peers;
pub mod pool;
pub mod postgres;
pub mod protocol;
pub mod redis;
pub mod registry;
pub mod rules;
pub mod runner;
pub mod shared;
pub mod ssh;
pub mod tcp;
pub mod validate;
pub mod websocket;

pub use case::CaseDef;
pub use config::Config;
pub use ctx::Ctx;

/// The layout rules of issue 12, checked on every test run: the modules
/// form a DAG, only the registry imports a protocol folder, and files stay
/// small enough to read.
#[cfg(test)]
mod layout_tests {
    use std::path::{Path, PathBuf};

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    #[test]
    fn suites_modules_import_each_other_without_cycles() {
        kaspec_harness::layout::assert_import_dag(&src(), "kaspec_suites");
    }

    #[test]
    fn only_the_registry_imports_a_protocol() {
        let graph = kaspec_harness::layout::import_graph(&src(), "kaspec_suites");
        for p in crate::registry::PROTOCOLS {
            let importers: Vec<&String> = graph
                .iter()
                .filter(|(_, to)| to.contains(p.name))
                .map(|(from, _)| from)
                .collect();
            assert_eq!(
                importers,
                vec!["registry"],
                "{} is imported by {importers:?}",
                p.name
            );
        }
    }

    #[test]
    fn no_source_file_is_over_600_lines() {
        kaspec_harness::layout::assert_file_sizes(&src(), 600, &[]);
    }
}
