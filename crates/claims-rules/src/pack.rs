//! A compiled rule pack, [`RhaiPack`], answering the pipeline's three questions per line through
//! the pack's scripts (`claims_domain::rules::RulePack`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use claims_domain::decision::{CompulsoryPart, RuleFailure};
use claims_domain::ids::PlanName;
use claims_domain::money::Rounding;
use claims_domain::rules::{
    CompulsoryRuling, LineContext, PackSettings, RulePack, Ruling, SupplementaryRuling, Tariff,
};
use rhai::{CallFnOptions, Dynamic, Engine, FuncArgs, Scope};
use thiserror::Error;

use crate::diagnostic::{Diagnostic, function_definition, rule_failure};
use crate::hash::SourceFile;
use crate::load::{Files, MANIFEST_FILE, Script, label, load};
use crate::manifest::Manifest;
use crate::rulings;
use crate::values::{
    claim_value, compulsory_value, last_line_value, last_tariff_value, line_value, member_value, plan_value,
    provider_value, tariff_value,
};

/// Everything wrong with a pack, one `file:line:col: message` per line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", Lines(.diagnostics))]
pub struct PackError {
    pub diagnostics: Vec<Diagnostic>,
}

struct Lines<'a>(&'a [Diagnostic]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, diagnostic) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

/// A rule pack, loaded, compiled and hashed. `Send + Sync`: one pack serves every task.
pub struct RhaiPack {
    root: String,
    manifest: Manifest,
    settings: PackSettings,
    engine: Engine,
    rounding: Rounding,
    scripts: BTreeMap<String, Script>,
    sources: Vec<SourceFile>,
}

impl fmt::Debug for RhaiPack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RhaiPack").field("root", &self.root).field("version", &self.settings.version).finish()
    }
}

impl RhaiPack {
    /// Loads the pack in folder `dir`. Messages name its files under `dir` as given
    /// (`rules/fr/agreements/medecins.rhai`).
    pub fn load(dir: impl AsRef<Path>) -> Result<RhaiPack, PackError> {
        let dir = dir.as_ref();
        let root = dir.to_string_lossy().into_owned();
        RhaiPack::build(&root, &Files::Directory(dir))
    }

    /// Loads a pack from stored sources (paths relative to the pack folder), e.g. to replay a
    /// decision with the very scripts that made it; `root` prefixes the paths in messages.
    pub fn from_sources(root: &str, files: &[SourceFile]) -> Result<RhaiPack, PackError> {
        RhaiPack::build(root, &Files::Memory(files))
    }

    fn build(root: &str, files: &Files<'_>) -> Result<RhaiPack, PackError> {
        let mut loaded = load(root, files).map_err(|diagnostics| PackError { diagnostics })?;
        loaded.sources.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(RhaiPack {
            root: root.to_owned(),
            settings: loaded.manifest.settings(loaded.version),
            manifest: loaded.manifest,
            engine: loaded.engine,
            rounding: loaded.rounding,
            scripts: loaded.scripts,
            sources: loaded.sources,
        })
    }

    /// The content hash, `sha256:<hex>`.
    pub fn version(&self) -> &str {
        &self.settings.version.version
    }

    /// Every file the engine read (the files of the content hash), with paths relative to the
    /// pack folder, sorted by path.
    pub fn sources(&self) -> &[SourceFile] {
        &self.sources
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn failure_in_manifest(&self, message: String) -> RuleFailure {
        RuleFailure { file: label(&self.root, MANIFEST_FILE), line: 1, column: 1, message }
    }

    fn script(&self, relative: &str) -> Result<&Script, RuleFailure> {
        self.scripts
            .get(relative)
            .ok_or_else(|| self.failure_in_manifest(format!("script {relative:?} was not loaded")))
    }

    fn plan_script(&self, plan: &PlanName) -> Result<&Script, RuleFailure> {
        let entry = self
            .manifest
            .plans
            .get(plan)
            .ok_or_else(|| self.failure_in_manifest(format!("plan \"{plan}\" is not in the manifest")))?;
        self.script(&entry.script)
    }

    /// Calls `function` of `script` with a fresh scope, without running its top-level statements,
    /// then reads the answer with `read`.
    fn call<T>(
        &self,
        script: &Script,
        function: &str,
        arguments: impl FuncArgs,
        read: impl FnOnce(Dynamic) -> Result<T, String>,
    ) -> Result<T, RuleFailure> {
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        let outcome = with_scope(|scope| {
            catch_unwind(AssertUnwindSafe(|| {
                self.engine.call_fn_with_options::<Dynamic>(options, scope, &script.ast, function, arguments)
            }))
        });
        let at_function = |message: String| {
            let (line, column) = function_definition(&script.text, function);
            RuleFailure { file: script.label.clone(), line, column, message }
        };
        match outcome {
            Ok(Ok(value)) => read(value).map_err(|message| at_function(format!("fn {function}: {message}"))),
            Ok(Err(error)) => Err(rule_failure(&error, &script.label, &script.text, function)),
            Err(_) => Err(at_function(format!("the rule engine failed unexpectedly while running fn {function}"))),
        }
    }
}

thread_local! {
    /// A scope per thread, emptied before each call: its storage is kept from one call to the
    /// next instead of growing anew for the arguments and local variables of every call.
    static SCOPE: RefCell<Scope<'static>> = RefCell::new(Scope::with_capacity(SCOPE_CAPACITY));
}

/// Variables a script function usually holds at once (its arguments and local variables).
const SCOPE_CAPACITY: usize = 32;

/// Runs `call` with an empty scope.
fn with_scope<T>(call: impl FnOnce(&mut Scope<'static>) -> T) -> T {
    SCOPE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scope) => {
            scope.clear();
            let result = call(&mut scope);
            scope.clear();
            result
        }
        // Only if a call were ever made from inside another one on the same thread.
        Err(_) => call(&mut Scope::new()),
    })
}

/// The value of an argument the function reads, or `()` for one its body never names (`usage`):
/// it cannot tell the difference, and nothing is built or copied for it.
fn argument(read: bool, value: impl FnOnce() -> Dynamic) -> Dynamic {
    if read { value() } else { Dynamic::UNIT }
}

impl RulePack for RhaiPack {
    fn settings(&self) -> &PackSettings {
        &self.settings
    }

    fn tariff(&self, context: &LineContext<'_>) -> Result<Ruling<Tariff>, RuleFailure> {
        let relative =
            match context.agreement {
                Some(agreement) => self.manifest.agreements.get(agreement).ok_or_else(|| {
                    self.failure_in_manifest(format!("agreement \"{agreement}\" is not in the manifest"))
                })?,
                None => self.manifest.outside_agreement.as_ref().ok_or_else(|| {
                    self.failure_in_manifest("the manifest has no outside_agreement script".to_owned())
                })?,
            };
        let script = self.script(relative)?;
        let read = |index| script.reads("tariff", index);
        let arguments = [
            argument(read(0), || line_value(context)),
            argument(read(1), || member_value(context)),
            argument(read(2), || provider_value(context)),
            argument(read(3), || claim_value(context)),
        ];
        self.call(script, "tariff", arguments, rulings::tariff)
    }

    fn compulsory(
        &self,
        context: &LineContext<'_>,
        plan: &PlanName,
        tariff: &Tariff,
    ) -> Result<Ruling<CompulsoryRuling>, RuleFailure> {
        let script = self.plan_script(plan)?;
        let read = |index| script.reads("compulsory", index);
        let arguments = [
            argument(read(0), || plan_value(plan)),
            argument(read(1), || line_value(context)),
            argument(read(2), || member_value(context)),
            argument(read(3), || provider_value(context)),
            argument(read(4), || claim_value(context)),
            argument(read(5), || tariff_value(tariff)),
        ];
        self.call(script, "compulsory", arguments, |value| rulings::compulsory(value, tariff, self.rounding))
    }

    fn supplementary(
        &self,
        context: &LineContext<'_>,
        plan: &PlanName,
        tariff: &Tariff,
        compulsory: Option<&CompulsoryPart>,
    ) -> Result<Ruling<SupplementaryRuling>, RuleFailure> {
        let script = self.plan_script(plan)?;
        let read = |index| script.reads("supplementary", index);
        let arguments = [
            argument(read(0), || plan_value(plan)),
            // The pipeline asks this last about a line: the line and tariff kept are handed over.
            argument(read(1), || last_line_value(context)),
            argument(read(2), || member_value(context)),
            argument(read(3), || provider_value(context)),
            argument(read(4), || claim_value(context)),
            argument(read(5), || last_tariff_value(tariff)),
            argument(read(6), || compulsory_value(compulsory)),
        ];
        self.call(script, "supplementary", arguments, rulings::supplementary)
    }
}
