//! Small packs in temporary folders, and a claim line to run them on.

#![allow(dead_code, reason = "each test file uses a different part of the helpers")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use claims_domain::attributes::{AttributeValue, Attributes};
use claims_domain::claim::{Claim, ClaimLine, Scheme};
use claims_domain::date::{Date, Period};
use claims_domain::ids::{ActCode, AgreementName, ClaimId, HouseholdId, MemberId, PlanName, ProviderId};
use claims_domain::money::{Amount, Currency};
use claims_domain::registry::{Member, Provider};
use claims_domain::rules::LineContext;

pub const MANIFEST: &str = r#"#{
    pack: "test",
    currency: "EUR",
    rounding: "half_up",
    plans: #{
        RG: #{ scheme: "compulsory", script: "plans/rg.rhai" },
        CONFORT: #{ scheme: "supplementary", script: "plans/products.rhai" },
    },
    agreements: #{ "test-doctors": "agreements/doctors.rhai" },
}"#;

pub const PARAMS: &str = r#"#{
    G_FEE: [
        ["2000-01-01", 2500],
        ["2023-12-22", 2650],
        ["2024-12-22", 3000],
    ],
    PERCENT: [["2020-01-01", #{ CONFORT: 20000 }]],
}"#;

pub const TARIFF: &str = r#"
fn tariff(line, member, provider, claim) {
    if line.act == "G" {
        return #{ base: param("G_FEE", line.service_date) * line.quantity, rate_bps: 7000, category: "doctor" };
    }
    deny("CO", "B7", `act ${line.act} is not in the agreement`)
}
"#;

pub const COMPULSORY: &str = r#"
fn compulsory(plan, line, member, provider, claim, tariff) {
    #{ rate_bps: tariff.rate_bps }
}
"#;

pub const SUPPLEMENTARY: &str = r#"
fn supplementary(plan, line, member, provider, claim, tariff, compulsory) {
    #{ amount: apply_rate(tariff.base, param("PERCENT", line.service_date)[plan]) - compulsory.gross }
}
"#;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A pack folder under the system temporary folder, removed when dropped.
pub struct TempPack {
    pub dir: PathBuf,
}

impl TempPack {
    /// The default pack, with `replacements` written over (or next to) its files.
    pub fn new(replacements: &[(&str, &str)]) -> TempPack {
        let mut files: BTreeMap<&str, &str> = [
            ("pack.rhai", MANIFEST),
            ("params.rhai", PARAMS),
            ("agreements/doctors.rhai", TARIFF),
            ("plans/rg.rhai", COMPULSORY),
            ("plans/products.rhai", SUPPLEMENTARY),
        ]
        .into_iter()
        .collect();
        files.extend(replacements.iter().copied());
        let unique = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("claims-rules-test-{}-{unique}", std::process::id()));
        for (path, text) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().expect("a file has a folder")).expect("create the pack folder");
            std::fs::write(&path, text).expect("write a pack file");
        }
        TempPack { dir }
    }

    pub fn write(&self, relative: &str, text: &str) {
        let path = self.dir.join(relative);
        std::fs::create_dir_all(path.parent().expect("a file has a folder")).expect("create the folder");
        std::fs::write(path, text).expect("write a pack file");
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// How messages name a file of this pack.
    pub fn label(&self, relative: &str) -> String {
        format!("{}/{relative}", self.dir.display())
    }
}

impl Drop for TempPack {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A claim with one line, its member and its provider.
pub struct Fixture {
    pub claim: Claim,
    pub member: Member,
    pub provider: Provider,
    pub agreement: Option<AgreementName>,
}

pub fn day(text: &str) -> Date {
    Date::parse(text).expect("a test date")
}

impl Fixture {
    pub fn new(act: &str, service_date: &str, charged: i64) -> Fixture {
        let mut line_attributes = Attributes::new();
        line_attributes.insert("care_pathway".into(), AttributeValue::Text("in".into()));
        let mut member_attributes = Attributes::new();
        member_attributes.insert("ald".into(), AttributeValue::Bool(false));
        let mut provider_attributes = Attributes::new();
        provider_attributes.insert("sector".into(), AttributeValue::Integer(1));
        let agreement = AgreementName::parse("test-doctors").expect("agreement name");
        Fixture {
            claim: Claim {
                claim_id: ClaimId::parse("C-1").expect("claim id"),
                provider_id: ProviderId::parse("P-1").expect("provider id"),
                member_id: MemberId::parse("M-1").expect("member id"),
                submitted_on: day("2025-11-06"),
                currency: Currency::EUR,
                third_party: BTreeSet::from([Scheme::Compulsory]),
                lines: vec![ClaimLine {
                    number: 1,
                    act: ActCode::parse(act).expect("act code"),
                    service_date: day(service_date),
                    quantity: 1,
                    charged: Amount::from_minor(charged),
                    attributes: line_attributes,
                }],
            },
            member: Member {
                member_id: MemberId::parse("M-1").expect("member id"),
                household_id: HouseholdId::parse("H-1").expect("household id"),
                birth_date: day("2008-11-06"),
                attributes: member_attributes,
                coverages: Vec::new(),
            },
            provider: Provider {
                provider_id: ProviderId::parse("P-1").expect("provider id"),
                agreement: Some(agreement.clone()),
                period: Period { from: day("2020-01-01"), to: None },
                attributes: provider_attributes,
                submitters: Default::default(),
            },
            agreement: Some(agreement),
        }
    }

    pub fn context(&self) -> LineContext<'_> {
        LineContext {
            claim: &self.claim,
            line: &self.claim.lines[0],
            member: &self.member,
            provider: &self.provider,
            agreement: self.agreement.as_ref(),
        }
    }
}

pub fn plan(name: &str) -> PlanName {
    PlanName::parse(name).expect("plan name")
}
