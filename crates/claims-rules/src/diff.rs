//! What changed between two versions of a rule pack, for the analyst reviewing a change before
//! it goes live: the files added, removed and changed (a compact unified line diff of each), and
//! for the dated tables of `params.rhai` the rows added, removed or changed, by table and date,
//! because a table row is what most changes are and a line diff of a table hides its date.
//!
//! It compares the files the content hash covers ([`crate::RhaiPack::sources`]), so two packs
//! differ here exactly when their versions differ. Pure: it works on texts, so a version stored
//! in the database compares as well as a folder.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rhai::Dynamic;
use thiserror::Error;

use crate::engine::sandboxed_engine;
use crate::hash::SourceFile;
use crate::pack::PackError;
use crate::params::Params;

/// The file holding the dated tables, compared table by table rather than line by line.
const PARAMS_FILE: &str = "params.rhai";
/// Unchanged lines shown around each change.
pub const CONTEXT_LINES: usize = 2;
/// The largest table the line diff fills (old lines × new lines, after the common start and end
/// are set aside). A bigger change is shown as every old line removed, then every new line
/// added: still exact, only less compact.
const MAX_TABLE_CELLS: usize = 4_000_000;

/// Everything that differs between two packs, files in path order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PackDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<FileChange>,
}

/// One file in both packs whose text differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: String,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A script or the manifest: its line diff.
    Lines(Vec<Hunk>),
    /// `params.rhai`: the tables whose rows differ (none when only comments or layout changed).
    Tables(Vec<TableChange>),
}

/// A run of changed lines with their context, as in `diff -u`: line numbers are 1-based; a side
/// with no lines is numbered by the line before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    pub old_start: usize,
    pub old_count: usize,
    pub new_start: usize,
    pub new_count: usize,
    pub lines: Vec<DiffLine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffLine {
    Same(String),
    Removed(String),
    Added(String),
}

/// The rows of one table that differ, in date order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableChange {
    pub table: String,
    pub kind: TableKind,
    pub rows: Vec<RowChange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Added,
    Removed,
    Changed,
}

/// A row, named by the first day it is in force; values as written in `params.rhai`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowChange {
    Added { from: String, value: String },
    Removed { from: String, value: String },
    Changed { from: String, before: String, after: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DiffError {
    #[error("the old pack's tables cannot be read:\n{0}")]
    OldParams(PackError),
    #[error("the new pack's tables cannot be read:\n{0}")]
    NewParams(PackError),
}

impl PackDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Compares the sources of two packs (paths relative to the pack folder).
pub fn diff_packs(old: &[SourceFile], new: &[SourceFile]) -> Result<PackDiff, DiffError> {
    let old_files: BTreeMap<&str, &str> = old.iter().map(|file| (file.path.as_str(), file.text.as_str())).collect();
    let new_files: BTreeMap<&str, &str> = new.iter().map(|file| (file.path.as_str(), file.text.as_str())).collect();
    let mut diff = PackDiff::default();
    let paths: BTreeSet<&str> = old_files.keys().chain(new_files.keys()).copied().collect();
    for path in paths {
        match (old_files.get(path), new_files.get(path)) {
            (None, Some(_)) => diff.added.push(path.to_owned()),
            (Some(_), None) => diff.removed.push(path.to_owned()),
            (Some(before), Some(after)) if before != after => {
                let change = if path == PARAMS_FILE {
                    let before = tables(before).map_err(DiffError::OldParams)?;
                    let after = tables(after).map_err(DiffError::NewParams)?;
                    Change::Tables(diff_tables(&before, &after))
                } else {
                    Change::Lines(diff_lines(before, after, CONTEXT_LINES))
                };
                diff.changed.push(FileChange { path: path.to_owned(), change });
            }
            _ => {}
        }
    }
    Ok(diff)
}

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

/// Table name → rows `(first day, value as text)`, in date order.
type Tables = BTreeMap<String, Vec<(String, String)>>;

/// Reads the tables of a `params.rhai` text. `Params::parse` checks it first (rows sorted, dates
/// valid, values allowed), so the rows read here are well formed.
fn tables(text: &str) -> Result<Tables, PackError> {
    let engine = sandboxed_engine();
    Params::parse(&engine, PARAMS_FILE, text).map_err(|diagnostics| PackError { diagnostics })?;
    let whole_file =
        |message: String| PackError { diagnostics: vec![crate::Diagnostic::whole_file(PARAMS_FILE, message)] };
    let value: Dynamic = engine.eval_expression(text).map_err(|error| whole_file(error.to_string()))?;
    let map = value.try_cast::<rhai::Map>().ok_or_else(|| whole_file("expected a map of tables".to_owned()))?;
    let mut tables = Tables::new();
    for (name, table) in map {
        let rows = table.into_array().map_err(|_| whole_file(format!("table {name}: expected a list of rows")))?;
        let rows = rows
            .into_iter()
            .map(|row| {
                let pair = row.try_cast::<rhai::Array>().filter(|pair| pair.len() == 2);
                let pair =
                    pair.ok_or_else(|| whole_file(format!("table {name}: a row is not a [date, value] pair")))?;
                let date = pair[0].clone().into_string().unwrap_or_default();
                Ok((date, value_text(&pair[1])))
            })
            .collect::<Result<Vec<_>, PackError>>()?;
        tables.insert(name.to_string(), rows);
    }
    Ok(tables)
}

fn diff_tables(old: &Tables, new: &Tables) -> Vec<TableChange> {
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut changes = Vec::new();
    for name in names {
        let empty = Vec::new();
        let before = old.get(name).unwrap_or(&empty);
        let after = new.get(name).unwrap_or(&empty);
        let kind = match (old.contains_key(name), new.contains_key(name)) {
            (false, _) => TableKind::Added,
            (_, false) => TableKind::Removed,
            _ => TableKind::Changed,
        };
        let before_rows: BTreeMap<&str, &str> =
            before.iter().map(|(day, value)| (day.as_str(), value.as_str())).collect();
        let after_rows: BTreeMap<&str, &str> =
            after.iter().map(|(day, value)| (day.as_str(), value.as_str())).collect();
        let days: BTreeSet<&str> = before_rows.keys().chain(after_rows.keys()).copied().collect();
        let rows: Vec<RowChange> = days
            .into_iter()
            .filter_map(|day| {
                let from = day.to_owned();
                match (before_rows.get(day), after_rows.get(day)) {
                    (None, Some(value)) => Some(RowChange::Added { from, value: (*value).to_owned() }),
                    (Some(value), None) => Some(RowChange::Removed { from, value: (*value).to_owned() }),
                    (Some(was), Some(is)) if was != is => {
                        Some(RowChange::Changed { from, before: (*was).to_owned(), after: (*is).to_owned() })
                    }
                    _ => None,
                }
            })
            .collect();
        if !rows.is_empty() {
            changes.push(TableChange { table: name.clone(), kind, rows });
        }
    }
    changes
}

/// A table value as an analyst writes it: `3000`, `"text"`, `[1, 2]`, `#{ CONFORT: 20000 }`.
fn value_text(value: &Dynamic) -> String {
    if let Ok(number) = value.as_int() {
        return number.to_string();
    }
    if let Ok(flag) = value.as_bool() {
        return flag.to_string();
    }
    if value.is_string() {
        return format!("{:?}", value.clone().into_string().unwrap_or_default());
    }
    if let Ok(items) = value.as_array_ref() {
        let items: Vec<String> = items.iter().map(value_text).collect();
        return format!("[{}]", items.join(", "));
    }
    if let Ok(map) = value.as_map_ref() {
        // rhai::Map is a BTreeMap: keys come sorted, so the text does not depend on the file's order.
        let entries: Vec<String> = map
            .iter()
            .map(|(key, item)| {
                let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                let key = if bare { key.to_string() } else { format!("{:?}", key.as_str()) };
                format!("{key}: {}", value_text(item))
            })
            .collect();
        return format!("#{{ {} }}", entries.join(", "));
    }
    value.to_string()
}

// ---------------------------------------------------------------------------------------------
// Lines
// ---------------------------------------------------------------------------------------------

/// One step of the edit from the old lines to the new, by 0-based line index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Same(usize, usize),
    Removed(usize),
    Added(usize),
}

/// The hunks turning `old` into `new`, each with up to `context` unchanged lines around it.
pub fn diff_lines(old: &str, new: &str, context: usize) -> Vec<Hunk> {
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    let steps = edit_steps(&old, &new);
    let changed: Vec<usize> =
        steps.iter().enumerate().filter(|(_, step)| !matches!(step, Step::Same(..))).map(|(at, _)| at).collect();
    let mut hunks = Vec::new();
    let mut index = 0;
    while index < changed.len() {
        // A hunk runs from its first change to the last change separated from the previous one by
        // at most 2 × context unchanged steps (closer hunks would share their context).
        let first = changed[index];
        let mut last = first;
        index += 1;
        while index < changed.len() && changed[index] - last <= 2 * context + 1 {
            last = changed[index];
            index += 1;
        }
        let start = first.saturating_sub(context);
        let end = (last + context + 1).min(steps.len());
        let old_before = steps[..start].iter().filter(|step| !matches!(step, Step::Added(_))).count();
        let new_before = steps[..start].iter().filter(|step| !matches!(step, Step::Removed(_))).count();
        hunks.push(hunk(&steps[start..end], old_before, new_before, &old, &new));
    }
    hunks
}

/// The hunk of `steps`, which come after `old_before` old lines and `new_before` new lines.
fn hunk(steps: &[Step], old_before: usize, new_before: usize, old: &[&str], new: &[&str]) -> Hunk {
    let (mut old_count, mut new_count) = (0, 0);
    let lines = steps
        .iter()
        .map(|step| match *step {
            Step::Same(o, _) => {
                old_count += 1;
                new_count += 1;
                DiffLine::Same(old[o].to_owned())
            }
            Step::Removed(o) => {
                old_count += 1;
                DiffLine::Removed(old[o].to_owned())
            }
            Step::Added(n) => {
                new_count += 1;
                DiffLine::Added(new[n].to_owned())
            }
        })
        .collect();
    // As `diff -u` numbers them: a side with no line is numbered by the line before the hunk.
    let start = |before: usize, count: usize| if count == 0 { before } else { before + 1 };
    Hunk {
        old_start: start(old_before, old_count),
        old_count,
        new_start: start(new_before, new_count),
        new_count,
        lines,
    }
}

/// The shortest edit (a longest common subsequence of lines), removals before additions where
/// both are possible. The common start and end are set aside first, so a small change in a long
/// script fills a small table.
fn edit_steps(old: &[&str], new: &[&str]) -> Vec<Step> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..].iter().rev().zip(new[prefix..].iter().rev()).take_while(|(a, b)| a == b).count();
    let old_middle = &old[prefix..old.len() - suffix];
    let new_middle = &new[prefix..new.len() - suffix];
    let mut steps: Vec<Step> = (0..prefix).map(|at| Step::Same(at, at)).collect();
    let (rows, columns) = (old_middle.len(), new_middle.len());
    if rows.saturating_mul(columns) > MAX_TABLE_CELLS {
        steps.extend((0..rows).map(|o| Step::Removed(prefix + o)));
        steps.extend((0..columns).map(|n| Step::Added(prefix + n)));
    } else {
        // common[o][n]: the longest common subsequence of old_middle[o..] and new_middle[n..].
        let width = columns + 1;
        let mut common = vec![0_u32; (rows + 1) * width];
        for o in (0..rows).rev() {
            for n in (0..columns).rev() {
                common[o * width + n] = if old_middle[o] == new_middle[n] {
                    common[(o + 1) * width + n + 1] + 1
                } else {
                    common[(o + 1) * width + n].max(common[o * width + n + 1])
                };
            }
        }
        let (mut o, mut n) = (0, 0);
        while o < rows || n < columns {
            if o < rows && n < columns && old_middle[o] == new_middle[n] {
                steps.push(Step::Same(prefix + o, prefix + n));
                o += 1;
                n += 1;
            } else if o < rows && (n == columns || common[(o + 1) * width + n] >= common[o * width + n + 1]) {
                steps.push(Step::Removed(prefix + o));
                o += 1;
            } else {
                steps.push(Step::Added(prefix + n));
                n += 1;
            }
        }
    }
    let old_end = old.len() - suffix;
    let new_end = new.len() - suffix;
    steps.extend((0..suffix).map(|at| Step::Same(old_end + at, new_end + at)));
    steps
}

// ---------------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------------

impl fmt::Display for PackDiff {
    /// One line per file added or removed; for a changed file its hunks (indented) or its table
    /// rows: `table G_FEE: + row from 2026-03-01: 3200`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for path in &self.added {
            writeln!(f, "added: {path}")?;
        }
        for path in &self.removed {
            writeln!(f, "removed: {path}")?;
        }
        for file in &self.changed {
            writeln!(f, "changed: {}", file.path)?;
            match &file.change {
                Change::Lines(hunks) => {
                    for hunk in hunks {
                        write!(f, "{hunk}")?;
                    }
                }
                Change::Tables(tables) if tables.is_empty() => {
                    writeln!(f, "  comments or layout only: no table row changed")?;
                }
                Change::Tables(tables) => {
                    for table in tables {
                        write!(f, "{table}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Hunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  @@ -{},{} +{},{} @@", self.old_start, self.old_count, self.new_start, self.new_count)?;
        for line in &self.lines {
            match line {
                DiffLine::Same(text) => writeln!(f, "   {text}")?,
                DiffLine::Removed(text) => writeln!(f, "  -{text}")?,
                DiffLine::Added(text) => writeln!(f, "  +{text}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for TableChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.table;
        match self.kind {
            TableKind::Added => writeln!(f, "  table {name}: new table")?,
            TableKind::Removed => writeln!(f, "  table {name}: table removed")?,
            TableKind::Changed => {}
        }
        for row in &self.rows {
            match row {
                RowChange::Added { from, value } => writeln!(f, "  table {name}: + row from {from}: {value}")?,
                RowChange::Removed { from, value } => writeln!(f, "  table {name}: - row from {from}: {value}")?,
                RowChange::Changed { from, before, after } => {
                    writeln!(f, "  table {name}: row from {from}: {before} → {after}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, text: &str) -> SourceFile {
        SourceFile { path: path.to_owned(), text: text.to_owned() }
    }

    fn numbered(count: usize) -> String {
        (1..=count).map(|line| format!("line {line}\n")).collect()
    }

    #[test]
    fn a_changed_line_gets_a_hunk_with_its_context() {
        let old = numbered(10);
        let new = old.replace("line 5\n", "line five\n");
        let hunks = diff_lines(&old, &new, 2);
        let text: String = hunks.iter().map(ToString::to_string).collect();
        assert_eq!(text, "  @@ -3,5 +3,5 @@\n   line 3\n   line 4\n  -line 5\n  +line five\n   line 6\n   line 7\n");
    }

    #[test]
    fn near_changes_share_a_hunk_and_far_ones_do_not() {
        let old = numbered(20);
        let near = old.replace("line 5\n", "").replace("line 9\n", "line 9\nline 9b\n");
        let hunks = diff_lines(&old, &near, 2);
        assert_eq!(hunks.len(), 1, "{hunks:?}");
        assert_eq!((hunks[0].old_start, hunks[0].old_count, hunks[0].new_start, hunks[0].new_count), (3, 9, 3, 9));
        let far = old.replace("line 2\n", "line two\n").replace("line 18\n", "");
        let hunks = diff_lines(&old, &far, 2);
        let headers: Vec<(usize, usize, usize, usize)> =
            hunks.iter().map(|hunk| (hunk.old_start, hunk.old_count, hunk.new_start, hunk.new_count)).collect();
        assert_eq!(headers, [(1, 4, 1, 4), (16, 5, 16, 4)]);
    }

    #[test]
    fn lines_added_at_the_start_or_end_and_whole_files() {
        let hunks = diff_lines("a\nb\n", "new\na\nb\n", 1);
        assert_eq!(hunks[0].to_string(), "  @@ -1,1 +1,2 @@\n  +new\n   a\n");
        let hunks = diff_lines("a\nb\n", "a\nb\nc\n", 1);
        assert_eq!(hunks[0].to_string(), "  @@ -2,1 +2,2 @@\n   b\n  +c\n");
        let hunks = diff_lines("", "x\ny\n", 2);
        assert_eq!(hunks[0].to_string(), "  @@ -0,0 +1,2 @@\n  +x\n  +y\n");
        let hunks = diff_lines("x\ny\n", "", 2);
        assert_eq!(hunks[0].to_string(), "  @@ -1,2 +0,0 @@\n  -x\n  -y\n");
        assert!(diff_lines("same\n", "same\n", 2).is_empty());
    }

    #[test]
    fn the_edit_is_a_shortest_one() {
        let old = "a\nb\nc\nd\ne\n";
        let new = "a\nc\nd\nx\ne\n";
        let hunks = diff_lines(old, new, 0);
        let text: String = hunks.iter().map(ToString::to_string).collect();
        assert_eq!(text, "  @@ -2,1 +1,0 @@\n  -b\n  @@ -4,0 +4,1 @@\n  +x\n");
    }

    #[test]
    fn table_rows_are_compared_by_table_and_date() {
        let old = r#"#{
            G_FEE: [["2000-01-01", 2500], ["2024-12-22", 3000]],
            RATE: [["2000-01-01", 7000], ["2020-01-01", 6000]],
            PERCENT: [["2000-01-01", #{ CONFORT: 20000, ESSENTIEL: 10000 }]],
            GONE: [["2000-01-01", "x"]],
        }"#;
        let new = r#"#{
            // comments do not matter
            RATE: [["2000-01-01", 7000], ["2020-01-01", 6500]],
            G_FEE: [["2000-01-01", 2500], ["2024-12-22", 3000], ["2026-03-01", 3200]],
            PERCENT: [["2000-01-01", #{ ESSENTIEL: 10000, CONFORT: 20000 }]],
            NEW: [["2000-01-01", [1, true]]],
        }"#;
        let diff = diff_packs(
            &[file("params.rhai", old), file("pack.rhai", "#{}")],
            &[file("params.rhai", new), file("pack.rhai", "#{}")],
        )
        .unwrap();
        assert_eq!(
            diff.to_string(),
            [
                "changed: params.rhai",
                "  table GONE: table removed",
                "  table GONE: - row from 2000-01-01: \"x\"",
                "  table G_FEE: + row from 2026-03-01: 3200",
                "  table NEW: new table",
                "  table NEW: + row from 2000-01-01: [1, true]",
                "  table RATE: row from 2020-01-01: 6000 → 6500",
                "",
            ]
            .join("\n")
        );
    }

    #[test]
    fn files_added_removed_and_a_comment_only_table_change() {
        let params = "#{ A: [[\"2000-01-01\", 1]] }";
        let old = [file("params.rhai", params), file("plans/a.rhai", "fn a() { 1 }\n"), file("plans/b.rhai", "b\n")];
        let new = [
            file("params.rhai", &format!("// a comment\n{params}")),
            file("plans/a.rhai", "fn a() { 2 }\n"),
            file("plans/c.rhai", "c\n"),
        ];
        let diff = diff_packs(&old, &new).unwrap();
        assert_eq!(diff.added, ["plans/c.rhai"]);
        assert_eq!(diff.removed, ["plans/b.rhai"]);
        assert_eq!(
            diff.to_string(),
            "added: plans/c.rhai\nremoved: plans/b.rhai\nchanged: params.rhai\n  comments or layout only: no table row changed\nchanged: plans/a.rhai\n  @@ -1,1 +1,1 @@\n  -fn a() { 1 }\n  +fn a() { 2 }\n"
        );
        assert!(diff_packs(&old, &old).unwrap().is_empty());
    }

    #[test]
    fn broken_tables_are_an_error_naming_the_side() {
        let good = [file("params.rhai", "#{ A: [[\"2000-01-01\", 1]] }")];
        let bad = [file("params.rhai", "#{ A: [[\"2000-13-01\", 1]] }")];
        let error = diff_packs(&good, &bad).unwrap_err();
        assert!(matches!(error, DiffError::NewParams(_)), "{error:?}");
        assert!(error.to_string().contains("params.rhai:1:"), "{error}");
        assert!(error.to_string().contains("not a valid date"), "{error}");
    }

    #[test]
    fn a_change_too_large_for_the_table_is_shown_whole() {
        let old: String = (0..2100).map(|line| format!("old {line}\n")).collect();
        let new: String = (0..2100).map(|line| format!("new {line}\n")).collect();
        let hunks = diff_lines(&format!("same\n{old}"), &format!("same\n{new}"), 1);
        assert_eq!(hunks.len(), 1);
        assert_eq!(
            (hunks[0].old_start, hunks[0].old_count, hunks[0].new_start, hunks[0].new_count),
            (1, 2101, 1, 2101)
        );
        assert!(
            matches!(hunks[0].lines[1], DiffLine::Removed(_)) && matches!(hunks[0].lines[2101], DiffLine::Added(_))
        );
    }
}
