//! Diagnostics an analyst reads: `file:line:col: message`, and the translation of Rhai's own
//! errors into plain English that never names a Rust type.

use std::fmt;

use claims_domain::decision::RuleFailure;
use rhai::{EvalAltResult, ParseError, ParseErrorType, Position};

/// One problem in a pack, at a place in one of its files. Line and column start at 1; a line of
/// 0 means the problem concerns the file as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl Diagnostic {
    /// A problem with the file as a whole (unreadable, missing).
    pub fn whole_file(file: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic { file: file.to_owned(), line: 0, column: 0, message: message.into() }
    }

    /// A problem at a place (line, column) in the file.
    pub fn at(file: &str, place: (u32, u32), message: impl Into<String>) -> Diagnostic {
        Diagnostic { file: file.to_owned(), line: place.0, column: place.1, message: message.into() }
    }

    /// A compile error of the script `source` labelled `file`.
    pub(crate) fn from_parse_error(file: &str, source: &str, error: &ParseError) -> Diagnostic {
        let (line, column) = position_of(error.position()).unwrap_or((0, 0));
        if let Some((start, literal)) = decimal_literal_before(source, line, column) {
            let message = format!(
                "decimal numbers are not allowed: {literal} (amounts are whole minor units and rates basis points: \
                 write 1250 for 12,50 and 7000 for 70 %)"
            );
            return Diagnostic { file: file.to_owned(), line, column: start, message };
        }
        Diagnostic { file: file.to_owned(), line, column, message: parse_error_message(error.err_type()) }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
        }
    }
}

impl From<Diagnostic> for RuleFailure {
    fn from(diagnostic: Diagnostic) -> RuleFailure {
        RuleFailure {
            file: diagnostic.file,
            line: diagnostic.line,
            column: diagnostic.column,
            message: diagnostic.message,
        }
    }
}

/// Line and column (1-based) of a Rhai position, if it has one.
pub(crate) fn position_of(position: Position) -> Option<(u32, u32)> {
    let line = u32::try_from(position.line()?).ok()?;
    let column = position.position().and_then(|column| u32::try_from(column).ok()).unwrap_or(1);
    Some((line, column))
}

/// Where a path of keys first appears in a map literal's text: each key is searched after the
/// previous one, skipping `//` comments, so `["plans", "CONFORT", "scheme"]` lands on the
/// `scheme` of the `CONFORT` entry. A key that cannot be found leaves the last place found;
/// `(0, 0)` when not even the first key is found.
pub(crate) fn locate(source: &str, keys: &[&str]) -> (u32, u32) {
    let mut offset = 0;
    let mut found = None;
    for key in keys {
        match find_word(source, key, offset) {
            Some(at) => {
                found = Some(at);
                offset = at + key.len();
            }
            None => break,
        }
    }
    found.map_or((0, 0), |at| line_and_column(source, at))
}

/// Without floats, Rhai reads `1.5` as the property `5` of `1` and fails at the `5`. When the
/// error sits right after `<digits>.`, this gives the column where the number starts and the
/// number as written.
fn decimal_literal_before(source: &str, line: u32, column: u32) -> Option<(u32, String)> {
    let text: Vec<char> = source.lines().nth(usize::try_from(line).ok()?.checked_sub(1)?)?.chars().collect();
    let at = usize::try_from(column).ok()?.checked_sub(1)?;
    if at < 2 || text.get(at - 1) != Some(&'.') || !text.get(at)?.is_ascii_digit() || !text[at - 2].is_ascii_digit() {
        return None;
    }
    let start = (0..at - 1).rev().take_while(|index| text[*index].is_ascii_digit() || text[*index] == '_').last()?;
    let end = (at..text.len()).take_while(|index| text[*index].is_ascii_digit() || text[*index] == '_').last()?;
    let literal: String = text[start..=end].iter().collect();
    Some((u32::try_from(start + 1).ok()?, literal))
}

fn find_word(source: &str, word: &str, from: usize) -> Option<usize> {
    if word.is_empty() {
        return None;
    }
    let is_word_byte = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_';
    let bytes = source.as_bytes();
    let mut start = from;
    while let Some(relative) = source.get(start..)?.find(word) {
        let at = start + relative;
        let end = at + word.len();
        let before_ok = at == 0 || !is_word_byte(bytes[at - 1]);
        let after_ok = end >= bytes.len() || !is_word_byte(bytes[end]);
        let line_start = source[..at].rfind('\n').map_or(0, |index| index + 1);
        let in_comment = source[line_start..at].contains("//");
        if before_ok && after_ok && !in_comment {
            return Some(at);
        }
        start = end;
    }
    None
}

pub(crate) fn line_and_column(source: &str, offset: usize) -> (u32, u32) {
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    let column = before[line_start..].chars().count() + 1;
    (u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(column).unwrap_or(u32::MAX))
}

/// Where `fn name` is defined in a script's text: the fallback position of errors Rhai reports
/// without one (too many operations, calls too deep, data too large).
pub(crate) fn function_definition(source: &str, name: &str) -> (u32, u32) {
    let mut offset = 0;
    while let Some(at) = find_word(source, "fn", offset) {
        let rest = source[at + 2..].trim_start();
        if rest.starts_with(name) && rest[name.len()..].trim_start().starts_with('(') {
            return line_and_column(source, at);
        }
        offset = at + 2;
    }
    (1, 1)
}

fn lowercase_first(text: &str) -> String {
    let mut characters = text.chars();
    match characters.next() {
        Some(first) => first.to_lowercase().chain(characters).collect(),
        None => String::new(),
    }
}

/// An analyst's name for a Rhai or Rust type name.
pub(crate) fn type_description(type_name: &str) -> String {
    let name = type_name.trim();
    let described = match name {
        "i64" | "INT" | "int" => "an integer",
        "bool" => "a boolean",
        "string" | "ImmutableString" | "String" | "&str" | "&str | ImmutableString | String" => "a string",
        "char" => "a character",
        "array" | "Array" | "Vec<Dynamic>" => "a list",
        "map" | "Map" => "a map",
        "()" => "nothing",
        "Fn" | "FnPtr" => "a function pointer",
        "denial" => "a denial (deny(...))",
        "range" | "Range<i64>" | "RangeInclusive<i64>" => "a range",
        "Dynamic" | "?" => "any value",
        other if other.ends_with("Denial") => "a denial (deny(...))",
        other => return other.to_owned(),
    };
    described.to_owned()
}

/// A Rhai function signature like `param (&str | ImmutableString | String, i64)` in analyst terms:
/// `param(a string, an integer)`.
fn signature_description(signature: &str) -> String {
    let Some((name, rest)) = signature.split_once('(') else {
        return signature.trim().to_owned();
    };
    let arguments = rest.trim_end().trim_end_matches(')');
    let mut described = Vec::new();
    let mut depth = 0_i32;
    let mut current = String::new();
    for character in arguments.chars() {
        match character {
            '<' | '(' => depth += 1,
            '>' | ')' => depth -= 1,
            _ => {}
        }
        if character == ',' && depth == 0 {
            described.push(type_description(&current));
            current.clear();
        } else {
            current.push(character);
        }
    }
    if !current.trim().is_empty() {
        described.push(type_description(&current));
    }
    format!("{}({})", name.trim(), described.join(", "))
}

pub(crate) fn parse_error_message(error: &ParseErrorType) -> String {
    match error {
        ParseErrorType::VariableUndefined(name) => format!("reads a variable that does not exist: {name}"),
        ParseErrorType::Reserved(word) if word == "import" || word == "export" => {
            format!("`{word}` is not available: a rule script cannot load other files")
        }
        ParseErrorType::Reserved(word) => format!("`{word}` is a reserved word"),
        ParseErrorType::BadInput(lex) => {
            let text = lex.to_string();
            if text.starts_with("Invalid number") {
                format!("{}: amounts and rates are whole numbers (write 1250 for 12,50)", lowercase_first(&text))
            } else {
                lowercase_first(&text)
            }
        }
        ParseErrorType::UnexpectedEOF => "the script is incomplete (a missing `}` or `)`?)".to_owned(),
        other => lowercase_first(&other.to_string()),
    }
}

/// The innermost error of a nest of function calls, with the file it happened in.
pub(crate) fn innermost<'a>(error: &'a EvalAltResult, file: &'a str) -> (&'a EvalAltResult, &'a str, Position) {
    let mut current = error;
    let mut current_file = file;
    let mut call_position = Position::NONE;
    while let EvalAltResult::ErrorInFunctionCall(_, source, inner, position) = current {
        if !position.is_none() {
            call_position = *position;
        }
        if !source.is_empty() {
            current_file = source;
        }
        current = inner;
    }
    let position = if current.position().is_none() { call_position } else { current.position() };
    (current, current_file, position)
}

/// A runtime error as an analyst reads it.
pub(crate) fn runtime_error_message(error: &EvalAltResult) -> String {
    use EvalAltResult as E;
    match error {
        E::ErrorTooManyOperations(..) => "too many operations (endless loop?)".to_owned(),
        E::ErrorStackOverflow(..) => "nested calls too deep".to_owned(),
        E::ErrorDataTooLarge(what, ..) if what.contains("string") => "string too long".to_owned(),
        E::ErrorDataTooLarge(what, ..) if what.contains("array") => "list too large".to_owned(),
        E::ErrorDataTooLarge(what, ..) if what.contains("map") => "map too large".to_owned(),
        E::ErrorDataTooLarge(what, ..) => format!("{} too large", lowercase_first(what)),
        E::ErrorVariableNotFound(name, ..) => format!("reads a variable that does not exist: {name}"),
        E::ErrorPropertyNotFound(name, ..) => format!("map has no key {name:?}"),
        E::ErrorIndexNotFound(index, ..) => format!("map has no key {:?}", index.to_string()),
        E::ErrorFunctionNotFound(signature, ..) => {
            format!(
                "no function {} (wrong name, or wrong number or kinds of arguments)",
                signature_description(signature)
            )
        }
        E::ErrorMismatchDataType(expected, actual, ..) | E::ErrorMismatchOutputType(expected, actual, ..) => {
            format!("expected {}, got {}", type_description(expected), type_description(actual))
        }
        E::ErrorArrayBounds(length, index, ..) => {
            format!("list index {index} is out of bounds (the list has {length} items)")
        }
        E::ErrorStringBounds(length, index, ..) => {
            format!("string index {index} is out of bounds (the string has {length} characters)")
        }
        E::ErrorIndexingType(type_name, ..) => format!("cannot index into {}", type_description(type_name)),
        E::ErrorFor(..) => "a `for` loop needs a list or a range".to_owned(),
        E::ErrorArithmetic(message, ..) => format!("arithmetic error: {}", lowercase_first(message)),
        E::ErrorAssignmentToConstant(name, ..) => format!("cannot change the constant {name}"),
        E::ErrorRuntime(value, ..) => match value.clone().into_string() {
            Ok(text) => text,
            Err(_) => format!("the script threw {value}"),
        },
        E::ErrorDotExpr(text, ..) => dot_error_message(text),
        E::ErrorParsing(error, ..) => parse_error_message(error),
        E::ErrorInFunctionCall(_, _, inner, _) => runtime_error_message(inner),
        other => {
            let text = other.to_string();
            let first_line = text.lines().next().unwrap_or_default();
            lowercase_first(first_line.split(" (line ").next().unwrap_or(first_line))
        }
    }
}

/// Rhai's "Unknown property 'x' - a getter is not registered for type '()'" in analyst terms.
fn dot_error_message(text: &str) -> String {
    let quoted: Vec<&str> = text.split('\'').collect();
    match quoted.as_slice() {
        [start, property, _, type_name, ..] if start.starts_with("Unknown property") => {
            format!("cannot read {property:?} of {}: only maps have keys", type_description(type_name))
        }
        [start, property, _, type_name, ..] if start.starts_with("No writable property") => {
            format!("cannot set {property:?} of {}: only maps have keys", type_description(type_name))
        }
        _ => lowercase_first(text),
    }
}

/// A script failure while running `function` of the script `file` (whose text is `source`).
pub(crate) fn rule_failure(error: &EvalAltResult, file: &str, source: &str, function: &str) -> RuleFailure {
    let (inner, inner_file, position) = innermost(error, file);
    let (line, column) = position_of(position).unwrap_or_else(|| function_definition(source, function));
    let mut message = runtime_error_message(inner);
    if position.is_none() {
        message = format!("{message} in fn {function}");
    }
    RuleFailure { file: inner_file.to_owned(), line, column, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_keys_outside_comments() {
        let source = "#{\n  // CONFORT: scheme\n  plans: #{\n    CONFORT: #{ scheme: \"x\" },\n  },\n}";
        assert_eq!(locate(source, &["plans", "CONFORT", "scheme"]), (4, 17));
        assert_eq!(locate(source, &["plans", "MISSING"]), (3, 3));
        assert_eq!(locate(source, &["nothing"]), (0, 0));
    }

    #[test]
    fn finds_function_definitions() {
        let source = "// fn tariff\nfn helper(x) { x }\n\nfn tariff (line, member) {\n}";
        assert_eq!(function_definition(source, "tariff"), (4, 1));
        assert_eq!(function_definition(source, "absent"), (1, 1));
    }

    #[test]
    fn describes_signatures_without_rust_types() {
        assert_eq!(
            signature_description("param (&str | ImmutableString | String, i64)"),
            "param(a string, an integer)"
        );
    }

    #[test]
    fn displays_whole_file_problems_without_position() {
        let diagnostic = Diagnostic::whole_file("rules/fr/pack.rhai", "cannot read the file");
        assert_eq!(diagnostic.to_string(), "rules/fr/pack.rhai: cannot read the file");
        let diagnostic = Diagnostic::at("a.rhai", (3, 7), "boom");
        assert_eq!(diagnostic.to_string(), "a.rhai:3:7: boom");
    }
}
