//! Property tests of the money invariants over random claims and registries, with a small rule
//! pack written in Rust (the pipeline's guarantees must not depend on what a script returns).

use std::collections::{BTreeMap, BTreeSet};

use claims_domain::accumulators::{CLAIM_PERIOD, Counters, Frequency, Limit, Scope};
use claims_domain::attributes::Attributes;
use claims_domain::claim::{Claim, ClaimLine, Scheme};
use claims_domain::contract::decision_to_json;
use claims_domain::date::{Date, Period};
use claims_domain::decision::{CompulsoryPart, Outcome, Reason, ReasonGroup, RuleFailure, RulesVersion};
use claims_domain::ids::{ActCode, AgreementName, ClaimId, HouseholdId, MemberId, PlanName, ProviderId};
use claims_domain::money::{Amount, Currency, RateBps, Rounding};
use claims_domain::pipeline::{Eligibility, History, Inputs, adjudicate, check_eligibility, reverse};
use claims_domain::registry::{Coverage, Member, Provider, RegistrySnapshot};
use claims_domain::rules::{
    Charge, CompulsoryRuling, LineContext, NeverCovered, PackSettings, PlanSettings, RulePack, Ruling,
    SupplementaryRuling, Tariff,
};
use proptest::prelude::*;

/// Acts: A doctor (fixed charge, capped), B pharmacy (base below charged), C never covered part,
/// D frequency-limited product, E denied by the agreement, F script failure.
struct TestPack {
    settings: PackSettings,
}

fn limit(counter: &str, period: String, max: i64) -> Limit {
    Limit { counter: counter.into(), scope: Scope::Member, period, max: Amount::from_minor(max) }
}

impl TestPack {
    fn new() -> TestPack {
        let mut plans = BTreeMap::new();
        for (name, scheme) in [("RG", Scheme::Compulsory), ("PLUS", Scheme::Supplementary)] {
            plans.insert(
                PlanName::parse(name).unwrap(),
                PlanSettings { scheme, contribution_months_before: Some(2), suspension_extends_to_household: true },
            );
        }
        TestPack {
            settings: PackSettings {
                version: RulesVersion { pack: "test".into(), version: "sha256:test".into() },
                currency: Currency::EUR,
                rounding: Rounding::HalfUp,
                filing_limit: Some(claims_domain::rules::FilingLimit::MonthsAfterNextQuarter(24)),
                plans,
                agreements: BTreeSet::from([AgreementName::parse("agreement").unwrap()]),
                prices_outside_agreement: false,
            },
        }
    }
}

impl RulePack for TestPack {
    fn settings(&self) -> &PackSettings {
        &self.settings
    }

    fn tariff(&self, context: &LineContext<'_>) -> Result<Ruling<Tariff>, RuleFailure> {
        let line = context.line;
        let base = match line.act.as_str() {
            "B" => Amount::from_minor(line.charged.minor_units() / 2),
            "E" => return Ok(Ruling::Denied(Reason::new(ReasonGroup::Pr, "96", "not covered"))),
            "F" => {
                return Err(RuleFailure { file: "test.rhai".into(), line: 1, column: 1, message: "boom".into() });
            }
            _ => Amount::from_minor(3000 * i64::from(line.quantity)),
        };
        Ok(Ruling::Covered(Tariff {
            base,
            rate_bps: RateBps::new(7000).unwrap(),
            category: line.act.to_string(),
            third_party_required: BTreeSet::new(),
            flags: Attributes::new(),
            reasons: Vec::new(),
        }))
    }

    fn compulsory(
        &self,
        context: &LineContext<'_>,
        _plan: &PlanName,
        tariff: &Tariff,
    ) -> Result<Ruling<CompulsoryRuling>, RuleFailure> {
        let day = context.line.service_date;
        let gross = tariff.rate_bps.apply(tariff.base, Rounding::HalfUp).unwrap();
        let charges = vec![Charge {
            kind: "per_visit_charge".into(),
            amount: Amount::from_minor(200 * i64::from(context.line.quantity)),
            limits: vec![
                limit("per_visit", day.year().to_string(), 5000),
                limit("per_visit_day", day.to_string(), 800),
            ],
            reason: Reason::new(ReasonGroup::Pr, "3", "per-visit charge"),
        }];
        let never_covered = if context.line.act.as_str() == "C" {
            vec![NeverCovered { kind: "surcharge".into(), amount: Amount::from_minor(500) }]
        } else {
            Vec::new()
        };
        let share_ceiling = vec![Limit {
            counter: "ceiling".into(),
            scope: Scope::Household,
            period: day.year().to_string(),
            max: Amount::from_minor(20_000),
        }];
        Ok(Ruling::Covered(CompulsoryRuling {
            rate_bps: tariff.rate_bps,
            gross,
            charges,
            never_covered,
            share_ceiling,
            reasons: Vec::new(),
        }))
    }

    fn supplementary(
        &self,
        context: &LineContext<'_>,
        _plan: &PlanName,
        tariff: &Tariff,
        compulsory: Option<&CompulsoryPart>,
    ) -> Result<Ruling<SupplementaryRuling>, RuleFailure> {
        let percent = RateBps::new(30_000).unwrap().apply(tariff.base, Rounding::HalfUp).unwrap();
        let gross = compulsory.map_or(Amount::ZERO, |part| part.gross);
        let frequency =
            (context.line.act.as_str() == "D").then(|| Frequency { counter: "frequency".into(), days: 730 });
        Ok(Ruling::Covered(SupplementaryRuling {
            amount: percent.checked_sub(gross).unwrap(),
            limits: vec![
                limit("yearly", context.line.service_date.year().to_string(), 40_000),
                limit("claim", CLAIM_PERIOD.into(), 25_000),
            ],
            frequency,
            reasons: Vec::new(),
        }))
    }
}

fn day(offset: i64) -> Date {
    Date::parse("2025-01-01").unwrap().add_days(offset).unwrap()
}

fn arbitrary_coverage(scheme: Scheme) -> impl Strategy<Value = Option<Coverage>> {
    let plan = if scheme == Scheme::Compulsory { "RG" } else { "PLUS" };
    proptest::option::of(
        (0i64..200, proptest::option::of(100i64..400), proptest::option::of(0i64..150), any::<bool>()).prop_map(
            move |(from, to, waiting, suspended)| Coverage {
                scheme,
                plan: PlanName::parse(plan).unwrap(),
                period: Period { from: day(from), to: to.map(|to| day(from + to)) },
                waiting_until: waiting.map(day),
                suspended: if suspended { vec![Period { from: day(100), to: Some(day(120)) }] } else { Vec::new() },
                unpaid_months: Vec::new(),
            },
        ),
    )
}

fn arbitrary_line(number: u32) -> impl Strategy<Value = ClaimLine> {
    (prop::sample::select(vec!["A", "B", "C", "D", "E"]), 0i64..300, 1u32..4, 0i64..20_000).prop_map(
        move |(act, offset, quantity, charged)| ClaimLine {
            number,
            act: ActCode::parse(act).unwrap(),
            service_date: day(offset),
            quantity,
            charged: Amount::from_minor(charged),
            attributes: Attributes::new(),
        },
    )
}

#[derive(Debug, Clone)]
struct Scenario {
    member: Member,
    claims: Vec<Claim>,
}

fn arbitrary_scenario() -> impl Strategy<Value = Scenario> {
    let member =
        (arbitrary_coverage(Scheme::Compulsory), arbitrary_coverage(Scheme::Supplementary)).prop_map(|(c, s)| Member {
            member_id: MemberId::parse("M-1").unwrap(),
            household_id: HouseholdId::parse("H-1").unwrap(),
            birth_date: Date::parse("1980-01-01").unwrap(),
            attributes: Attributes::new(),
            coverages: c.into_iter().chain(s).collect(),
        });
    let claim = (proptest::collection::vec(any::<u8>(), 1..5), any::<bool>(), any::<bool>()).prop_flat_map(
        |(lines, compulsory_tp, supplementary_tp)| {
            let lines: Vec<_> = (1..=lines.len() as u32).map(arbitrary_line).collect();
            (lines, Just(compulsory_tp), Just(supplementary_tp))
        },
    );
    (member, proptest::collection::vec(claim, 1..6)).prop_map(|(member, claims)| {
        let claims = claims
            .into_iter()
            .enumerate()
            .map(|(index, (lines, compulsory_tp, supplementary_tp))| {
                let mut third_party = BTreeSet::new();
                if compulsory_tp {
                    third_party.insert(Scheme::Compulsory);
                }
                if supplementary_tp {
                    third_party.insert(Scheme::Supplementary);
                }
                Claim {
                    claim_id: ClaimId::parse(&format!("C-{index}")).unwrap(),
                    provider_id: ProviderId::parse("P-1").unwrap(),
                    member_id: MemberId::parse("M-1").unwrap(),
                    submitted_on: day(300),
                    currency: Currency::EUR,
                    third_party,
                    lines,
                }
            })
            .collect();
        Scenario { member, claims }
    })
}

fn provider() -> Provider {
    Provider {
        provider_id: ProviderId::parse("P-1").unwrap(),
        agreement: Some(AgreementName::parse("agreement").unwrap()),
        period: Period { from: day(0), to: None },
        attributes: Attributes::new(),
        submitters: Default::default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn every_decision_keeps_the_money_invariants(scenario in arbitrary_scenario()) {
        let pack = TestPack::new();
        let snapshot = RegistrySnapshot { member: Some(scenario.member.clone()), household: Vec::new(), provider: Some(provider()) };
        let mut counters = Counters::new();
        let history = History::default();
        for claim in &scenario.claims {
            let inputs = Inputs { claim, registry: &snapshot, counters: &counters, history: &history };
            let adjudication = adjudicate(&inputs, &pack);
            let again = adjudicate(&inputs, &pack);
            prop_assert_eq!(decision_to_json(&adjudication.decision).to_string(), decision_to_json(&again.decision).to_string());
            let decision = &adjudication.decision;
            prop_assert_ne!(decision.outcome, Outcome::Error);
            let mut line_paid: BTreeMap<Scheme, i64> = BTreeMap::new();
            for (line, claim_line) in decision.lines.iter().zip(&claim.lines) {
                let compulsory = line.compulsory_paid().minor_units();
                let supplementary = line.supplementary_paid().minor_units();
                prop_assert_eq!(compulsory + supplementary + line.member_share.minor_units(), line.charged.minor_units());
                prop_assert!(compulsory >= 0 && supplementary >= 0 && line.member_share.minor_units() >= 0);
                if let Some(part) = &line.compulsory {
                    prop_assert!(part.gross.minor_units() >= 0 && part.gross <= line.eligible);
                    prop_assert!(part.deductions.iter().all(|deduction| deduction.amount.minor_units() > 0));
                    prop_assert!(part.ceiling_refund.minor_units() >= 0);
                }
                let cover = line.compulsory.as_ref().map_or(0, |part| part.gross.minor_units() + part.ceiling_refund.minor_units());
                let never = if claim_line.act.as_str() == "C" && line.compulsory.is_some() { 500 } else { 0 };
                prop_assert!(supplementary <= (line.charged.minor_units() - cover - never).max(0));
                for scheme in Scheme::ALL {
                    let eligible = matches!(check_eligibility(scheme, &scenario.member, &[], &pack.settings, claim_line.service_date), Eligibility::Eligible(_));
                    let paid = if scheme == Scheme::Compulsory { compulsory } else { supplementary };
                    if !eligible {
                        prop_assert_eq!(paid, 0, "{} paid a line outside its coverage", scheme.name());
                    }
                    *line_paid.entry(scheme).or_insert(0) += paid;
                }
            }
            // Payments equal the lines' shares, plus fixed charges advanced to the provider (new
            // debt), less debt recovered from the member.
            for scheme in Scheme::ALL {
                let paid: i64 = decision.payments.iter().filter(|p| p.scheme == scheme).map(|p| p.amount.minor_units()).sum();
                prop_assert!(decision.payments.iter().all(|p| p.amount.minor_units() > 0));
                let debt: i64 = decision.recoveries.iter().filter(|r| r.scheme == scheme && r.kind == claims_domain::decision::RecoveryKind::Debt).map(|r| r.amount.minor_units()).sum();
                let recovered: i64 = decision.recoveries.iter().filter(|r| r.scheme == scheme && r.kind == claims_domain::decision::RecoveryKind::Recovered).map(|r| r.amount.minor_units()).sum();
                prop_assert_eq!(paid, line_paid[&scheme] + debt - recovered);
            }
            counters.apply(&adjudication.moves);
        }
    }

    #[test]
    fn a_reversal_restores_the_counters(scenario in arbitrary_scenario()) {
        let pack = TestPack::new();
        let snapshot = RegistrySnapshot { member: Some(scenario.member.clone()), household: Vec::new(), provider: Some(provider()) };
        let before = Counters::new();
        let claim = &scenario.claims[0];
        let adjudication = adjudicate(&Inputs { claim, registry: &snapshot, counters: &before, history: &History::default() }, &pack);
        let mut after = before.clone();
        after.apply(&adjudication.moves);
        let reversal = reverse(&adjudication.decision, &adjudication.moves, &after, &pack.settings);
        after.apply(&reversal.moves);
        prop_assert_eq!(after, before);
        let original: i64 = adjudication.decision.payments.iter().map(|p| p.amount.minor_units()).sum();
        let reversed: i64 = reversal.decision.payments.iter().map(|p| p.amount.minor_units()).sum();
        prop_assert_eq!(original, -reversed);
    }
}

#[test]
fn a_rule_failure_gives_an_error_decision_with_no_effect() {
    let pack = TestPack::new();
    let member = Member {
        member_id: MemberId::parse("M-1").unwrap(),
        household_id: HouseholdId::parse("H-1").unwrap(),
        birth_date: Date::parse("1980-01-01").unwrap(),
        attributes: Attributes::new(),
        coverages: vec![Coverage {
            scheme: Scheme::Compulsory,
            plan: PlanName::parse("RG").unwrap(),
            period: Period { from: day(0), to: None },
            waiting_until: None,
            suspended: Vec::new(),
            unpaid_months: Vec::new(),
        }],
    };
    let line = |number, act: &str| ClaimLine {
        number,
        act: ActCode::parse(act).unwrap(),
        service_date: day(10),
        quantity: 1,
        charged: Amount::from_minor(3000),
        attributes: Attributes::new(),
    };
    let claim = Claim {
        claim_id: ClaimId::parse("C-1").unwrap(),
        provider_id: ProviderId::parse("P-1").unwrap(),
        member_id: MemberId::parse("M-1").unwrap(),
        submitted_on: day(20),
        currency: Currency::EUR,
        third_party: BTreeSet::new(),
        lines: vec![line(1, "A"), line(2, "F")],
    };
    let snapshot = RegistrySnapshot { member: Some(member), household: Vec::new(), provider: Some(provider()) };
    let adjudication = adjudicate(
        &Inputs { claim: &claim, registry: &snapshot, counters: &Counters::new(), history: &History::default() },
        &pack,
    );
    assert_eq!(adjudication.decision.outcome, Outcome::Error);
    assert_eq!(adjudication.decision.error.as_ref().map(ToString::to_string).as_deref(), Some("test.rhai:1:1: boom"));
    assert!(adjudication.moves.is_empty());
    assert!(adjudication.decision.payments.is_empty());
}
