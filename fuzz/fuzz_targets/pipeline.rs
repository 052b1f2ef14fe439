//! Structured claims through the embedded ledger with the French rule pack and the example
//! registry, loaded once: a short history of claims, repeats and cancellations for a few
//! members, so counters, caps, debts and duplicate detection carry from one claim to the next.
//! Adjudication never panics and the money invariants hold on every decision.

#![no_main]

mod encode;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use arbitrary::Arbitrary;
use claims_domain::attributes::{AttributeValue, Attributes};
use claims_domain::claim::{Cancellation, Claim, ClaimLine, Scheme};
use claims_domain::contract::{MAX_AMOUNT, MAX_QUANTITY, decision_to_json, parse_registry};
use claims_domain::date::Date;
use claims_domain::decision::{Decision, Outcome, Payee, RecoveryKind};
use claims_domain::ids::{ActCode, ClaimId, MemberId, ProviderId};
use claims_domain::ledger::Ledger;
use claims_domain::money::{Amount, Currency};
use claims_rules::RhaiPack;
use libfuzzer_sys::fuzz_target;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

static PACK: LazyLock<RhaiPack> = LazyLock::new(|| {
    RhaiPack::load(format!("{ROOT}/rules/fr")).unwrap_or_else(|error| panic!("loading rules/fr: {error}"))
});

static LEDGER: LazyLock<Ledger> = LazyLock::new(|| {
    let text = std::fs::read_to_string(format!("{ROOT}/examples/fr/registry.json"))
        .unwrap_or_else(|error| panic!("reading the registry: {error}"));
    Ledger::new(parse_registry(&text).unwrap_or_else(|error| panic!("registry: {error}")))
});

/// A few members and providers of every kind (the last of each is not in the registry).
const MEMBERS: [&str; 9] =
    ["M-000001", "M-000002", "M-000005", "M-000010", "M-000017", "M-000023", "M-000031", "M-000037", "M-UNKNOWN"];
const PROVIDERS: [&str; 12] = [
    "P-GP-0001",
    "P-GP-0005",
    "P-SPE-0001",
    "P-SPE-0004",
    "P-PHA-0001",
    "P-NUR-0001",
    "P-DEN-0001",
    "P-OPT-0001",
    "P-HOS-0001",
    "P-TRP-0001",
    "P-PHY-0001",
    "P-UNKNOWN",
];
const ACTS: [&str; 18] = [
    "G", "GX", "CS", "AMB", "AMI", "AMK", "FJ", "FRAME", "GHS", "HBJD001", "HBLD634", "LENS", "PH1", "PH2", "PH4",
    "PH7", "VSL", "ZZZ",
];
const KEYS: [&str; 9] = [
    "care_pathway",
    "no_cost_basket",
    "condition_related",
    "end_date",
    "optical_class",
    "optical_item",
    "maternity",
    "heavy_act",
    "unknown_key",
];
const TEXTS: [&str; 8] = ["in", "out", "A", "B", "frame", "lens", "2024-03-22", ""];

#[derive(Debug, Arbitrary)]
enum Step {
    Claim(ClaimInput),
    /// Cancels the n-th claim of this history (or an unknown one).
    Cancel(u8),
    /// Sends the n-th claim again, byte for byte.
    Repeat(u8),
}

#[derive(Debug, Arbitrary)]
struct ClaimInput {
    member: u8,
    provider: u8,
    /// Days after 2023-01-01.
    submitted: u16,
    third_party: u8,
    other_currency: bool,
    lines: Vec<LineInput>,
}

#[derive(Debug, Arbitrary)]
struct LineInput {
    act: u8,
    days_before: u16,
    quantity: u16,
    charged: Charged,
    attributes: Vec<(u8, AttributeInput)>,
}

#[derive(Debug, Arbitrary)]
enum Charged {
    Usual(u16),
    Large(u32),
    Any(u64),
    Maximum,
}

#[derive(Debug, Arbitrary)]
enum AttributeInput {
    Flag(bool),
    Number(i64),
    Text(u8),
}

fn pick<'a>(items: &[&'a str], index: u8) -> &'a str {
    items[usize::from(index) % items.len()]
}

fn provider(id: &str) -> ProviderId {
    ProviderId::parse(id).unwrap_or_else(|error| panic!("{error}"))
}

fn build(input: &ClaimInput, index: usize) -> Claim {
    let start = Date::from_ymd(2023, 1, 1).unwrap_or_else(|| unreachable!());
    let submitted_on = start.add_days(i64::from(input.submitted % 1200)).unwrap_or(start);
    let lines = input
        .lines
        .iter()
        .take(12)
        .enumerate()
        .map(|(number, line)| {
            let charged = match line.charged {
                Charged::Usual(value) => i64::from(value),
                Charged::Large(value) => i64::from(value),
                Charged::Any(value) => i64::try_from(value % (MAX_AMOUNT as u64 + 1)).unwrap_or(MAX_AMOUNT),
                Charged::Maximum => MAX_AMOUNT,
            };
            let quantity =
                if line.quantity < 60_000 { 1 + line.quantity % 4 } else { 1 + line.quantity % MAX_QUANTITY as u16 };
            let attributes: Attributes = line
                .attributes
                .iter()
                .take(4)
                .map(|(key, value)| {
                    let value = match value {
                        AttributeInput::Flag(flag) => AttributeValue::Bool(*flag),
                        AttributeInput::Number(number) => AttributeValue::Integer(*number),
                        AttributeInput::Text(text) => AttributeValue::Text(pick(&TEXTS, *text).to_owned()),
                    };
                    (pick(&KEYS, *key).to_owned(), value)
                })
                .collect();
            ClaimLine {
                number: u32::try_from(number + 1).unwrap_or(u32::MAX),
                act: ActCode::parse(pick(&ACTS, line.act)).unwrap_or_else(|error| panic!("{error}")),
                service_date: submitted_on.add_days(-i64::from(line.days_before % 800)).unwrap_or(submitted_on),
                quantity: u32::from(quantity),
                charged: Amount::from_minor(charged),
                attributes,
            }
        })
        .collect();
    let third_party = Scheme::ALL.into_iter().filter(|scheme| input.third_party & (1 << *scheme as u8) != 0).collect();
    Claim {
        claim_id: ClaimId::parse(&format!("C-FUZZ-{index}")).unwrap_or_else(|error| panic!("{error}")),
        provider_id: provider(pick(&PROVIDERS, input.provider)),
        member_id: MemberId::parse(pick(&MEMBERS, input.member)).unwrap_or_else(|error| panic!("{error}")),
        submitted_on,
        currency: if input.other_currency { Currency::XOF } else { Currency::EUR },
        third_party,
        lines,
    }
}

fuzz_target!(|steps: Vec<Step>| {
    let pack = &*PACK;
    let mut ledger = LEDGER.clone();
    let mut sent: Vec<(String, Claim)> = Vec::new();
    for step in steps.iter().take(8) {
        let (text, claim) = match step {
            Step::Claim(input) => {
                if input.lines.is_empty() {
                    continue;
                }
                let claim = build(input, sent.len());
                let text = encode::claim_to_json(&claim).to_string();
                sent.push((text.clone(), claim.clone()));
                (text, Some(claim))
            }
            Step::Repeat(index) => match sent.get(usize::from(*index) % sent.len().max(1)) {
                Some((text, claim)) => (text.clone(), Some(claim.clone())),
                None => continue,
            },
            Step::Cancel(index) => {
                let (provider_id, claim_id) = match sent.get(usize::from(*index)) {
                    Some((_, claim)) => (claim.provider_id.clone(), claim.claim_id.clone()),
                    None => (provider("P-GP-0001"), ClaimId::parse("C-NEVER-SENT").unwrap_or_else(|e| panic!("{e}"))),
                };
                let cancellation = Cancellation { provider_id, claim_id, reason: "fuzz".to_owned() };
                (encode::cancellation_to_json(&cancellation).to_string(), None)
            }
        };
        let recorded = ledger.record(&text, pack);
        let decision = &recorded.decision;
        check(decision, claim.as_ref());
        if decision.outcome == Outcome::Error {
            let moved = recorded.effect.as_ref().map_or(0, |effect| effect.moves.len());
            assert_eq!(moved, 0, "a rule failure moved counters");
        }
    }
});

/// The money invariants of one decision; `claim` is what was sent (none for a cancellation).
fn check(decision: &Decision, claim: Option<&Claim>) {
    let sign: i64 = if decision.outcome == Outcome::Reversed { -1 } else { 1 };
    if let Some(claim) = claim {
        assert!(decision.outcome != Outcome::Reversed);
        // Every line of a valid claim gets exactly one decision line, in order.
        if !decision.lines.is_empty() {
            let numbers: Vec<u32> = decision.lines.iter().map(|line| line.line).collect();
            let sent: Vec<u32> = claim.lines.iter().map(|line| line.number).collect();
            assert_eq!(numbers, sent);
        }
    }
    let mut line_paid: BTreeMap<Scheme, i64> = BTreeMap::new();
    for line in &decision.lines {
        let compulsory = line.compulsory_paid().minor_units();
        let supplementary = line.supplementary_paid().minor_units();
        let member = line.member_share.minor_units();
        assert_eq!(
            compulsory + supplementary + member,
            line.charged.minor_units(),
            "line {} does not add up",
            line.line
        );
        for amount in [compulsory, supplementary, member, line.charged.minor_units(), line.eligible.minor_units()] {
            assert!(
                amount * sign >= 0,
                "line {}: amount {amount} has the wrong sign in {:?}",
                line.line,
                decision.outcome
            );
        }
        if let Some(part) = &line.compulsory {
            let deductions: i64 = part.deductions.iter().map(|deduction| deduction.amount.minor_units()).sum();
            assert!(part.deductions.iter().all(|deduction| deduction.amount.minor_units() * sign > 0));
            assert_eq!(
                part.paid.minor_units(),
                part.gross.minor_units() - deductions + part.ceiling_refund.minor_units()
            );
            assert!(part.gross.minor_units() * sign >= 0 && part.ceiling_refund.minor_units() * sign >= 0);
        }
        if sign == 1 {
            let cover =
                line.compulsory.as_ref().map_or(0, |part| part.gross.minor_units() + part.ceiling_refund.minor_units());
            assert!(
                supplementary <= (line.charged.minor_units() - cover).max(0),
                "line {}: indemnity principle",
                line.line
            );
        }
        if line.denied {
            assert_eq!((compulsory, supplementary), (0, 0), "a denied line paid");
        }
        *line_paid.entry(Scheme::Compulsory).or_insert(0) += compulsory;
        *line_paid.entry(Scheme::Supplementary).or_insert(0) += supplementary;
    }
    for scheme in Scheme::ALL {
        let of_scheme = || decision.payments.iter().filter(|p| p.scheme == scheme);
        // A reversal pays the member back a debt of the cancelled claim that a later
        // reimbursement already recovered (pipeline/reversal.rs): its one positive payment.
        let paid_back: i64 = of_scheme()
            .filter(|p| sign == -1 && p.payee == Payee::Member && p.amount.minor_units() > 0)
            .map(|p| p.amount.minor_units())
            .sum();
        assert!(
            of_scheme().all(|p| p.amount.minor_units() * sign > 0
                || (sign == -1 && p.payee == Payee::Member && p.amount.minor_units() > 0)),
            "a zero or wrong-signed payment in {:?}: {:?}",
            decision.outcome,
            decision.payments
        );
        let paid: i64 = of_scheme().map(|p| p.amount.minor_units()).sum();
        let recovery = |kind: RecoveryKind| -> i64 {
            decision
                .recoveries
                .iter()
                .filter(|r| r.scheme == scheme && r.kind == kind)
                .map(|r| r.amount.minor_units())
                .sum()
        };
        let expected = line_paid.get(&scheme).copied().unwrap_or(0) + recovery(RecoveryKind::Debt)
            - recovery(RecoveryKind::Recovered);
        assert_eq!(paid - paid_back, expected, "{}: payments do not match the lines", scheme.name());
        if sign == -1 {
            assert!(
                paid_back <= -recovery(RecoveryKind::Debt),
                "{}: paid back more than the debt cancelled",
                scheme.name()
            );
        }
    }
    if matches!(decision.outcome, Outcome::Error | Outcome::Rejected) {
        assert!(decision.payments.is_empty(), "{:?} with payments", decision.outcome);
    }
    // The decision is encodable as decision/v1 (no panic on any amount).
    let _ = decision_to_json(decision);
}
