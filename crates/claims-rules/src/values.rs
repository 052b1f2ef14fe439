//! The values scripts receive (`rules/README.md`, "Values your scripts receive"): the line,
//! member, provider, claim, tariff and compulsory part as Rhai maps, built field by field so a
//! script never sees a Rust type or a money amount as text.
//!
//! The pipeline asks three questions per line with the same line, member, provider and claim
//! (and the same tariff for the last two), and consecutive lines share the member, provider and
//! claim. Building a map is what costs (text, dates, sorting keys); copying a built one costs about
//! half as much.
//! So each thread keeps the last map built of each kind with the facts it was built from, and
//! hands out a copy when the facts are equal. The key is the content, never an address, so a
//! copy is always exactly the map that would have been built; each call still gets its own copy,
//! so nothing a script does to its arguments is seen by another call.

use std::cell::RefCell;
use std::collections::BTreeSet;

use claims_domain::attributes::{AttributeValue, Attributes};
use claims_domain::claim::{Claim, ClaimLine, Scheme};
use claims_domain::date::Date;
use claims_domain::decision::CompulsoryPart;
use claims_domain::ids::{AgreementName, ClaimId, HouseholdId, MemberId, PlanName, ProviderId};
use claims_domain::rules::{LineContext, Tariff};
use rhai::{Dynamic, ImmutableString, Map};

use crate::engine::{array_of, date_text, reason_map};

fn attributes_value(attributes: &Attributes) -> Dynamic {
    let map: Map = attributes.iter().map(|(name, value)| (name.as_str().into(), attribute_value(value))).collect();
    Dynamic::from_map(map)
}

fn attribute_value(value: &AttributeValue) -> Dynamic {
    match value {
        AttributeValue::Bool(flag) => Dynamic::from_bool(*flag),
        AttributeValue::Integer(number) => Dynamic::from_int(*number),
        AttributeValue::Text(text) => text.as_str().into(),
    }
}

fn map_of(entries: impl IntoIterator<Item = (&'static str, Dynamic)>) -> Dynamic {
    let mut map = Map::new();
    for (key, value) in entries {
        map.insert(key.into(), value);
    }
    Dynamic::from_map(map)
}

fn text(value: &str) -> Dynamic {
    Dynamic::from(ImmutableString::from(value))
}

fn date(value: Date) -> Dynamic {
    Dynamic::from(date_text(value))
}

/// The last value of one kind built on this thread, with what it was built from.
struct Slot<K>(Option<(K, Dynamic)>);

impl<K> Default for Slot<K> {
    fn default() -> Self {
        Slot(None)
    }
}

impl<K> Slot<K> {
    /// A copy of the value built from facts `matches` accepts, building (and keeping) it first
    /// when the last one was built from other facts.
    fn get(&mut self, matches: impl FnOnce(&K) -> bool, build: impl FnOnce() -> (K, Dynamic)) -> Dynamic {
        match &self.0 {
            Some((key, value)) if matches(key) => value.clone(),
            _ => {
                let (key, value) = build();
                self.0 = Some((key, value.clone()));
                value
            }
        }
    }

    /// The value built from facts `matches` accepts, moved out of the slot when it is there
    /// (its last use: no copy), built otherwise.
    fn take(&mut self, matches: impl FnOnce(&K) -> bool, build: impl FnOnce() -> Dynamic) -> Dynamic {
        match self.0.take() {
            Some((key, value)) if matches(&key) => value,
            kept => {
                self.0 = kept;
                build()
            }
        }
    }
}

struct MemberKey {
    member_id: MemberId,
    household_id: HouseholdId,
    birth_date: Date,
    age: i64,
    attributes: Attributes,
}

struct ProviderKey {
    provider_id: ProviderId,
    agreement: Option<AgreementName>,
    attributes: Attributes,
}

struct ClaimKey {
    claim_id: ClaimId,
    submitted_on: Date,
    third_party: BTreeSet<Scheme>,
}

#[derive(Default)]
struct Built {
    /// Plan names: a line asks a compulsory plan and then a product, so a few are kept.
    plans: Vec<(PlanName, Dynamic)>,
    line: Slot<ClaimLine>,
    member: Slot<MemberKey>,
    provider: Slot<ProviderKey>,
    claim: Slot<ClaimKey>,
    tariff: Slot<Tariff>,
}

thread_local! {
    static BUILT: RefCell<Built> = RefCell::new(Built::default());
}

/// Plan names kept per thread at most (a pack has a handful).
const PLANS_KEPT: usize = 16;

/// `plan`: the plan's name.
pub(crate) fn plan_value(plan: &PlanName) -> Dynamic {
    BUILT.with_borrow_mut(|built| {
        if let Some((_, value)) = built.plans.iter().find(|(name, _)| name == plan) {
            return value.clone();
        }
        if built.plans.len() == PLANS_KEPT {
            built.plans.clear();
        }
        let value = text(plan.as_str());
        built.plans.push((plan.clone(), value.clone()));
        value
    })
}

/// `line`: `line`, `act`, `service_date`, `quantity`, `charged`, `attributes`.
pub(crate) fn line_value(context: &LineContext<'_>) -> Dynamic {
    let line = context.line;
    BUILT.with_borrow_mut(|built| built.line.get(|key| key == line, || (line.clone(), build_line(line))))
}

/// `line`, for the last question asked about it (`supplementary`): the kept value itself.
pub(crate) fn last_line_value(context: &LineContext<'_>) -> Dynamic {
    let line = context.line;
    BUILT.with_borrow_mut(|built| built.line.take(|key| key == line, || build_line(line)))
}

fn build_line(line: &ClaimLine) -> Dynamic {
    map_of([
        ("line", Dynamic::from_int(i64::from(line.number))),
        ("act", text(line.act.as_str())),
        ("service_date", date(line.service_date)),
        ("quantity", Dynamic::from_int(i64::from(line.quantity))),
        ("charged", Dynamic::from_int(line.charged.minor_units())),
        ("attributes", attributes_value(&line.attributes)),
    ])
}

/// `member`: `member_id`, `household_id`, `birth_date`, `age` (full years on the line's date),
/// `attributes`.
pub(crate) fn member_value(context: &LineContext<'_>) -> Dynamic {
    let member = context.member;
    let age = member.birth_date.age_on(context.line.service_date);
    BUILT.with_borrow_mut(|built| {
        built.member.get(
            |key| {
                key.age == age
                    && key.birth_date == member.birth_date
                    && key.member_id == member.member_id
                    && key.household_id == member.household_id
                    && key.attributes == member.attributes
            },
            || {
                let value = map_of([
                    ("member_id", text(member.member_id.as_str())),
                    ("household_id", text(member.household_id.as_str())),
                    ("birth_date", date(member.birth_date)),
                    ("age", Dynamic::from_int(age)),
                    ("attributes", attributes_value(&member.attributes)),
                ]);
                let key = MemberKey {
                    member_id: member.member_id.clone(),
                    household_id: member.household_id.clone(),
                    birth_date: member.birth_date,
                    age,
                    attributes: member.attributes.clone(),
                };
                (key, value)
            },
        )
    })
}

/// `provider`: `provider_id`, `agreement` (the one in force on the line's date, or `()`),
/// `attributes`.
pub(crate) fn provider_value(context: &LineContext<'_>) -> Dynamic {
    let provider = context.provider;
    let agreement = context.agreement;
    BUILT.with_borrow_mut(|built| {
        built.provider.get(
            |key| {
                key.provider_id == provider.provider_id
                    && key.agreement.as_ref() == agreement
                    && key.attributes == provider.attributes
            },
            || {
                let value = map_of([
                    ("provider_id", text(provider.provider_id.as_str())),
                    ("agreement", agreement.map_or(Dynamic::UNIT, |name| text(name.as_str()))),
                    ("attributes", attributes_value(&provider.attributes)),
                ]);
                let key = ProviderKey {
                    provider_id: provider.provider_id.clone(),
                    agreement: agreement.cloned(),
                    attributes: provider.attributes.clone(),
                };
                (key, value)
            },
        )
    })
}

/// `claim`: `claim_id`, `submitted_on`, `third_party` (schemes the provider asked to be paid by).
pub(crate) fn claim_value(context: &LineContext<'_>) -> Dynamic {
    let claim: &Claim = context.claim;
    BUILT.with_borrow_mut(|built| {
        built.claim.get(
            |key| {
                key.claim_id == claim.claim_id
                    && key.submitted_on == claim.submitted_on
                    && key.third_party == claim.third_party
            },
            || {
                let value = map_of([
                    ("claim_id", text(claim.claim_id.as_str())),
                    ("submitted_on", date(claim.submitted_on)),
                    ("third_party", array_of(claim.third_party.iter().map(|scheme| text(scheme.name())))),
                ]);
                let key = ClaimKey {
                    claim_id: claim.claim_id.clone(),
                    submitted_on: claim.submitted_on,
                    third_party: claim.third_party.clone(),
                };
                (key, value)
            },
        )
    })
}

/// `tariff`: what `fn tariff` returned. Flags appear both as top-level keys (`tariff.heavy_act`)
/// and in `tariff.flags`.
pub(crate) fn tariff_value(tariff: &Tariff) -> Dynamic {
    BUILT.with_borrow_mut(|built| built.tariff.get(|key| key == tariff, || (tariff.clone(), build_tariff(tariff))))
}

/// `tariff`, for the last question asked about it (`supplementary`): the kept value itself.
pub(crate) fn last_tariff_value(tariff: &Tariff) -> Dynamic {
    BUILT.with_borrow_mut(|built| built.tariff.take(|key| key == tariff, || build_tariff(tariff)))
}

fn build_tariff(tariff: &Tariff) -> Dynamic {
    let mut map = Map::new();
    for (name, value) in &tariff.flags {
        map.insert(name.as_str().into(), attribute_value(value));
    }
    map.insert("base".into(), Dynamic::from_int(tariff.base.minor_units()));
    map.insert("rate_bps".into(), Dynamic::from_int(i64::from(tariff.rate_bps.bps())));
    map.insert("category".into(), text(&tariff.category));
    map.insert(
        "third_party_required".into(),
        array_of(tariff.third_party_required.iter().map(|scheme| text(scheme.name()))),
    );
    map.insert("reasons".into(), array_of(tariff.reasons.iter().map(|reason| reason_map(reason).into())));
    map.insert("flags".into(), attributes_value(&tariff.flags));
    Dynamic::from_map(map)
}

/// `compulsory`: `plan`, `rate_bps`, `gross`, `deductions`, `ceiling_refund`, `paid`, or `()`
/// when the member has no compulsory cover that day.
pub(crate) fn compulsory_value(compulsory: Option<&CompulsoryPart>) -> Dynamic {
    let Some(part) = compulsory else {
        return Dynamic::UNIT;
    };
    let deductions = part.deductions.iter().map(|deduction| {
        map_of([("kind", text(&deduction.kind)), ("amount", Dynamic::from_int(deduction.amount.minor_units()))])
    });
    map_of([
        ("plan", text(part.plan.as_str())),
        ("rate_bps", Dynamic::from_int(i64::from(part.rate_bps.bps()))),
        ("gross", Dynamic::from_int(part.gross.minor_units())),
        ("deductions", array_of(deductions)),
        ("ceiling_refund", Dynamic::from_int(part.ceiling_refund.minor_units())),
        ("paid", Dynamic::from_int(part.paid.minor_units())),
    ])
}

#[cfg(test)]
mod tests {
    use claims_domain::attributes::{AttributeValue, Attributes};
    use claims_domain::claim::{Claim, ClaimLine, Scheme};
    use claims_domain::date::{Date, Period};
    use claims_domain::ids::{ActCode, AgreementName, ClaimId, HouseholdId, MemberId, PlanName, ProviderId};
    use claims_domain::money::{Amount, Currency};
    use claims_domain::registry::{Member, Provider};
    use claims_domain::rules::{LineContext, RulePack, Ruling, Tariff};

    use crate::RhaiPack;
    use crate::hash::SourceFile;

    fn day(text: &str) -> Date {
        Date::parse(text).expect("a test date")
    }

    fn attributes(entries: &[(&str, AttributeValue)]) -> Attributes {
        entries.iter().map(|(name, value)| ((*name).to_owned(), value.clone())).collect()
    }

    struct Fixture {
        claim: Claim,
        member: Member,
        provider: Provider,
        agreement: Option<AgreementName>,
    }

    impl Fixture {
        fn new(claim_id: &str, member_id: &str, service_date: &str, sector: i64) -> Fixture {
            let agreement = AgreementName::parse("test-doctors").expect("agreement name");
            Fixture {
                claim: Claim {
                    claim_id: ClaimId::parse(claim_id).expect("claim id"),
                    provider_id: ProviderId::parse("P-1").expect("provider id"),
                    member_id: MemberId::parse(member_id).expect("member id"),
                    submitted_on: day("2025-11-06"),
                    currency: Currency::EUR,
                    third_party: [Scheme::Compulsory].into_iter().collect(),
                    lines: vec![ClaimLine {
                        number: 1,
                        act: ActCode::parse("G").expect("act code"),
                        service_date: day(service_date),
                        quantity: 1,
                        charged: Amount::from_minor(3000),
                        attributes: attributes(&[("care_pathway", AttributeValue::Text("in".into()))]),
                    }],
                },
                member: Member {
                    member_id: MemberId::parse(member_id).expect("member id"),
                    household_id: HouseholdId::parse("H-1").expect("household id"),
                    birth_date: day("2008-11-06"),
                    attributes: attributes(&[("ald", AttributeValue::Bool(false))]),
                    coverages: Vec::new(),
                },
                provider: Provider {
                    provider_id: ProviderId::parse("P-1").expect("provider id"),
                    agreement: Some(agreement.clone()),
                    period: Period { from: day("2020-01-01"), to: None },
                    attributes: attributes(&[("sector", AttributeValue::Integer(sector))]),
                    submitters: Default::default(),
                },
                agreement: Some(agreement),
            }
        }

        fn context(&self) -> LineContext<'_> {
            LineContext {
                claim: &self.claim,
                line: &self.claim.lines[0],
                member: &self.member,
                provider: &self.provider,
                agreement: self.agreement.as_ref(),
            }
        }
    }

    const MANIFEST: &str = r#"#{ pack: "t", currency: "EUR", rounding: "half_up",
        plans: #{ RG: #{ scheme: "compulsory", script: "plans/rg.rhai" },
                  CONFORT: #{ scheme: "supplementary", script: "plans/products.rhai" } },
        agreements: #{ "test-doctors": "agreements/doctors.rhai" } }"#;

    /// Every function reports what it sees of its arguments in a text, then changes them all.
    const SEEN: &str = "`${line.act} ${line.service_date} ${line.attributes} ${member.member_id} ${member.age} \
        ${member.birth_date} ${member.attributes} ${provider.provider_id} ${provider.agreement} ${provider.attributes} \
        ${claim.claim_id} ${claim.submitted_on} ${claim.third_party}`";
    const CHANGE: &str = "line.act = \"Z\"; line.attributes.care_pathway = \"out\"; member.age = 99; \
        member.attributes.ald = true; provider.attributes.sector = 9; claim.third_party.clear();";

    fn pack() -> RhaiPack {
        let tariff = format!(
            "fn tariff(line, member, provider, claim) {{ let seen = {SEEN}; {CHANGE} \
             #{{ base: 3000, rate_bps: 7000, category: \"doctor\", seen: seen }} }}"
        );
        let compulsory = format!(
            "fn compulsory(plan, line, member, provider, claim, tariff) {{ let seen = {SEEN} + ` ${{tariff}} ${{plan}}`; \
             {CHANGE} tariff.base = 1; tariff.flags.x = 1; plan = \"X\"; #{{ rate_bps: 7000, reasons: [reason(\"PR\", \"1\", seen)] }} }}"
        );
        let supplementary = format!(
            "fn supplementary(plan, line, member, provider, claim, tariff, compulsory) {{ let seen = {SEEN} + ` ${{tariff}} ${{plan}}`; \
             {CHANGE} #{{ amount: 0, reasons: [reason(\"PR\", \"1\", seen)] }} }}"
        );
        let files = [
            SourceFile { path: "pack.rhai".into(), text: MANIFEST.into() },
            SourceFile { path: "agreements/doctors.rhai".into(), text: tariff },
            SourceFile { path: "plans/rg.rhai".into(), text: compulsory },
            SourceFile { path: "plans/products.rhai".into(), text: supplementary },
        ];
        RhaiPack::from_sources("t", &files).unwrap_or_else(|error| panic!("{error}"))
    }

    /// What the three functions saw, as texts.
    fn seen(pack: &RhaiPack, fixture: &Fixture) -> Vec<String> {
        let context = fixture.context();
        let Ok(Ruling::Covered(tariff)) = pack.tariff(&context) else { panic!("a tariff") };
        let tariff = Tariff { flags: Attributes::new(), ..tariff };
        let seen_by_tariff = pack.tariff(&context).map(|ruling| format!("{ruling:?}")).unwrap_or_default();
        let plan = PlanName::parse("RG").expect("plan");
        let product = PlanName::parse("CONFORT").expect("plan");
        let compulsory = match pack.compulsory(&context, &plan, &tariff) {
            Ok(Ruling::Covered(ruling)) => ruling.reasons[0].text.clone(),
            other => panic!("{other:?}"),
        };
        let supplementary = match pack.supplementary(&context, &product, &tariff, None) {
            Ok(Ruling::Covered(ruling)) => ruling.reasons[0].text.clone(),
            other => panic!("{other:?}"),
        };
        vec![seen_by_tariff, compulsory, supplementary]
    }

    #[test]
    fn each_call_gets_its_own_copy_of_the_values_whatever_the_last_call_did() {
        let pack = pack();
        let first = Fixture::new("C-1", "M-1", "2025-11-05", 1);
        let seen_first = seen(&pack, &first);
        assert!(
            seen_first[1].starts_with("G 2025-11-05 #{\"care_pathway\": \"in\"} M-1 16 2008-11-06"),
            "{}",
            seen_first[1]
        );
        assert!(seen_first[1].ends_with("\"base\": 3000, \"category\": \"doctor\", \"flags\": #{}, \"rate_bps\": 7000, \"reasons\": [], \"third_party_required\": []} RG"), "{}", seen_first[1]);
        // The same facts again: the same values, untouched by what the scripts changed.
        assert_eq!(seen(&pack, &first), seen_first);
        // Other facts: values built from them, not the last ones.
        let other = Fixture::new("C-2", "M-2", "2025-11-07", 2);
        let seen_other = seen(&pack, &other);
        assert!(
            seen_other[1].starts_with("G 2025-11-07 #{\"care_pathway\": \"in\"} M-2 17 2008-11-06"),
            "{}",
            seen_other[1]
        );
        assert!(seen_other[1].contains("#{\"sector\": 2} C-2 2025-11-06 [\"compulsory\"]"), "{}", seen_other[1]);
        assert_eq!(seen(&pack, &first), seen_first);
    }
}
