//! The export file a regulator takes away, `audit-export/v1`: self-contained, verifiable and
//! replayable with no access to the mutual's systems.
//!
//! JSON lines. The first line is the header:
//!
//! ```json
//! {"format": "audit-export/v1", "from": 1, "to": 5000, "prev_hash": "000…000",
//!  "sources": {"sha256:…": [{"path": "pack.rhai", "text": "…"}, …]}}
//! ```
//!
//! `from` and `to` are the first and last `seq` of the entries that follow; `prev_hash` is the
//! hash of the entry before `from` (the genesis hash, 64 zeros, when `from` is 1), where the
//! chain of the file starts; `sources` holds, for every rule pack version (content hash) an
//! entry of the file names, every file of that pack, paths relative to the pack folder. Then
//! come the entries `from..=to`, one per line, exactly as stored (the same bytes the mutual
//! hashed).
//!
//! The header is not covered by the chain: a verifier checks that the entries follow from
//! `prev_hash`, that the file holds all of `from..=to`, and that each version's sources hash to
//! that version (`claims_rules::content_hash`). A `prev_hash` other than the genesis is checked
//! against the mutual's log (or an earlier export) by whoever holds it.

use std::collections::BTreeMap;

use claims_domain::contract::{FieldError, Reader};
use serde_json::{Value, json};

use crate::{ChainHead, GENESIS_HASH};

pub const EXPORT_FORMAT: &str = "audit-export/v1";

/// One file of a rule pack, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceText {
    pub path: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportHeader {
    pub from: u64,
    pub to: u64,
    pub prev_hash: String,
    /// Sources per pack version (`sha256:…`).
    pub sources: BTreeMap<String, Vec<SourceText>>,
}

impl ExportHeader {
    /// Whether a parsed first line is an export header (an entry's format is `audit/v1`).
    pub fn is_header(value: &Value) -> bool {
        value.get("format").and_then(Value::as_str) == Some(EXPORT_FORMAT)
    }

    pub fn to_json(&self) -> Value {
        let sources: serde_json::Map<String, Value> = self
            .sources
            .iter()
            .map(|(version, files)| {
                let files = files.iter().map(|file| json!({"path": file.path, "text": file.text})).collect();
                (version.clone(), Value::Array(files))
            })
            .collect();
        json!({
            "format": EXPORT_FORMAT,
            "from": self.from,
            "to": self.to,
            "prev_hash": self.prev_hash,
            "sources": sources,
        })
    }

    pub fn from_json(value: &Value) -> Result<ExportHeader, FieldError> {
        let root = Reader::root(value, "header");
        let format = root.text("format")?;
        if format != EXPORT_FORMAT {
            return Err(root.field("format")?.problem(format!("expected {EXPORT_FORMAT}, found {format:?}")));
        }
        let count = |name: &str| -> Result<u64, FieldError> {
            let field = root.field(name)?;
            field.value().as_u64().ok_or_else(|| field.problem("expected a sequence number"))
        };
        let (from, to) = (count("from")?, count("to")?);
        if from == 0 || to < from {
            return Err(root.problem(format!("from {from} and to {to} are not a range of sequence numbers")));
        }
        let prev_hash = root.text("prev_hash")?.to_owned();
        if from == 1 && prev_hash != GENESIS_HASH {
            return Err(root
                .field("prev_hash")?
                .problem("the chain starting at seq 1 must start from the genesis hash"));
        }
        let sources_field = root.field("sources")?;
        let mut sources = BTreeMap::new();
        for (version, files) in sources_field.object()? {
            let files = Reader::root(files, &format!("{}.{version}", sources_field.path()))
                .items()?
                .iter()
                .map(|file| Ok(SourceText { path: file.text("path")?.to_owned(), text: file.text("text")?.to_owned() }))
                .collect::<Result<Vec<_>, FieldError>>()?;
            sources.insert(version.clone(), files);
        }
        Ok(ExportHeader { from, to, prev_hash, sources })
    }

    /// Where the chain of the file starts.
    pub fn chain_start(&self) -> ChainHead {
        ChainHead { next_sequence: self.from, previous_hash: self.prev_hash.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_reads_back_and_a_bad_one_is_named() {
        let header = ExportHeader {
            from: 1,
            to: 3,
            prev_hash: GENESIS_HASH.to_owned(),
            sources: [("sha256:ab".to_owned(), vec![SourceText { path: "pack.rhai".into(), text: "#{}".into() }])]
                .into_iter()
                .collect(),
        };
        let json = header.to_json();
        assert!(ExportHeader::is_header(&json));
        assert_eq!(ExportHeader::from_json(&json).unwrap(), header);
        let mut bad = json.clone();
        bad["to"] = json!(0);
        assert!(ExportHeader::from_json(&bad).is_err());
        let mut bad = json;
        bad["sources"]["sha256:ab"][0]["text"] = json!(1);
        assert_eq!(
            ExportHeader::from_json(&bad).unwrap_err().to_string(),
            "header.sources.sha256:ab[0].text: expected a string"
        );
    }
}
