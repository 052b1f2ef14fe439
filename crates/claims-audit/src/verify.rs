//! Walking a log to check it: each entry follows the previous one (no gap in `seq`, `prev_hash`
//! is the previous entry's hash), its hash is its content's, it is an `audit/v1` entry, and its
//! rule pack version has known sources. The first entry that fails stops the walk.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use thiserror::Error;

use crate::{ChainError, ChainHead, Checked, FORMAT, check, link};

/// Why a log does not verify, naming the first entry that fails.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Failure {
    #[error("{0}")]
    Chain(#[from] ChainError),
    #[error("entry seq {sequence}: format {found} is not {FORMAT}")]
    Format { sequence: u64, found: String },
    #[error("entry seq {sequence}: no rule pack version recorded (rules.version)")]
    NoRules { sequence: u64 },
    #[error("entry seq {sequence}: unknown rule hash {version}: no rule sources for it")]
    UnknownRuleHash { sequence: u64, version: String },
    #[error("the log ends after seq {last}, but entries through seq {expected} were expected (truncated)")]
    Truncated { last: u64, expected: u64 },
    #[error("entry seq {sequence}: beyond the last entry expected (seq {expected})")]
    BeyondEnd { sequence: u64, expected: u64 },
}

/// What a verified log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub entries: u64,
    /// The first and last `seq` (`None` for an empty log).
    pub first: Option<u64>,
    pub last: Option<u64>,
    /// The hash of the last entry (the hash the chain started from when empty).
    pub last_hash: String,
    /// Entries per rule pack version.
    pub versions: BTreeMap<String, u64>,
}

pub struct Verifier {
    start: u64,
    head: ChainHead,
    line: u64,
    known_versions: Option<BTreeSet<String>>,
    last_expected: Option<u64>,
    versions: BTreeMap<String, u64>,
}

impl Verifier {
    /// A walk from `start`; `known_versions` are the rule versions with sources (`None`: not
    /// checked, for a log without sources); `last_expected` the last `seq` the log must reach.
    pub fn new(start: ChainHead, known_versions: Option<BTreeSet<String>>, last_expected: Option<u64>) -> Verifier {
        Verifier {
            start: start.next_sequence,
            head: start,
            line: 0,
            known_versions,
            last_expected,
            versions: BTreeMap::new(),
        }
    }

    /// Sets the line number of the next entry (when the log has lines before its entries).
    pub fn set_line(&mut self, line: u64) {
        self.line = line.saturating_sub(1);
    }

    pub fn head(&self) -> &ChainHead {
        &self.head
    }

    /// Entries verified so far per rule pack version.
    pub fn versions(&self) -> &BTreeMap<String, u64> {
        &self.versions
    }

    /// Entries verified so far.
    pub fn entries(&self) -> u64 {
        self.head.next_sequence - self.start
    }

    /// Checks the next entry; returns it parsed.
    pub fn next(&mut self, text: &str) -> Result<Value, Failure> {
        let mut checked = check(text.as_bytes());
        self.accept(&checked)?;
        Ok(checked.value.take().unwrap_or(Value::Null))
    }

    /// Takes the next entry, already [`check`]ed (possibly on another thread): links it to the
    /// chain and checks its format and rule version.
    pub fn accept(&mut self, checked: &Checked) -> Result<(), Failure> {
        self.line += 1;
        let sequence = self.head.next_sequence;
        if let Some(expected) = self.last_expected
            && sequence > expected
        {
            return Err(Failure::BeyondEnd { sequence, expected });
        }
        let mut head = self.head.clone();
        link(&mut head, self.line, checked)?;
        if checked.format() != Some(FORMAT) {
            let found = checked.format().map_or_else(|| "(none)".to_owned(), |format| format!("{format:?}"));
            return Err(Failure::Format { sequence, found });
        }
        let Some(version) = checked.rules_version() else {
            return Err(Failure::NoRules { sequence });
        };
        if let Some(known) = &self.known_versions
            && !known.contains(version)
        {
            return Err(Failure::UnknownRuleHash { sequence, version: version.to_owned() });
        }
        if let Some(count) = self.versions.get_mut(version) {
            *count += 1;
        } else {
            self.versions.insert(version.to_owned(), 1);
        }
        self.head = head;
        Ok(())
    }

    /// Ends the walk: the log must have reached the last entry expected.
    pub fn finish(self) -> Result<Summary, Failure> {
        let last = self.head.next_sequence - 1;
        if let Some(expected) = self.last_expected
            && last < expected
        {
            return Err(Failure::Truncated { last, expected });
        }
        let entries = self.head.next_sequence - self.start;
        Ok(Summary {
            entries,
            first: (entries > 0).then_some(self.start),
            last: (entries > 0).then_some(last),
            last_hash: self.head.previous_hash,
            versions: self.versions,
        })
    }
}
