//! The claims domain: exact money, claims, the registry, accumulators, decisions, the message
//! contracts, and the deterministic adjudication pipeline.
//!
//! No I/O, no clock, no environment, no floats. Dates and rule packs come in as arguments; the
//! same inputs always give the same decision, which is what lets a regulator replay it.
//!
//! Reading order: [`money`], [`claim`], [`registry`], [`accumulators`], [`decision`],
//! [`rules`] (what a rule pack answers), [`pipeline`] (where a line is priced), [`contract`]
//! (claim/v1, decision/v1, cancellation/v1, the registry file), [`ledger`] (the in-memory store
//! of the embedded mode).

pub mod accumulators;
pub mod attributes;
pub mod claim;
pub mod contract;
pub mod date;
pub mod decision;
pub mod ids;
pub mod ledger;
pub mod money;
pub mod pipeline;
pub mod registry;
pub mod rules;
