//! HTTP keep-alive (issue 15). This branch holds only the two-level cases
//! through a proxy ([`proxy`]); the direct cases, knobs and client live
//! beside it on the HTTP branch.

use crate::protocol::Protocol;

pub mod proxy;

pub static PROTOCOL: Protocol = Protocol {
    name: "http",
    cases: &proxy::CASES,
    knobs: &[],
    prerequisites: proxy::prerequisites,
    review: |_, _| Vec::new(),
};
