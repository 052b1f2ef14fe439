//! Who may submit a message: a claim or cancellation is accepted through the broker only from a
//! broker user the registry maps to the message's provider (`submitters` on the provider).
//!
//! RabbitMQ checks the `user_id` message property against the publishing connection's user
//! (a different value closes the channel), so the property names an authenticated user. The
//! mapping is read from the provider's own registry document, so the snapshot an audit entry
//! records holds the very list the check read, and a replay re-derives the answer from the
//! entry alone. Embedded mode (`claimctl adjudicate`) has no broker and no authenticated user:
//! there is nothing to check, and it does not call this.

use super::Message;
use crate::decision::{Decision, Reason, ReasonGroup};
use crate::pipeline::rejected_without_lines;
use crate::registry::Provider;
use crate::rules::PackSettings;

/// X12 CARC 208, "National Provider Identifier – not matched": the submitter's identity does
/// not match the claim's provider. Group CO: the provider's problem, never the member's.
pub const REFUSED_SUBMITTER_CODE: &str = "208";

/// `None` when `user_id` may submit `message` (its provider lists the user among its
/// submitters), otherwise the `rejected` decision to give instead. `provider` is the registry's
/// entry for the message's provider, if any: an unknown provider has no submitters.
pub fn submitter_refusal(
    message: &Message,
    user_id: Option<&str>,
    provider: Option<&Provider>,
    settings: &PackSettings,
) -> Option<Decision> {
    let (provider_id, claim_id, member_id, what, reverses) = match message {
        Message::Claim(claim) => {
            (claim.provider_id.as_str(), claim.claim_id.as_str(), claim.member_id.as_str(), "claims", None)
        }
        Message::Cancellation(cancellation) => (
            cancellation.provider_id.as_str(),
            cancellation.claim_id.as_str(),
            // A cancellation names no member; refused cancellations of unknown claims say "" too.
            "",
            "cancellations",
            Some(cancellation.claim_id.to_string()),
        ),
    };
    let allowed = provider
        .filter(|provider| provider.provider_id.as_str() == provider_id)
        .is_some_and(|provider| user_id.is_some_and(|user| provider.submitters.contains(user)));
    if allowed {
        return None;
    }
    let text = match user_id {
        Some(user) => format!("broker user {user:?} may not submit {what} for provider {provider_id:?}"),
        None => format!(
            "the message has no user_id: only a broker user the registry names may submit {what} for provider \
             {provider_id:?}"
        ),
    };
    let reason = Reason::new(ReasonGroup::Co, REFUSED_SUBMITTER_CODE, text);
    Some(rejected_without_lines((provider_id, claim_id, member_id), settings, reason, reverses))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::contract::parse_message;
    use crate::date::{Date, Period};
    use crate::decision::Outcome;
    use crate::decision::RulesVersion;
    use crate::ids::ProviderId;
    use crate::money::{Currency, Rounding};

    fn settings() -> PackSettings {
        PackSettings {
            version: RulesVersion { pack: "fr".into(), version: "sha256:test".into() },
            currency: Currency::EUR,
            rounding: Rounding::HalfUp,
            filing_limit: None,
            plans: BTreeMap::new(),
            agreements: BTreeSet::new(),
            prices_outside_agreement: false,
        }
    }

    fn provider(id: &str, submitters: &[&str]) -> Provider {
        Provider {
            provider_id: ProviderId::parse(id).unwrap(),
            agreement: None,
            period: Period { from: Date::parse("2020-01-01").unwrap(), to: None },
            attributes: Default::default(),
            submitters: submitters.iter().map(|user| (*user).to_owned()).collect::<BTreeSet<_>>(),
        }
    }

    fn claim(provider_id: &str) -> Message {
        let text = serde_json::json!({
            "schema": "claim/v1", "claim_id": "C-1", "provider_id": provider_id, "member_id": "M-1",
            "submitted_on": "2025-11-06", "currency": "EUR", "third_party_payment": [],
            "lines": [{"line": 1, "act": "G", "service_date": "2025-11-05", "quantity": 1, "charged": 3000,
                       "attributes": {}}],
        });
        parse_message(&text.to_string()).unwrap()
    }

    fn cancellation(provider_id: &str) -> Message {
        let text = serde_json::json!({"schema": "cancellation/v1", "provider_id": provider_id, "claim_id": "C-1",
                                      "reason": "billed in error"});
        parse_message(&text.to_string()).unwrap()
    }

    fn reason(decision: &Decision) -> String {
        let reason = &decision.reasons[0];
        format!("{}-{}: {}", reason.group.name(), reason.code, reason.text)
    }

    #[test]
    fn a_listed_user_may_submit_for_its_provider_only() {
        let a = provider("P-A", &["prov-a", "billing-agent"]);
        assert_eq!(submitter_refusal(&claim("P-A"), Some("prov-a"), Some(&a), &settings()), None);
        assert_eq!(submitter_refusal(&cancellation("P-A"), Some("billing-agent"), Some(&a), &settings()), None);
        let refused = submitter_refusal(&claim("P-A"), Some("prov-b"), Some(&a), &settings()).unwrap();
        assert_eq!(reason(&refused), r#"CO-208: broker user "prov-b" may not submit claims for provider "P-A""#);
        assert_eq!(
            (refused.outcome, refused.claim_id.as_str(), refused.member_id.as_str()),
            (Outcome::Rejected, "C-1", "M-1")
        );
        assert_eq!(refused.rules, Some(settings().version));
        // The provider given must be the message's: another provider's list grants nothing.
        let refused = submitter_refusal(&claim("P-B"), Some("prov-a"), Some(&a), &settings()).unwrap();
        assert_eq!(reason(&refused), r#"CO-208: broker user "prov-a" may not submit claims for provider "P-B""#);
    }

    #[test]
    fn no_user_an_unknown_provider_or_an_empty_list_is_refused() {
        let a = provider("P-A", &["prov-a"]);
        let refused = submitter_refusal(&claim("P-A"), None, Some(&a), &settings()).unwrap();
        assert_eq!(
            reason(&refused),
            r#"CO-208: the message has no user_id: only a broker user the registry names may submit claims for provider "P-A""#
        );
        let refused = submitter_refusal(&claim("P-X"), Some("prov-a"), None, &settings()).unwrap();
        assert_eq!(reason(&refused), r#"CO-208: broker user "prov-a" may not submit claims for provider "P-X""#);
        let nobody = provider("P-A", &[]);
        assert!(submitter_refusal(&claim("P-A"), Some("prov-a"), Some(&nobody), &settings()).is_some());
    }

    #[test]
    fn a_refused_cancellation_is_shaped_like_any_refused_cancellation() {
        let a = provider("P-A", &["prov-a"]);
        let refused = submitter_refusal(&cancellation("P-A"), Some("prov-b"), Some(&a), &settings()).unwrap();
        assert_eq!(reason(&refused), r#"CO-208: broker user "prov-b" may not submit cancellations for provider "P-A""#);
        assert_eq!((refused.member_id.as_str(), refused.reverses.as_deref()), ("", Some("C-1")));
    }
}
