//! The message contracts other systems rely on: `claim/v1`, `cancellation/v1`, `decision/v1`
//! and the registry file. These are explicit, versioned formats: domain types are converted to
//! and from them here, so a refactor of the domain cannot silently change what a provider
//! receives or what a regulator replays.

mod claim_v1;
mod decision_v1;
mod fields;
mod reader;
mod registry_file;
mod strict_json;
mod submitter;

pub use claim_v1::{MAX_AMOUNT, MAX_LINES, MAX_MESSAGE_BYTES, MAX_QUANTITY, not_utf8, parse_message};
pub use decision_v1::{decision_from_json, decision_to_json, with_audit};
pub use fields::FieldError;
pub use reader::Reader;
pub use registry_file::{
    RegistryError, check_registry_names, member_from_json, member_to_json, parse_registry, provider_from_json,
    provider_to_json, registry_to_json,
};
pub use submitter::{REFUSED_SUBMITTER_CODE, submitter_refusal};

use crate::claim::{Cancellation, Claim};
use crate::decision::Reason;

/// A parsed message from the claims queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Claim(Claim),
    Cancellation(Cancellation),
}

/// Why a message is not a valid claim or cancellation, with whatever ids could be read so the
/// answer can still reach the provider under them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub claim_id: String,
    pub provider_id: String,
    pub member_id: String,
    pub kind: RejectionKind,
    pub reason: Reason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// Not JSON at all, or not an object: nothing to answer to (the worker dead-letters it).
    Unreadable,
    /// A JSON object whose `schema` is missing or unknown.
    UnknownSchema,
    /// A known schema with a missing or invalid field: answered with a `rejected` decision.
    Invalid,
}
