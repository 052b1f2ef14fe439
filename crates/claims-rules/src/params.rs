//! Dated parameter tables (`params.rhai`): each table is a list of `[first day, value]` rows in
//! strictly increasing date order; a row is in force from its date until the day before the next.

use std::collections::{BTreeMap, BTreeSet};

use claims_domain::date::Date;
use rhai::{Dynamic, Engine};
use thiserror::Error;

use crate::diagnostic::{Diagnostic, locate, runtime_error_message, type_description};

/// Every dated table of a pack.
#[derive(Debug, Clone, Default)]
pub struct Params {
    tables: BTreeMap<String, Rows>,
    /// Tables that exist but could not be read (only in what `parse_partly` returns).
    broken: BTreeSet<String>,
}

/// Why `param(name, date)` has no value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParamError {
    #[error("unknown parameter {name:?}{}", suggestion.as_ref().map(|known| format!(" (did you mean {known:?}?)")).unwrap_or_default())]
    Unknown { name: String, suggestion: Option<String> },
    #[error("parameter {name:?} has no row in force on {date}")]
    NoRowInForce { name: String, date: Date },
}

impl Params {
    /// Reads `params.rhai` (the text `source` of the file labelled `file`), reporting every
    /// problem found.
    pub fn parse(engine: &Engine, file: &str, source: &str) -> Result<Params, Vec<Diagnostic>> {
        let (params, problems) = Params::parse_partly(engine, file, source)?;
        if problems.is_empty() { Ok(params) } else { Err(problems) }
    }

    /// The tables that are right and the problems of the others (so that `check` can still look
    /// into the good ones); `Err` when the file as a whole cannot be read.
    pub(crate) fn parse_partly(
        engine: &Engine,
        file: &str,
        source: &str,
    ) -> Result<(Params, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut ast = engine
            .compile_expression(source)
            .map_err(|error| vec![Diagnostic::from_parse_error(file, source, &error)])?;
        ast.set_source(file);
        let value: Dynamic = engine.eval_ast(&ast).map_err(|error| {
            let (line, column) = crate::diagnostic::position_of(error.position()).unwrap_or((0, 0));
            vec![Diagnostic { file: file.to_owned(), line, column, message: runtime_error_message(&error) }]
        })?;
        let Some(map) = value.try_cast::<rhai::Map>() else {
            return Err(vec![Diagnostic::whole_file(
                file,
                "expected a map of tables: #{ NAME: [[\"2025-01-01\", value], ...] }",
            )]);
        };
        let mut problems = Vec::new();
        let mut tables = BTreeMap::new();
        let mut broken = BTreeSet::new();
        for (name, table) in map {
            let name = name.to_string();
            match parse_table(table) {
                Ok(rows) => {
                    tables.insert(name, rows);
                }
                Err(table_problems) => {
                    broken.insert(name.clone());
                    problems.extend(table_problems.into_iter().map(|(row, message)| {
                        // The n-th row dated `date` is found by searching the date n times.
                        let mut path = vec![name.as_str()];
                        if let Some((date, occurrence)) = &row {
                            path.extend(std::iter::repeat_n(date.as_str(), *occurrence));
                        }
                        let place = locate(source, &path);
                        Diagnostic::at(file, place, format!("table {name}: {message}"))
                    }));
                }
            }
        }
        Ok((Params { tables, broken }, problems))
    }

    /// The value of table `name` in force on `date`: the last row dated on or before it.
    pub fn lookup(&self, name: &str, date: Date) -> Result<&Dynamic, ParamError> {
        let rows = self
            .tables
            .get(name)
            .ok_or_else(|| ParamError::Unknown { name: name.to_owned(), suggestion: self.closest_name(name) })?;
        let in_force = rows.partition_point(|(first_day, _)| *first_day <= date);
        in_force
            .checked_sub(1)
            .and_then(|index| rows.get(index))
            .map(|(_, value)| value)
            .ok_or_else(|| ParamError::NoRowInForce { name: name.to_owned(), date })
    }

    /// Table names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tables.keys().map(String::as_str)
    }

    /// Every table the file defines, readable or not.
    pub(crate) fn defined_names(&self) -> BTreeSet<String> {
        self.tables.keys().chain(&self.broken).cloned().collect()
    }

    /// Whether the file defines table `name`, readable or not.
    pub(crate) fn defines(&self, name: &str) -> bool {
        self.tables.contains_key(name) || self.broken.contains(name)
    }

    /// Every table with its rows (first day in force, value), sorted by name.
    pub(crate) fn tables(&self) -> impl Iterator<Item = (&str, &[(Date, Dynamic)])> {
        self.tables.iter().map(|(name, rows)| (name.as_str(), rows.as_slice()))
    }

    fn closest_name(&self, name: &str) -> Option<String> {
        closest(name, self.tables.keys())
    }
}

/// The known name closest to `name` when it is close enough to be a typo (case aside, at most
/// 2 edits, or a quarter of the name's length for long names).
pub(crate) fn closest<'a>(name: &str, known: impl IntoIterator<Item = &'a String>) -> Option<String> {
    known
        .into_iter()
        .filter(|known| known.as_str() != name)
        .map(|known| (edit_distance(&name.to_lowercase(), &known.to_lowercase()), known))
        .filter(|(distance, known)| *distance <= 2.max(known.len() / 4))
        .min()
        .map(|(_, known)| known.clone())
}

/// The rows of one table, or the problems found, each with the date of the row it concerns.
/// A row is named by its date text and how many rows of the table so far have that text.
type RowPlace = Option<(String, usize)>;

/// The rows of a table: the first day each is in force, and its value.
type Rows = Vec<(Date, Dynamic)>;

fn parse_table(table: Dynamic) -> Result<Rows, Vec<(RowPlace, String)>> {
    let Ok(rows) = table.clone().into_array() else {
        return Err(vec![(
            None,
            format!("expected a list of [date, value] rows, got {}", type_description(table.type_name())),
        )]);
    };
    if rows.is_empty() {
        return Err(vec![(None, "has no rows".to_owned())]);
    }
    let mut problems = Vec::new();
    let mut parsed: Rows = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (index, row) in rows.into_iter().enumerate() {
        let position = index + 1;
        let Some(row) = row.try_cast::<rhai::Array>().filter(|row| row.len() == 2) else {
            problems.push((None, format!("row {position} is not a [date, value] pair")));
            continue;
        };
        let date_text = row[0].clone().into_string().unwrap_or_default();
        seen.push(date_text.clone());
        let place = Some((date_text.clone(), seen.iter().filter(|text| **text == date_text).count()));
        let date = match Date::parse(&date_text) {
            Ok(date) => date,
            Err(error) => {
                problems.push((place.clone(), format!("row {position}: {error}")));
                continue;
            }
        };
        if let Err(message) = check_value(&row[1]) {
            problems.push((place.clone(), format!("row {position} ({date}): {message}")));
            continue;
        }
        if let Some((previous, _)) = parsed.last() {
            if date == *previous {
                problems.push((place.clone(), format!("row {position} repeats the date {date}")));
                continue;
            }
            if date < *previous {
                problems.push((
                    place.clone(),
                    format!("row {position} ({date}) comes after {previous}: rows must be sorted by date"),
                ));
                continue;
            }
        }
        parsed.push((date, row[1].clone()));
    }
    if problems.is_empty() { Ok(parsed) } else { Err(problems) }
}

/// A parameter value is a number, a boolean, a string, or a list or map of those.
fn check_value(value: &Dynamic) -> Result<(), String> {
    if value.is_int() || value.is_bool() || value.is_string() {
        return Ok(());
    }
    if let Ok(items) = value.as_array_ref() {
        return items.iter().try_for_each(check_value);
    }
    if let Ok(map) = value.as_map_ref() {
        return map.values().try_for_each(check_value);
    }
    Err(format!("a value may be a number, a string, a list or a map, not {}", type_description(value.type_name())))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sandboxed_engine;

    const FILE: &str = "rules/xx/params.rhai";

    fn day(text: &str) -> Date {
        Date::parse(text).expect("test date")
    }

    #[test]
    fn looks_up_the_row_in_force_including_its_first_day() {
        let source = r#"#{ G_FEE: [["2000-01-01", 2500], ["2023-12-22", 2650], ["2024-12-22", 3000]] }"#;
        let params = Params::parse(&sandboxed_engine(), FILE, source).expect("valid params");
        assert_eq!(params.lookup("G_FEE", day("2023-12-21")).unwrap().as_int(), Ok(2500));
        assert_eq!(params.lookup("G_FEE", day("2023-12-22")).unwrap().as_int(), Ok(2650));
        assert_eq!(params.lookup("G_FEE", day("2024-12-21")).unwrap().as_int(), Ok(2650));
        assert_eq!(params.lookup("G_FEE", day("2024-12-22")).unwrap().as_int(), Ok(3000));
        assert_eq!(params.lookup("G_FEE", day("2099-01-01")).unwrap().as_int(), Ok(3000));
        let too_early = params.lookup("G_FEE", day("1999-01-01")).unwrap_err();
        assert_eq!(too_early.to_string(), "parameter \"G_FEE\" has no row in force on 1999-01-01");
        let typo = params.lookup("G_FE", day("2025-01-01")).unwrap_err();
        assert_eq!(typo.to_string(), "unknown parameter \"G_FE\" (did you mean \"G_FEE\"?)");
        assert_eq!(params.lookup("ZZZ", day("2025-01-01")).unwrap_err().to_string(), "unknown parameter \"ZZZ\"");
    }

    #[test]
    fn rejects_unsorted_duplicate_and_malformed_rows() {
        let source = "#{\n  A: [[\"2020-01-01\", 1], [\"2019-01-01\", 2]],\n  B: [[\"2020-01-01\", 1], [\"2020-01-01\", 2]],\n  C: [[\"2020-02-30\", 1]],\n  D: [[\"2020-01-01\"]],\n  E: [],\n}";
        let problems = Params::parse(&sandboxed_engine(), FILE, source).unwrap_err();
        let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "rules/xx/params.rhai:2:28: table A: row 2 (2019-01-01) comes after 2020-01-01: rows must be sorted by date",
                "rules/xx/params.rhai:3:28: table B: row 2 repeats the date 2020-01-01",
                "rules/xx/params.rhai:4:9: table C: row 1: \"2020-02-30\" is not a valid date (expected YYYY-MM-DD)",
                "rules/xx/params.rhai:5:3: table D: row 1 is not a [date, value] pair",
                "rules/xx/params.rhai:6:3: table E: has no rows",
            ]
        );
    }

    #[test]
    fn values_may_be_lists_and_maps() {
        let source = r#"#{ PERCENT: [["2020-01-01", #{ CONFORT: 20000, ESSENTIEL: [1, "x", true] }]] }"#;
        let params = Params::parse(&sandboxed_engine(), FILE, source).expect("valid params");
        assert!(params.lookup("PERCENT", day("2025-01-01")).unwrap().is_map());
        let not_a_map = Params::parse(&sandboxed_engine(), FILE, "[1, 2]").unwrap_err();
        assert!(not_a_map[0].message.starts_with("expected a map of tables"), "{}", not_a_map[0]);
    }
}
