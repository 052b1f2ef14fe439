//! The manifest `pack.rhai`: pack name, currency, rounding, filing limit, plans (each with its
//! script), agreements (each with its script) and the optional outside-agreement script.

use std::collections::{BTreeMap, BTreeSet};

use claims_domain::claim::Scheme;
use claims_domain::decision::RulesVersion;
use claims_domain::ids::{AgreementName, PlanName};
use claims_domain::money::{Currency, Rounding};
use claims_domain::rules::{FilingLimit, PackSettings, PlanSettings};
use rhai::{Dynamic, Engine, Map};

use crate::diagnostic::{Diagnostic, locate, position_of, runtime_error_message, type_description};

/// One plan of the manifest: its settings and the script that prices it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanEntry {
    pub settings: PlanSettings,
    /// Path of the script, relative to the pack folder.
    pub script: String,
}

/// What `pack.rhai` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub pack: String,
    pub currency: Currency,
    pub rounding: Rounding,
    pub filing_limit: Option<FilingLimit>,
    pub plans: BTreeMap<PlanName, PlanEntry>,
    /// Agreement name to script path, relative to the pack folder.
    pub agreements: BTreeMap<AgreementName, String>,
    pub outside_agreement: Option<String>,
}

const TOP_KEYS: &[&str] = &["pack", "currency", "rounding", "filing_limit", "plans", "agreements", "outside_agreement"];
const PLAN_KEYS: &[&str] = &["scheme", "script", "contribution_months_before", "suspension_extends_to_household"];

impl Manifest {
    /// Reads the manifest text `source` of the file labelled `file`, reporting every problem.
    pub fn parse(engine: &Engine, file: &str, source: &str) -> Result<Manifest, Vec<Diagnostic>> {
        let mut ast = engine
            .compile_expression(source)
            .map_err(|error| vec![Diagnostic::from_parse_error(file, source, &error)])?;
        ast.set_source(file);
        let value: Dynamic = engine.eval_ast(&ast).map_err(|error| {
            let (line, column) = position_of(error.position()).unwrap_or((0, 0));
            vec![Diagnostic { file: file.to_owned(), line, column, message: runtime_error_message(&error) }]
        })?;
        let Some(map) = value.try_cast::<Map>() else {
            return Err(vec![Diagnostic::whole_file(
                file,
                "expected a map: #{ pack: \"xx\", currency: \"EUR\", ... }",
            )]);
        };
        let mut reader = Reader { file, source, problems: Vec::new() };
        let manifest = reader.manifest(&map);
        match manifest {
            Some(manifest) if reader.problems.is_empty() => Ok(manifest),
            _ => Err(reader.problems),
        }
    }

    /// Every script the manifest names, relative to the pack folder, sorted and without repeats.
    pub fn scripts(&self) -> BTreeSet<&str> {
        let plans = self.plans.values().map(|plan| plan.script.as_str());
        let agreements = self.agreements.values().map(String::as_str);
        plans.chain(agreements).chain(self.outside_agreement.as_deref()).collect()
    }

    /// The domain's view of the pack, under the content hash `version`.
    pub fn settings(&self, version: String) -> PackSettings {
        PackSettings {
            version: RulesVersion { pack: self.pack.clone(), version },
            currency: self.currency,
            rounding: self.rounding,
            filing_limit: self.filing_limit,
            plans: self.plans.iter().map(|(name, plan)| (name.clone(), plan.settings.clone())).collect(),
            agreements: self.agreements.keys().cloned().collect(),
            prices_outside_agreement: self.outside_agreement.is_some(),
        }
    }
}

struct Reader<'a> {
    file: &'a str,
    source: &'a str,
    problems: Vec<Diagnostic>,
}

impl Reader<'_> {
    fn problem(&mut self, path: &[&str], message: String) {
        self.problems.push(Diagnostic::at(self.file, locate(self.source, path), message));
    }

    fn manifest(&mut self, map: &Map) -> Option<Manifest> {
        self.unknown_keys(map, TOP_KEYS, &[], "");
        let pack = self.text(map, "pack", &[]).filter(|pack| self.pack_name(pack));
        let currency = self.text(map, "currency", &[]).and_then(|code| match Currency::parse(&code) {
            Ok(currency) => Some(currency),
            Err(error) => {
                self.problem(&["currency"], error.to_string());
                None
            }
        });
        let rounding = self.text(map, "rounding", &[]).and_then(|name| match Rounding::parse(&name) {
            Ok(rounding) => Some(rounding),
            Err(error) => {
                self.problem(&["rounding"], error.to_string());
                None
            }
        });
        let filing_limit = self.filing_limit(map.get("filing_limit"));
        let plans = self.plans(map.get("plans"));
        let agreements = self.agreements(map.get("agreements"));
        let outside_agreement = match map.get("outside_agreement") {
            None => Some(None),
            Some(value) if value.is_unit() => Some(None),
            Some(value) => self.script_path(value, &["outside_agreement"], "outside_agreement").map(Some),
        };
        Some(Manifest {
            pack: pack?,
            currency: currency?,
            rounding: rounding?,
            filing_limit: filing_limit?,
            plans: plans?,
            agreements: agreements?,
            outside_agreement: outside_agreement?,
        })
    }

    fn pack_name(&mut self, pack: &str) -> bool {
        let valid = !pack.is_empty() && pack.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            self.problem(&["pack"], format!("pack name {pack:?} must be letters, digits, - or _"));
        }
        valid
    }

    fn unknown_keys(&mut self, map: &Map, allowed: &[&str], path: &[&str], what: &str) {
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                let mut key_path = path.to_vec();
                key_path.push(key.as_str());
                let expected = allowed.join(", ");
                self.problem(&key_path, format!("{what}unknown key {:?} (expected one of: {expected})", key.as_str()));
            }
        }
    }

    fn text(&mut self, map: &Map, key: &str, path: &[&str]) -> Option<String> {
        let mut key_path = path.to_vec();
        key_path.push(key);
        match map.get(key) {
            None => {
                self.problem(path, format!("missing key {key:?}"));
                None
            }
            Some(value) => match value.clone().into_string() {
                Ok(text) => Some(text),
                Err(actual) => {
                    self.problem(&key_path, format!("{key:?} must be a string, not {}", type_description(actual)));
                    None
                }
            },
        }
    }

    fn filing_limit(&mut self, value: Option<&Dynamic>) -> Option<Option<FilingLimit>> {
        let Some(value) = value.filter(|value| !value.is_unit()) else {
            return Some(None);
        };
        let Ok(map) = value.as_map_ref() else {
            self.problem(
                &["filing_limit"],
                "filing_limit must be a map #{ months: 24, from: \"next_quarter\" }".into(),
            );
            return None;
        };
        self.unknown_keys(&map, &["months", "from"], &["filing_limit"], "filing_limit: ");
        let months = match map.get("months").map(Dynamic::as_int) {
            Some(Ok(months)) if (1..=600).contains(&months) => u32::try_from(months).ok(),
            _ => {
                self.problem(
                    &["filing_limit", "months"],
                    "filing_limit: months must be a number of months from 1 to 600".into(),
                );
                None
            }
        };
        let from = self.text(&map, "from", &["filing_limit"]);
        let limit = match (months, from.as_deref()) {
            (Some(months), Some("next_quarter")) => FilingLimit::MonthsAfterNextQuarter(months),
            (Some(months), Some("service_date")) => FilingLimit::MonthsAfterService(months),
            (_, Some(other)) if other != "next_quarter" && other != "service_date" => {
                self.problem(
                    &["filing_limit", "from"],
                    format!("filing_limit: unknown start {other:?} (expected \"next_quarter\" or \"service_date\")"),
                );
                return None;
            }
            _ => return None,
        };
        Some(Some(limit))
    }

    fn plans(&mut self, value: Option<&Dynamic>) -> Option<BTreeMap<PlanName, PlanEntry>> {
        let Some(map) = value.and_then(|value| value.clone().try_cast::<Map>()) else {
            self.problem(&["plans"], "plans must be a map of plan name to #{ scheme, script }".into());
            return None;
        };
        let mut plans = BTreeMap::new();
        let mut complete = true;
        for (name, entry) in &map {
            match self.plan(name.as_str(), entry) {
                Some((name, entry)) => {
                    plans.insert(name, entry);
                }
                None => complete = false,
            }
        }
        complete.then_some(plans)
    }

    fn plan(&mut self, name: &str, entry: &Dynamic) -> Option<(PlanName, PlanEntry)> {
        let path = ["plans", name];
        let plan_name = match PlanName::parse(name) {
            Ok(plan_name) => Some(plan_name),
            Err(error) => {
                self.problem(&path, format!("plan name {name:?} {error}"));
                None
            }
        };
        let Some(map) = entry.clone().try_cast::<Map>() else {
            self.problem(
                &path,
                format!("plan {name:?}: expected #{{ scheme: \"compulsory\", script: \"plans/x.rhai\" }}"),
            );
            return None;
        };
        let what = format!("plan {name:?}: ");
        self.unknown_keys(&map, PLAN_KEYS, &path, &what);
        let scheme = self.text(&map, "scheme", &path).and_then(|scheme| match Scheme::parse(&scheme) {
            Some(scheme) => Some(scheme),
            None => {
                self.problem(
                    &["plans", name, "scheme"],
                    format!("{what}unknown scheme {scheme:?} (expected \"compulsory\" or \"supplementary\")"),
                );
                None
            }
        });
        let script = match map.get("script") {
            Some(value) => self.script_path(value, &["plans", name, "script"], &format!("plan {name:?}")),
            None => {
                self.problem(&path, format!("{what}missing key \"script\""));
                None
            }
        };
        let contribution_months_before = match map.get("contribution_months_before").map(Dynamic::as_int) {
            None => Some(None),
            Some(Ok(months)) if (0..=120).contains(&months) => Some(u32::try_from(months).ok()),
            Some(_) => {
                self.problem(
                    &["plans", name, "contribution_months_before"],
                    format!("{what}contribution_months_before must be a number of months from 0 to 120"),
                );
                None
            }
        };
        let suspension_extends_to_household = match map.get("suspension_extends_to_household").map(Dynamic::as_bool) {
            None => Some(false),
            Some(Ok(flag)) => Some(flag),
            Some(Err(_)) => {
                self.problem(
                    &["plans", name, "suspension_extends_to_household"],
                    format!("{what}suspension_extends_to_household must be true or false"),
                );
                None
            }
        };
        let settings = PlanSettings {
            scheme: scheme?,
            contribution_months_before: contribution_months_before?,
            suspension_extends_to_household: suspension_extends_to_household?,
        };
        Some((plan_name?, PlanEntry { settings, script: script? }))
    }

    fn agreements(&mut self, value: Option<&Dynamic>) -> Option<BTreeMap<AgreementName, String>> {
        let Some(map) = value.and_then(|value| value.clone().try_cast::<Map>()) else {
            self.problem(&["agreements"], "agreements must be a map of agreement name to script path".into());
            return None;
        };
        let mut agreements = BTreeMap::new();
        let mut complete = true;
        for (name, script) in &map {
            let path = ["agreements", name.as_str()];
            let agreement = match AgreementName::parse(name) {
                Ok(agreement) => Some(agreement),
                Err(error) => {
                    self.problem(&path, format!("agreement name {:?} {error}", name.as_str()));
                    None
                }
            };
            let script = self.script_path(script, &path, &format!("agreement {:?}", name.as_str()));
            match (agreement, script) {
                (Some(agreement), Some(script)) => {
                    agreements.insert(agreement, script);
                }
                _ => complete = false,
            }
        }
        complete.then_some(agreements)
    }

    /// A script path: relative, inside the pack, ending in `.rhai`.
    fn script_path(&mut self, value: &Dynamic, path: &[&str], what: &str) -> Option<String> {
        let Ok(script) = value.clone().into_string() else {
            self.problem(path, format!("{what}: the script must be a path like \"plans/rg.rhai\""));
            return None;
        };
        let escapes = script.starts_with('/')
            || script.contains('\\')
            || script.contains(':')
            || script.split('/').any(|part| part == ".." || part == "." || part.is_empty());
        if escapes || !script.ends_with(".rhai") {
            self.problem(
                path,
                format!(
                    "{what}: script {script:?} must be a .rhai file inside the pack, written like \"plans/rg.rhai\""
                ),
            );
            return None;
        }
        if script == "pack.rhai" || script == "params.rhai" || script.starts_with("tests/") {
            self.problem(path, format!("{what}: {script:?} is not a rule script"));
            return None;
        }
        Some(script)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sandboxed_engine;

    const FILE: &str = "rules/fr/pack.rhai";

    const GOOD: &str = r#"#{
    pack: "fr",
    currency: "EUR",
    rounding: "half_up",
    filing_limit: #{ months: 24, from: "next_quarter" },
    plans: #{
        RG: #{ scheme: "compulsory", script: "plans/rg.rhai" },
        CONFORT: #{ scheme: "supplementary", script: "plans/products.rhai", contribution_months_before: 23 },
    },
    agreements: #{ "fr-medecins": "agreements/medecins.rhai" },
    outside_agreement: "agreements/hors-convention.rhai",
}"#;

    #[test]
    fn reads_a_manifest_into_settings() {
        let manifest = Manifest::parse(&sandboxed_engine(), FILE, GOOD).expect("valid manifest");
        let settings = manifest.settings("sha256:00".into());
        assert_eq!(settings.version.pack, "fr");
        assert_eq!(settings.rounding, Rounding::HalfUp);
        assert_eq!(settings.filing_limit, Some(FilingLimit::MonthsAfterNextQuarter(24)));
        let confort = &settings.plans[&PlanName::parse("CONFORT").unwrap()];
        assert_eq!((confort.scheme, confort.contribution_months_before), (Scheme::Supplementary, Some(23)));
        assert!(settings.prices_outside_agreement);
        assert_eq!(
            manifest.scripts().into_iter().collect::<Vec<_>>(),
            ["agreements/hors-convention.rhai", "agreements/medecins.rhai", "plans/products.rhai", "plans/rg.rhai"]
        );
    }

    #[test]
    fn names_the_file_the_key_and_the_place_of_every_problem() {
        let bad = GOOD
            .replace("\"supplementary\"", "\"suplementary\"")
            .replace("half_up", "half")
            .replace("\"agreements/medecins.rhai\"", "\"../medecins.rhai\"")
            .replace("currency: \"EUR\",", "currency: \"EUR\", colour: 1,");
        let problems = Manifest::parse(&sandboxed_engine(), FILE, &bad).unwrap_err();
        let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(texts.contains(&"rules/fr/pack.rhai:8:21: plan \"CONFORT\": unknown scheme \"suplementary\" (expected \"compulsory\" or \"supplementary\")".to_owned()), "{texts:#?}");
        assert!(
            texts.iter().any(|text| text.starts_with("rules/fr/pack.rhai:3:22: unknown key \"colour\"")),
            "{texts:#?}"
        );
        assert!(texts.iter().any(|text| text.contains("unknown rounding \"half\"")), "{texts:#?}");
        assert!(
            texts.iter().any(|text| text.contains("agreement \"fr-medecins\": script \"../medecins.rhai\" must be")),
            "{texts:#?}"
        );
        assert_eq!(texts.len(), 4, "{texts:#?}");
    }

    #[test]
    fn reports_compile_errors_with_a_position() {
        let problems = Manifest::parse(&sandboxed_engine(), FILE, "#{ pack: \"fr\" currency: 1 }").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!((problems[0].line, problems[0].column), (1, 15), "{}", problems[0]);
    }
}
