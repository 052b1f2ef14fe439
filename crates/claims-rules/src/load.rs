//! Loading a pack from a folder (or from stored sources): read the manifest and the tables,
//! compile every script once, check each defines the function its role needs, and hash it all.
//! Every problem found is reported, not just the first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use claims_domain::claim::Scheme;
use claims_domain::money::Rounding;
use rhai::{AST, Engine};

use crate::diagnostic::{Diagnostic, function_definition};
use crate::engine::{PackData, pack_engine, sandboxed_engine};
use crate::hash::{SourceFile, content_hash};
use crate::manifest::Manifest;
use crate::params::{Params, closest};
use crate::usage::parameters_read;

pub(crate) const MANIFEST_FILE: &str = "pack.rhai";
pub(crate) const PARAMS_FILE: &str = "params.rhai";

/// Where a pack's files come from.
pub(crate) enum Files<'a> {
    Directory(&'a Path),
    Memory(&'a [SourceFile]),
}

impl Files<'_> {
    /// The text of `relative`, `None` when there is no such file.
    fn read(&self, relative: &str) -> Result<Option<String>, String> {
        match self {
            Files::Memory(files) => Ok(files.iter().find(|file| file.path == relative).map(|file| file.text.clone())),
            Files::Directory(dir) => {
                let path = dir.join(relative);
                if !path.exists() {
                    return Ok(None);
                }
                let inside = match (path.canonicalize(), dir.canonicalize()) {
                    (Ok(file), Ok(root)) => file.starts_with(root),
                    _ => false,
                };
                if !inside {
                    return Err("the file is outside the pack folder (a link?)".to_owned());
                }
                std::fs::read_to_string(&path).map(Some).map_err(|error| format!("cannot read the file: {error}"))
            }
        }
    }

    /// Every `.rhai` file other than the manifest, the tables and the tests, relative to the pack.
    fn scripts(&self) -> Vec<String> {
        let mut found = match self {
            Files::Memory(files) => files.iter().map(|file| file.path.clone()).collect(),
            Files::Directory(dir) => {
                let mut found = Vec::new();
                walk(dir, dir, &mut found);
                found
            }
        };
        found.retain(|path| {
            path.ends_with(".rhai") && path != MANIFEST_FILE && path != PARAMS_FILE && !path.starts_with("tests/")
        });
        found.sort();
        found
    }
}

fn walk(root: &Path, dir: &Path, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|entry| entry.path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(root, &path, found);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let parts: Vec<String> =
                relative.components().map(|part| part.as_os_str().to_string_lossy().into_owned()).collect();
            found.push(parts.join("/"));
        }
    }
}

/// One compiled script.
#[derive(Debug)]
pub(crate) struct Script {
    /// The path shown in messages: the pack folder as given, then the relative path.
    pub label: String,
    pub text: String,
    pub ast: AST,
    /// For the functions the pack calls, whether each parameter is read (`usage`); a function
    /// not listed reads them all.
    pub reads: BTreeMap<&'static str, Vec<bool>>,
}

impl Script {
    /// Whether `fn function` reads its parameter `index`.
    pub fn reads(&self, function: &str, index: usize) -> bool {
        self.reads.get(function).and_then(|read| read.get(index)).is_none_or(|read| *read)
    }
}

/// A pack with no problems.
pub(crate) struct Loaded {
    pub manifest: Manifest,
    pub engine: Engine,
    pub rounding: Rounding,
    /// Compiled scripts by path relative to the pack.
    pub scripts: BTreeMap<String, Script>,
    pub sources: Vec<SourceFile>,
    pub version: String,
}

/// The label of a file of the pack whose folder the user named `root`.
pub(crate) fn label(root: &str, relative: &str) -> String {
    let root = root.trim_end_matches('/');
    if root.is_empty() { relative.to_owned() } else { format!("{root}/{relative}") }
}

/// What a script must define for the role the manifest gives it.
struct Role {
    function: &'static str,
    parameters: &'static str,
    count: usize,
    why: String,
}

fn role_of_plan(name: &str, scheme: Scheme) -> Role {
    match scheme {
        Scheme::Compulsory => Role {
            function: "compulsory",
            parameters: "plan, line, member, provider, claim, tariff",
            count: 6,
            why: format!("plan \"{name}\" is compulsory"),
        },
        Scheme::Supplementary => Role {
            function: "supplementary",
            parameters: "plan, line, member, provider, claim, tariff, compulsory",
            count: 7,
            why: format!("plan \"{name}\" is supplementary"),
        },
    }
}

fn role_of_agreement(why: String) -> Role {
    Role { function: "tariff", parameters: "line, member, provider, claim", count: 4, why }
}

/// Everything read from a pack folder, usable or not: what `load` needs to hand over a pack, and
/// what `check` lints even when some of the pack does not load.
pub(crate) struct Parts {
    pub manifest: Option<Manifest>,
    pub params: Params,
    /// Whether `params.rhai` could be read as a map of tables (absent counts as read); some
    /// tables may still have problems.
    pub params_ok: bool,
    pub engine: Engine,
    pub rounding: Rounding,
    /// Compiled scripts by path relative to the pack.
    pub scripts: BTreeMap<String, Script>,
    /// Every file read (manifest, tables, scripts, compiled or not), in the order read.
    pub sources: Vec<SourceFile>,
    pub problems: Vec<Diagnostic>,
}

pub(crate) fn load(root: &str, files: &Files<'_>) -> Result<Loaded, Vec<Diagnostic>> {
    let parts = read_parts(root, files);
    let Parts { manifest, engine, rounding, scripts, sources, mut problems, .. } = parts;
    match manifest {
        Some(manifest) if problems.is_empty() => {
            let version = content_hash(&sources);
            Ok(Loaded { manifest, engine, rounding, scripts, sources, version })
        }
        _ => {
            sort_problems(&mut problems);
            Err(problems)
        }
    }
}

/// Sorted by file, line and column, without repeats.
pub(crate) fn sort_problems(problems: &mut Vec<Diagnostic>) {
    problems.sort_by(|a, b| (&a.file, a.line, a.column, &a.message).cmp(&(&b.file, b.line, b.column, &b.message)));
    problems.dedup();
}

pub(crate) fn read_parts(root: &str, files: &Files<'_>) -> Parts {
    let mut problems = Vec::new();
    let mut sources = Vec::new();
    let sandbox = sandboxed_engine();

    let manifest_label = label(root, MANIFEST_FILE);
    let mut manifest_text = String::new();
    let manifest = match files.read(MANIFEST_FILE) {
        Ok(Some(text)) => {
            let parsed = Manifest::parse(&sandbox, &manifest_label, &text);
            manifest_text.clone_from(&text);
            sources.push(SourceFile { path: MANIFEST_FILE.to_owned(), text });
            parsed.map_err(|found| problems.extend(found)).ok()
        }
        Ok(None) => {
            problems.push(Diagnostic::whole_file(&manifest_label, "missing: every pack needs a manifest pack.rhai"));
            None
        }
        Err(message) => {
            problems.push(Diagnostic::whole_file(&manifest_label, message));
            None
        }
    };

    let params_label = label(root, PARAMS_FILE);
    let mut params_ok = true;
    let params = match files.read(PARAMS_FILE) {
        Ok(Some(text)) => {
            let parsed = Params::parse_partly(&sandbox, &params_label, &text);
            sources.push(SourceFile { path: PARAMS_FILE.to_owned(), text });
            match parsed {
                Ok((params, found)) => {
                    problems.extend(found);
                    params
                }
                Err(found) => {
                    problems.extend(found);
                    params_ok = false;
                    Params::default()
                }
            }
        }
        Ok(None) => Params::default(),
        Err(message) => {
            problems.push(Diagnostic::whole_file(&params_label, message));
            params_ok = false;
            Params::default()
        }
    };

    let rounding = manifest.as_ref().map_or(Rounding::HalfUp, |manifest| manifest.rounding);
    let engine = pack_engine(Arc::new(PackData { params: params.clone(), rounding }));

    // Without a readable manifest, still compile every script found, so syntax errors show.
    let wanted: Vec<String> = match &manifest {
        Some(manifest) => manifest.scripts().into_iter().map(str::to_owned).collect(),
        None => files.scripts(),
    };
    let mut scripts = BTreeMap::new();
    for relative in wanted {
        let script_label = label(root, &relative);
        let text = match files.read(&relative) {
            Ok(Some(text)) => text,
            Ok(None) => {
                let suggestion = closest(&relative, &files.scripts())
                    .map(|known| format!(" (did you mean {known:?}?)"))
                    .unwrap_or_default();
                problems.push(Diagnostic::at(
                    &manifest_label,
                    crate::diagnostic::locate(&manifest_text, &[&relative]),
                    format!("script {relative:?} does not exist{suggestion}"),
                ));
                continue;
            }
            Err(message) => {
                problems.push(Diagnostic::whole_file(&script_label, message));
                continue;
            }
        };
        match engine.compile(&text) {
            Ok(mut ast) => {
                ast.set_source(script_label.as_str());
                let script = Script { label: script_label, text: text.clone(), ast, reads: BTreeMap::new() };
                scripts.insert(relative.clone(), script);
            }
            Err(error) => problems.push(Diagnostic::from_parse_error(&script_label, &text, &error)),
        }
        sources.push(SourceFile { path: relative, text });
    }

    if let Some(manifest) = &manifest {
        let mut roles: Vec<(&str, Role)> = Vec::new();
        for (name, plan) in &manifest.plans {
            roles.push((&plan.script, role_of_plan(name.as_str(), plan.settings.scheme)));
        }
        for (name, script) in &manifest.agreements {
            roles.push((script, role_of_agreement(format!("agreement \"{name}\" uses it"))));
        }
        if let Some(script) = &manifest.outside_agreement {
            roles.push((script, role_of_agreement("it prices providers outside any agreement".to_owned())));
        }
        for (relative, role) in roles {
            if let Some(script) = scripts.get_mut(relative) {
                check_role(script, &role, &mut problems);
                let read = parameters_read(&engine, &script.ast, &script.text, role.function, role.count);
                script.reads.insert(role.function, read);
            }
        }
    }

    Parts { manifest, params, params_ok, engine, rounding, scripts, sources, problems }
}

fn check_role(script: &Script, role: &Role, problems: &mut Vec<Diagnostic>) {
    let arities: Vec<usize> =
        script.ast.iter_functions().filter(|function| function.name == role.function).map(|f| f.params.len()).collect();
    if arities.contains(&role.count) {
        return;
    }
    let wanted = format!("fn {}({})", role.function, role.parameters);
    let diagnostic = if arities.is_empty() {
        Diagnostic::whole_file(&script.label, format!("{}, so this script must define {wanted}", role.why))
    } else {
        Diagnostic::at(
            &script.label,
            function_definition(&script.text, role.function),
            format!("fn {} must take {} parameters: {wanted}", role.function, role.count),
        )
    };
    if !problems.contains(&diagnostic) {
        problems.push(diagnostic);
    }
}
