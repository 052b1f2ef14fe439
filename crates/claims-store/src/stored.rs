//! How domain values are kept in jsonb columns: counter moves, line fingerprints, and the
//! decision/v1 message read back into a domain [`Decision`] (a cancellation reverses the stored
//! decision, so it must be read exactly as it was written).
//!
//! The codecs are not defined here: moves and fingerprints are the audit/v1 entry's shapes
//! (`claims_audit::codec`) and the decision is decision/v1 (`claims_domain::contract`), so a
//! row and its audit entry compare by eye. This module only says a value that does not read
//! back is corrupt stored data.

use claims_domain::accumulators::{CounterMove, Subject};
use claims_domain::contract::FieldError;
use claims_domain::decision::Decision;
use claims_domain::pipeline::LineFingerprint;
use serde_json::Value;

pub use claims_audit::codec::{fingerprints_to_json, moves_to_json, subject_parts};

use crate::StoreError;

fn corrupt(error: FieldError) -> StoreError {
    StoreError::Corrupt(error.to_string())
}

pub(crate) fn subject_from_parts(kind: &str, id: &str) -> Result<Subject, StoreError> {
    claims_audit::codec::subject_from_parts(kind, id)
        .map_err(|error| StoreError::Corrupt(format!("counter subject: {error}")))
}

pub fn moves_from_json(value: &Value) -> Result<Vec<CounterMove>, StoreError> {
    claims_audit::codec::moves_from_json(value).map_err(corrupt)
}

pub fn fingerprints_from_json(value: &Value) -> Result<Vec<LineFingerprint>, StoreError> {
    claims_audit::codec::fingerprints_from_json(value).map_err(corrupt)
}

/// Reads a decision/v1 message (as [`claims_domain::contract::decision_to_json`] writes it)
/// back into the domain decision; `audit` is ignored.
pub fn decision_from_json(value: &Value) -> Result<Decision, StoreError> {
    claims_domain::contract::decision_from_json(value).map_err(corrupt)
}
