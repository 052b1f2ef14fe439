//! Arbitrary bytes through `parse_message`, as the worker hands them over: it never panics, a
//! rejection always names a problem and keeps only short, safe ids, and an accepted message
//! respects every bound of the contract and parses to the same thing once written back.

#![no_main]

mod encode;

use claims_domain::contract::{MAX_AMOUNT, MAX_LINES, MAX_QUANTITY, Message, RejectionKind, parse_message};
use claims_domain::decision::ReasonGroup;
use claims_domain::ids::{ActCode, ClaimId, MemberId, ProviderId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The worker dead-letters bytes that are not UTF-8 before parsing; the lossy text still
    // exercises the parser with whatever the bytes held.
    let text = String::from_utf8_lossy(data);
    match parse_message(&text) {
        Err(rejection) => {
            assert_eq!((rejection.reason.group, rejection.reason.code.as_str()), (ReasonGroup::Co, "16"));
            assert!(!rejection.reason.text.is_empty(), "a rejection without a reason");
            for id in [&rejection.claim_id, &rejection.provider_id, &rejection.member_id] {
                assert!(id.chars().count() <= 64, "an unbounded id in a rejection: {id:?}");
            }
            if rejection.kind == RejectionKind::Unreadable {
                assert!(rejection.claim_id.is_empty() && rejection.provider_id.is_empty());
            }
        }
        Ok(Message::Claim(claim)) => {
            assert!((1..=MAX_LINES).contains(&claim.lines.len()));
            let mut numbers = std::collections::BTreeSet::new();
            for line in &claim.lines {
                assert!(numbers.insert(line.number), "line number {} twice", line.number);
                assert!((0..=MAX_AMOUNT).contains(&line.charged.minor_units()));
                assert!((1..=MAX_QUANTITY).contains(&i64::from(line.quantity)));
                assert!(line.service_date <= claim.submitted_on);
                assert!(ActCode::parse(line.act.as_str()).is_ok());
            }
            assert!(ClaimId::parse(claim.claim_id.as_str()).is_ok());
            assert!(ProviderId::parse(claim.provider_id.as_str()).is_ok());
            assert!(MemberId::parse(claim.member_id.as_str()).is_ok());
            let again = encode::claim_to_json(&claim).to_string();
            assert_eq!(parse_message(&again), Ok(Message::Claim(claim)), "written back: {again}");
        }
        Ok(Message::Cancellation(cancellation)) => {
            assert!(cancellation.reason.chars().count() <= 256);
            let again = encode::cancellation_to_json(&cancellation).to_string();
            assert_eq!(parse_message(&again), Ok(Message::Cancellation(cancellation)), "written back: {again}");
        }
    }
});
