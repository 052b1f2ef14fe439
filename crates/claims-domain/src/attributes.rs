//! Free-form facts the rules read: line attributes (care pathway, tooth…), member attributes
//! (long-term illness, global medical record…) and provider attributes (sector, specialty…).
//!
//! Values are scalars only: booleans, integers and text. Never floats.

use std::collections::BTreeMap;

/// One attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    Bool(bool),
    Integer(i64),
    Text(String),
}

/// Attributes by name, sorted so that every encoding of them is deterministic.
pub type Attributes = BTreeMap<String, AttributeValue>;
