//! Probing the products' formulas for parts the law forbids a supplementary cover to pay: the
//! compulsory plan's fixed charges (French per-visit charge and deductibles) and the parts it
//! marks `never_covered` (the out-of-pathway surcharge).
//!
//! The engine already caps every product at `charged − compulsory gross − never covered`, so a
//! formula can never pay *more* than that. What the cap cannot see is a formula that pays those
//! parts while staying under it: `apply_rate(base, 9000) - compulsory.paid` adds the fixed charge
//! back (`paid` is `gross − charges`), and `apply_rate(base, 9000) - compulsory.gross` pays part
//! of an out-of-pathway surcharge (the surcharge lowers `gross`). A static reading cannot decide
//! this in general, so the check runs the formula: for generated lines (each plan, each category
//! and act the scripts compare with, attributes at their defaults and then one at a time set to
//! what the scripts compare them with (tariff flags all false, then all true), a line charged at
//! the base and at three times it), with the pack's own compulsory plan, it compares what the
//! product pays
//! - with the charges the plan took, and with none taken: paying more when a charge is taken is
//!   paying the charge;
//! - with the plan's gross, and with the gross the plan would have paid without the
//!   never-covered part (`gross + never covered`), under the same cap: paying more in the first
//!   case is paying the never-covered part.
//!
//! The ruling is found by running a copy of the script in which every `amount:` of a map
//! literal (and every `.amount =`) records its own place; the mistake is reported there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use claims_domain::claim::Scheme;
use claims_domain::money::{Amount, RateBps, Rounding};
use claims_domain::rules::{Ruling, Tariff};
use rhai::{AST, Array, Dynamic, Engine, Map, Scope};

use crate::diagnostic::{Diagnostic, function_definition, line_and_column};
use crate::engine::{PackData, pack_engine};
use crate::lints::{Located, Token, tokens};
use crate::load::Parts;
use crate::rulings;

/// The base of every probe line; the compulsory rate the probe tariff gives.
const BASE: i64 = 10_000;
const TARIFF_RATE_BPS: i64 = 7000;
/// Probes per product script at most, so that `check` stays quick on a large pack.
const MOST_PROBES: usize = 50_000;

/// Mistakes of the products' formulas, one per ruling and kind of forbidden part.
pub(crate) fn probe_products(parts: &Parts) -> Vec<Diagnostic> {
    let Some(manifest) = &parts.manifest else { return Vec::new() };
    let last_site: Arc<Mutex<Option<(usize, i64)>>> = Arc::new(Mutex::new(None));
    let mut engine = pack_engine(Arc::new(PackData { params: parts.params.clone(), rounding: parts.rounding }));
    let recorder = Arc::clone(&last_site);
    engine.register_fn("__probe_site", move |site: i64, value: Dynamic| -> Dynamic {
        if let (Ok(site), Ok(amount)) = (usize::try_from(site), value.as_int()) {
            *recorder.lock().unwrap_or_else(PoisonError::into_inner) = Some((site, amount));
        }
        value
    });
    let compulsory: Vec<(&str, &AST)> = manifest
        .plans
        .iter()
        .filter(|(_, plan)| plan.settings.scheme == Scheme::Compulsory)
        .filter_map(|(name, plan)| Some((name.as_str(), &parts.scripts.get(&plan.script)?.ast)))
        .collect();
    let texts: Vec<&str> = parts.scripts.values().map(|script| script.text.as_str()).collect();
    let vocabulary = Vocabulary::of(&texts, parts);

    let mut by_script: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, plan) in &manifest.plans {
        if plan.settings.scheme == Scheme::Supplementary {
            by_script.entry(plan.script.as_str()).or_default().push(name.as_str());
        }
    }
    let mut problems = Vec::new();
    for (relative, plans) in by_script {
        let Some(script) = parts.scripts.get(relative) else { continue };
        let (instrumented, sites) = instrument(&script.text);
        let Ok(ast) = engine.compile(&instrumented) else { continue };
        let prober = Prober {
            engine: &engine,
            ast: &ast,
            last_site: &last_site,
            compulsory: &compulsory,
            rounding: parts.rounding,
        };
        let mut reported = BTreeSet::new();
        for mut probe in vocabulary.probes().take(MOST_PROBES) {
            let arguments = prober.arguments(&probe);
            let rulings = prober.compulsory_rulings(&arguments);
            if rulings.is_empty() {
                continue;
            }
            for plan in &plans {
                (*plan).clone_into(&mut probe.plan);
                for (kind, extra, site) in prober.run(&probe, &arguments, &rulings) {
                    let place = site
                        .and_then(|site| sites.get(site).copied())
                        .unwrap_or_else(|| function_definition(&script.text, "supplementary"));
                    if reported.insert((place, kind)) {
                        problems.push(Diagnostic::at(&script.label, place, kind.message(extra, &probe)));
                    }
                }
            }
        }
    }
    problems
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Forbidden {
    FixedCharges,
    NeverCovered,
}

impl Forbidden {
    fn message(self, extra: i64, probe: &Probe) -> String {
        let case = format!(
            "plan {}, category {:?}, act {:?}, charged {}{}",
            probe.plan,
            probe.category,
            probe.act,
            probe.charged,
            probe
                .setting
                .as_ref()
                .map(|(owner, key, value)| format!(", {owner} attribute {key} = {value}"))
                .unwrap_or_default()
        );
        match self {
            Forbidden::FixedCharges => format!(
                "this ruling pays the compulsory plan's fixed charges, which no product may cover: with the \
                 charges taken it pays {extra} more than without them ({case}); compute from compulsory.gross, \
                 not compulsory.paid or compulsory.deductions"
            ),
            Forbidden::NeverCovered => format!(
                "this ruling pays a part the compulsory plan marks never_covered (e.g. the out-of-pathway \
                 surcharge), which no product may cover: it pays {extra} more than if the plan had paid that part \
                 ({case})"
            ),
        }
    }
}

/// One generated line.
struct Probe {
    plan: String,
    category: String,
    act: String,
    charged: i64,
    date: String,
    /// The one attribute set (owner, key, value); the others are absent.
    setting: Option<(String, String, Dynamic)>,
    line_attributes: Map,
    member_attributes: Map,
    provider_attributes: Map,
    tariff_flags: Map,
    /// An agreement of the pack, as the provider's.
    agreement: Option<String>,
}

/// What the scripts of the pack compare with, from which probes are made.
struct Vocabulary {
    categories: Vec<String>,
    acts: Vec<String>,
    date: String,
    /// Attribute owner (`line`, `member`, `provider`), key, and the value to set.
    attributes: Vec<(String, String, Dynamic)>,
    /// Keys read as `tariff.<key>` that a tariff only has as a flag.
    tariff_flags: BTreeSet<String>,
    agreement: Option<String>,
}

const TARIFF_KEYS: &[&str] = &["base", "rate_bps", "category", "third_party_required", "reasons", "flags"];

impl Vocabulary {
    fn of(texts: &[&str], parts: &Parts) -> Vocabulary {
        let mut categories = BTreeSet::new();
        let mut acts = BTreeSet::new();
        let mut attributes = BTreeMap::new();
        let mut tariff_flags = BTreeSet::new();
        for text in texts {
            let tokens = tokens(text);
            let token = |index: usize| tokens.get(index).map(|located: &Located| &located.token);
            for index in 0..tokens.len() {
                match &tokens[index].token {
                    // `tariff.category == "doctor"`, `"FRAME" == line.act`: the word on the other side.
                    Token::Symbol("==" | "!=") => {
                        for (literal, other) in [(index.wrapping_sub(1), index + 1), (index + 1, index.wrapping_sub(1))]
                        {
                            if let (Some(Token::Text(text)), Some(Token::Word(word))) = (token(literal), token(other)) {
                                if word.contains("category") {
                                    categories.insert(text.clone());
                                } else if word == "act" || word.ends_with("_act") {
                                    acts.insert(text.clone());
                                }
                            }
                        }
                    }
                    Token::Word(word) if word == "tariff" && token(index + 1) == Some(&Token::Symbol(".")) => {
                        if let Some(Token::Word(key)) = token(index + 2)
                            && !TARIFF_KEYS.contains(&key.as_str())
                        {
                            tariff_flags.insert(key.clone());
                        }
                    }
                    Token::Word(word) if word == "attr" => {
                        if let Some((owner, key, value)) = attribute_read(&tokens, index) {
                            attributes.entry((owner, key)).or_insert(value);
                        }
                    }
                    _ => {}
                }
            }
        }
        // Act codes are mostly keys of the tables (`PHARMACY_RATE: #{ PH7: 6500 }`) or listed in
        // them (`MEDICINE_CODES_COVERED: #{ CONFORT: ["PH7"] }`).
        for (_, rows) in parts.params.tables() {
            for (_, value) in rows {
                names_in(value, 2, &mut acts);
            }
        }
        acts.insert("X".to_owned());
        categories.insert("other".to_owned());
        let date = parts
            .params
            .tables()
            .filter_map(|(_, rows)| rows.last().map(|(date, _)| *date))
            .max()
            .map_or_else(|| "2025-06-15".to_owned(), |date| date.to_string());
        let agreement = parts
            .manifest
            .as_ref()
            .and_then(|manifest| manifest.agreements.keys().next())
            .map(|name| name.as_str().to_owned());
        Vocabulary {
            categories: categories.into_iter().collect(),
            acts: acts.into_iter().collect(),
            date,
            attributes: attributes.into_iter().map(|((owner, key), value)| (owner, key, value)).collect(),
            tariff_flags,
            agreement,
        }
    }

    /// Every generated line; the plan is set by the caller.
    fn probes(&self) -> impl Iterator<Item = Probe> + '_ {
        self.categories.iter().flat_map(move |category| {
            self.acts.iter().flat_map(move |act| {
                let settings = std::iter::once(None).chain(self.attributes.iter().map(Some));
                settings.flat_map(move |setting| {
                    let flag_values: &[bool] = if self.tariff_flags.is_empty() { &[false] } else { &[false, true] };
                    flag_values.iter().copied().flat_map(move |flags| {
                        [BASE, 3 * BASE]
                            .into_iter()
                            .map(move |charged| self.probe(category, act, charged, setting, flags))
                    })
                })
            })
        })
    }

    fn probe(
        &self,
        category: &str,
        act: &str,
        charged: i64,
        setting: Option<&(String, String, Dynamic)>,
        flags: bool,
    ) -> Probe {
        let mut owners: BTreeMap<&str, Map> = BTreeMap::new();
        if let Some((owner, key, value)) = setting {
            owners.entry(owner.as_str()).or_default().insert(key.as_str().into(), value.clone());
        }
        let tariff_flags =
            self.tariff_flags.iter().map(|flag| (flag.as_str().into(), Dynamic::from_bool(flags))).collect();
        Probe {
            plan: String::new(),
            category: category.to_owned(),
            act: act.to_owned(),
            charged,
            date: self.date.clone(),
            setting: setting.cloned(),
            line_attributes: owners.remove("line").unwrap_or_default(),
            member_attributes: owners.remove("member").unwrap_or_default(),
            provider_attributes: owners.remove("provider").unwrap_or_default(),
            tariff_flags,
            agreement: self.agreement.clone(),
        }
    }
}

/// `attr(owner.attributes, "key", default)`, and the value to set it to: what it is compared
/// with (`attr(...) == "out"`), else the other boolean, else the default plus one.
fn attribute_read(tokens: &[Located], at: usize) -> Option<(String, String, Dynamic)> {
    let token = |index: usize| tokens.get(index).map(|located| &located.token);
    let (Some(Token::Symbol("(")), Some(Token::Word(owner)), Some(Token::Symbol(".")), Some(Token::Word(attributes))) =
        (token(at + 1), token(at + 2), token(at + 3), token(at + 4))
    else {
        return None;
    };
    let (Some(Token::Symbol(",")), Some(Token::Text(key)), Some(Token::Symbol(","))) =
        (token(at + 5), token(at + 6), token(at + 7))
    else {
        return None;
    };
    if attributes != "attributes" {
        return None;
    }
    let default = token(at + 8)?;
    let close = at + 9;
    let literal = |token: &Token| match token {
        Token::Text(text) => Some(Dynamic::from(text.clone())),
        Token::Integer(value) => Some(Dynamic::from_int(*value)),
        Token::Word(word) if word == "true" || word == "false" => Some(Dynamic::from_bool(word == "true")),
        _ => None,
    };
    let value = match (token(close), token(close + 1), token(close + 2)) {
        (Some(Token::Symbol(")")), Some(Token::Symbol("==" | "!=")), Some(compared)) => literal(compared),
        _ => None,
    }
    .or_else(|| match literal(default)? {
        flag if flag.is_bool() => Some(Dynamic::from_bool(!flag.as_bool().ok()?)),
        number if number.is_int() => Some(Dynamic::from_int(number.as_int().ok()?.checked_add(1)?)),
        _ => None,
    })?;
    Some((owner.clone(), key.clone(), value))
}

/// The keys of a table value's top map, and the strings listed within `depth` levels: act
/// codes and the like.
fn names_in(value: &Dynamic, depth: usize, found: &mut BTreeSet<String>) {
    if let Ok(text) = value.clone().into_string() {
        found.insert(text);
    } else if depth == 0 {
    } else if let Ok(map) = value.as_map_ref() {
        for (key, item) in map.iter() {
            if depth == 2 {
                found.insert(key.to_string());
            }
            names_in(item, depth - 1, found);
        }
    } else if let Ok(items) = value.as_array_ref() {
        for item in items.iter() {
            names_in(item, depth - 1, found);
        }
    }
}

/// A copy of `text` in which each `amount: <value>` of a map literal and each `.amount = <value>`
/// reads `amount: __probe_site(<n>, <value>)`, with the place (line, column) of each `amount`.
fn instrument(text: &str) -> (String, Vec<(u32, u32)>) {
    let tokens = tokens(text);
    let mut insertions: Vec<(usize, String)> = Vec::new();
    let mut sites = Vec::new();
    let mut open: Vec<&str> = Vec::new();
    for (index, located) in tokens.iter().enumerate() {
        match &located.token {
            Token::Symbol(symbol @ ("{" | "(" | "[" | "#{")) => open.push(symbol),
            Token::Symbol("}" | ")" | "]") => {
                open.pop();
            }
            Token::Word(word) if word == "amount" => {
                let next = tokens.get(index + 1).map(|located| &located.token);
                let in_map = open.last() == Some(&"#{") && next == Some(&Token::Symbol(":"));
                let assigned =
                    index > 0 && tokens[index - 1].token == Token::Symbol(".") && next == Some(&Token::Symbol("="));
                if !(in_map || assigned) {
                    continue;
                }
                let Some(end) = value_end(&tokens, index + 2, if in_map { &[",", "}"] } else { &[";", "}"] }) else {
                    continue;
                };
                let Some(start) = tokens.get(index + 2).map(|located| located.offset) else { continue };
                insertions.push((start, format!("__probe_site({}, ", sites.len())));
                insertions.push((end, ")".to_owned()));
                sites.push(line_and_column(text, located.offset));
            }
            _ => {}
        }
    }
    let mut instrumented = text.to_owned();
    insertions.sort_by_key(|(offset, _)| std::cmp::Reverse(*offset));
    for (offset, insertion) in insertions {
        instrumented.insert_str(offset, &insertion);
    }
    (instrumented, sites)
}

/// The offset of the first of `ends` at the nesting level of token `from`.
fn value_end(tokens: &[Located], from: usize, ends: &[&str]) -> Option<usize> {
    let mut depth = 0_i32;
    for located in tokens.get(from..)? {
        match located.token {
            Token::Symbol(symbol) if depth == 0 && ends.contains(&symbol) => return Some(located.offset),
            Token::Symbol("{" | "(" | "[" | "#{") => depth += 1,
            Token::Symbol("}" | ")" | "]") => depth -= 1,
            _ => {}
        }
    }
    None
}

struct Prober<'a> {
    engine: &'a Engine,
    ast: &'a AST,
    last_site: &'a Mutex<Option<(usize, i64)>>,
    compulsory: &'a [(&'a str, &'a AST)],
    rounding: Rounding,
}

/// What a compulsory plan ruled on a probe.
struct CompulsoryProbe<'a> {
    plan: &'a str,
    rate_bps: i64,
    gross: i64,
    charges: Vec<i64>,
    never_covered: i64,
}

/// The compulsory part as the product sees it: `#{plan, rate_bps, gross, deductions, ...}`.
fn compulsory_part(plan: &str, rate_bps: i64, gross: i64, deductions: &[i64]) -> Dynamic {
    let deducted: i64 = deductions.iter().sum();
    let items: Array = deductions
        .iter()
        .map(|amount| {
            Dynamic::from_map(map(&[("kind", "fixed_charge".into()), ("amount", Dynamic::from_int(*amount))]))
        })
        .collect();
    Dynamic::from_map(map(&[
        ("plan", plan.into()),
        ("rate_bps", Dynamic::from_int(rate_bps)),
        ("gross", Dynamic::from_int(gross)),
        ("deductions", Dynamic::from_array(items)),
        ("ceiling_refund", Dynamic::from_int(0)),
        ("paid", Dynamic::from_int(gross - deducted)),
    ]))
}

fn map(entries: &[(&str, Dynamic)]) -> Map {
    entries.iter().map(|(key, value)| ((*key).into(), value.clone())).collect()
}

impl Prober<'_> {
    /// The rulings of the compulsory plans on the probe that take a fixed charge or mark a part
    /// never covered (the others cannot show a product paying them).
    fn compulsory_rulings(&self, arguments: &[Dynamic; 5]) -> Vec<CompulsoryProbe<'_>> {
        self.compulsory
            .iter()
            .filter_map(|(plan, ast)| {
                let (rate_bps, gross, charges, never_covered) = self.compulsory_ruling(ast, plan, arguments)?;
                (!charges.is_empty() || never_covered > 0).then_some(CompulsoryProbe {
                    plan,
                    rate_bps,
                    gross,
                    charges,
                    never_covered,
                })
            })
            .collect()
    }

    /// The forbidden parts this probe pays, with how much more it pays and the ruling's site.
    fn run(
        &self,
        probe: &Probe,
        arguments: &[Dynamic; 5],
        rulings: &[CompulsoryProbe<'_>],
    ) -> Vec<(Forbidden, i64, Option<usize>)> {
        let mut found = Vec::new();
        for &CompulsoryProbe { plan, rate_bps, gross, ref charges, never_covered } in rulings {
            let room = (probe.charged - gross - never_covered).max(0);
            let pays = |part: Dynamic| self.supplementary(probe, arguments, part, room);
            let Some((without_charges, plain_site)) = pays(compulsory_part(plan, rate_bps, gross, &[])) else {
                continue;
            };
            if !charges.is_empty()
                && let Some((with_charges, site)) = pays(compulsory_part(plan, rate_bps, gross, charges))
                && with_charges > without_charges
            {
                found.push((Forbidden::FixedCharges, with_charges - without_charges, site));
            }
            if never_covered > 0
                && let Some((had_it_paid, _)) =
                    pays(compulsory_part(plan, rate_bps, (gross + never_covered).min(BASE), &[]))
                && without_charges > had_it_paid
            {
                found.push((Forbidden::NeverCovered, without_charges - had_it_paid, plain_site));
            }
        }
        found
    }

    /// line, member, provider, claim and tariff of the probe.
    fn arguments(&self, probe: &Probe) -> [Dynamic; 5] {
        let line = map(&[
            ("line", Dynamic::from_int(1)),
            ("act", probe.act.as_str().into()),
            ("service_date", probe.date.as_str().into()),
            ("quantity", Dynamic::from_int(1)),
            ("charged", Dynamic::from_int(probe.charged)),
            ("attributes", Dynamic::from_map(probe.line_attributes.clone())),
        ]);
        let member = map(&[
            ("member_id", "M-PROBE".into()),
            ("household_id", "H-PROBE".into()),
            ("birth_date", "1980-01-01".into()),
            ("age", Dynamic::from_int(40)),
            ("attributes", Dynamic::from_map(probe.member_attributes.clone())),
        ]);
        let provider = map(&[
            ("provider_id", "P-PROBE".into()),
            ("agreement", probe.agreement.clone().map_or(Dynamic::UNIT, Dynamic::from)),
            ("attributes", Dynamic::from_map(probe.provider_attributes.clone())),
        ]);
        let claim = map(&[
            ("claim_id", "C-PROBE".into()),
            ("submitted_on", probe.date.as_str().into()),
            ("third_party", Dynamic::from_array(Array::new())),
        ]);
        let mut tariff = probe.tariff_flags.clone();
        tariff.insert("base".into(), Dynamic::from_int(BASE));
        tariff.insert("rate_bps".into(), Dynamic::from_int(TARIFF_RATE_BPS));
        tariff.insert("category".into(), probe.category.as_str().into());
        tariff.insert("third_party_required".into(), Dynamic::from_array(Array::new()));
        tariff.insert("reasons".into(), Dynamic::from_array(Array::new()));
        tariff.insert("flags".into(), Dynamic::from_map(probe.tariff_flags.clone()));
        [line, member, provider, claim, tariff].map(Dynamic::from_map)
    }

    /// What the compulsory plan rules on the probe: rate, gross, the charges (each at most what
    /// is left of the gross) and the never-covered total; `None` when it denies or fails.
    fn compulsory_ruling(&self, ast: &AST, plan: &str, arguments: &[Dynamic; 5]) -> Option<(i64, i64, Vec<i64>, i64)> {
        let [line, member, provider, claim, tariff] = arguments.clone();
        let answer = self
            .engine
            .call_fn::<Dynamic>(
                &mut Scope::new(),
                ast,
                "compulsory",
                (Dynamic::from(plan.to_owned()), line, member, provider, claim, tariff),
            )
            .ok()?;
        let probe_tariff = Tariff {
            base: Amount::from_minor(BASE),
            rate_bps: RateBps::new(TARIFF_RATE_BPS).ok()?,
            category: String::new(),
            third_party_required: BTreeSet::new(),
            flags: claims_domain::attributes::Attributes::new(),
            reasons: Vec::new(),
        };
        let Ruling::Covered(ruling) = rulings::compulsory(answer, &probe_tariff, self.rounding).ok()? else {
            return None;
        };
        let gross = ruling.gross.minor_units().clamp(0, BASE);
        let mut left = gross;
        let charges = ruling
            .charges
            .iter()
            .map(|charge| {
                let taken = charge.amount.minor_units().clamp(0, left);
                left -= taken;
                taken
            })
            .filter(|taken| *taken > 0)
            .collect();
        let never_covered = ruling.never_covered.iter().map(|part| part.amount.minor_units().max(0)).sum();
        Some((i64::from(ruling.rate_bps.bps()), gross, charges, never_covered))
    }

    /// What the product pays under the cap `room`, and the site of the ruling; `None` when it
    /// denies or fails.
    fn supplementary(
        &self,
        probe: &Probe,
        arguments: &[Dynamic; 5],
        compulsory: Dynamic,
        room: i64,
    ) -> Option<(i64, Option<usize>)> {
        let [line, member, provider, claim, tariff] = arguments.clone();
        *self.last_site.lock().unwrap_or_else(PoisonError::into_inner) = None;
        let plan = Dynamic::from(probe.plan.clone());
        let answer = self
            .engine
            .call_fn::<Dynamic>(
                &mut Scope::new(),
                self.ast,
                "supplementary",
                [plan, line, member, provider, claim, tariff, compulsory],
            )
            .ok()?;
        let amount = answer.as_map_ref().ok()?.get("amount")?.as_int().ok()?;
        let site = match *self.last_site.lock().unwrap_or_else(PoisonError::into_inner) {
            Some((site, recorded)) if recorded == amount => Some(site),
            _ => None,
        };
        Some((amount.clamp(0, room), site))
    }
}
