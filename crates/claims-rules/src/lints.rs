//! Mistakes `claimctl rules check` finds in the text of scripts, tables and tests without running
//! anything: a rate above 100 %, a plan, agreement or table name the pack does not know. Scripts
//! are read as tokens ([`tokens`]), so comments and the insides of strings are never mistaken for
//! code.

use std::collections::BTreeSet;

use claims_domain::money::RateBps;
use rhai::Dynamic;

use crate::diagnostic::{Diagnostic, line_and_column, locate};
use crate::params::{Params, closest};

/// The largest rate a tariff or a compulsory plan may give: 100 % (`RateBps::FULL`).
pub(crate) const FULL_RATE_BPS: i64 = 10_000;
/// The largest rate `apply_rate` takes (a product's "300 % of the base" is 30000).
pub(crate) const MAX_APPLY_RATE_BPS: i64 = RateBps::MAX_BPS as i64;

/// One token of a script, at byte `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Word(String),
    Integer(i64),
    /// A string literal: `"..."`, or a back-quoted one without `${...}`.
    Text(String),
    Symbol(&'static str),
}

#[derive(Debug, Clone)]
pub(crate) struct Located {
    pub token: Token,
    pub offset: usize,
}

const SYMBOLS: &[&str] = &[
    "#{", "==", "!=", "<=", ">=", "=>", "&&", "||", "::", "+=", "-=", "*=", "/=", "?.", "??", "..", "{", "}", "(", ")",
    "[", "]", ",", ":", ";", ".", "=", "<", ">", "+", "-", "*", "/", "%", "!", "|", "&", "^", "?", "@", "$", "#", "~",
    "\\",
];

/// The tokens of a script. Comments (nested `/* */` included), characters and interpolated
/// strings are skipped; an integer too large for 64 bits is left out.
pub(crate) fn tokens(text: &str) -> Vec<Located> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        if byte.is_ascii_whitespace() {
            at += 1;
        } else if text[at..].starts_with("//") {
            at = text[at..].find('\n').map_or(bytes.len(), |end| at + end);
        } else if text[at..].starts_with("/*") {
            at = block_comment_end(text, at);
        } else if byte == b'"' || byte == b'`' || byte == b'\'' {
            let (end, value, plain) = quoted(text, at, byte);
            if plain && byte != b'\'' {
                found.push(Located { token: Token::Text(value), offset: at });
            }
            at = end;
        } else if byte.is_ascii_digit() {
            let end =
                at + text[at..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(bytes.len() - at);
            if let Ok(value) = text[at..end].replace('_', "").parse::<i64>() {
                found.push(Located { token: Token::Integer(value), offset: at });
            }
            at = end;
        } else if byte.is_ascii_alphabetic() || byte == b'_' {
            let end =
                at + text[at..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(bytes.len() - at);
            found.push(Located { token: Token::Word(text[at..end].to_owned()), offset: at });
            at = end;
        } else if let Some(symbol) = SYMBOLS.iter().find(|symbol| text[at..].starts_with(**symbol)) {
            found.push(Located { token: Token::Symbol(symbol), offset: at });
            at += symbol.len();
        } else {
            at += text[at..].chars().next().map_or(1, char::len_utf8);
        }
    }
    found
}

fn block_comment_end(text: &str, start: usize) -> usize {
    let mut depth = 0_usize;
    let mut at = start;
    while at < text.len() {
        if text[at..].starts_with("/*") {
            depth += 1;
            at += 2;
        } else if text[at..].starts_with("*/") {
            depth -= 1;
            at += 2;
            if depth == 0 {
                return at;
            }
        } else {
            at += text[at..].chars().next().map_or(1, char::len_utf8);
        }
    }
    text.len()
}

/// The end of the literal opened by `quote` at `start`, its text, and whether it is plain (no
/// `${...}` inside a back-quoted string).
fn quoted(text: &str, start: usize, quote: u8) -> (usize, String, bool) {
    let mut value = String::new();
    let mut plain = true;
    let mut characters = text[start + 1..].char_indices();
    while let Some((index, character)) = characters.next() {
        let at = start + 1 + index;
        match character {
            '\\' if quote != b'`' => {
                if let Some((_, escaped)) = characters.next() {
                    value.push(escaped);
                }
            }
            '$' if quote == b'`' && text[at..].starts_with("${") => plain = false,
            _ if character as u32 == u32::from(quote) => return (at + 1, value, plain),
            _ => value.push(character),
        }
    }
    (text.len(), value, plain)
}

/// What the pack defines, against which names in scripts and tests are checked.
pub(crate) struct Names<'a> {
    pub plans: BTreeSet<String>,
    pub agreements: BTreeSet<String>,
    pub params: &'a Params,
    /// Whether the tables file was read as a map of tables; when not, table names are not checked.
    pub params_known: bool,
}

fn did_you_mean(name: &str, known: &BTreeSet<String>) -> String {
    closest(name, known).map(|known| format!(" (did you mean {known:?}?)")).unwrap_or_default()
}

fn known_list(known: &BTreeSet<String>) -> String {
    let names: Vec<String> = known.iter().map(|name| format!("{name:?}")).collect();
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

/// The mistakes in the text of one script labelled `file`.
pub(crate) fn lint_script(file: &str, text: &str, names: &Names<'_>) -> Vec<Diagnostic> {
    let tokens = tokens(text);
    let mut problems = Vec::new();
    let at = |offset: usize| line_and_column(text, offset);
    for (index, located) in tokens.iter().enumerate() {
        let next = |step: usize| tokens.get(index + step).map(|located| &located.token);
        match &located.token {
            // `rate_bps: 12000`, `answer.rate_bps = 12000`, `#{ "rate_bps": -5 }`
            Token::Word(word) | Token::Text(word)
                if word == "rate_bps" && matches!(next(1), Some(Token::Symbol(":" | "="))) =>
            {
                if let Some((value, offset)) = signed_integer(&tokens, index + 2)
                    && !(0..=FULL_RATE_BPS).contains(&value)
                {
                    problems.push(Diagnostic::at(file, at(offset), rate_message("rate_bps", value)));
                }
            }
            Token::Word(word) if word == "apply_rate" && next(1) == Some(&Token::Symbol("(")) => {
                if let Some((value, offset)) = second_argument_literal(&tokens, index + 1)
                    && !(0..=MAX_APPLY_RATE_BPS).contains(&value)
                {
                    problems.push(Diagnostic::at(
                        file,
                        at(offset),
                        format!(
                            "apply_rate: a rate of {value} basis points is outside 0..={MAX_APPLY_RATE_BPS} \
                             (0 % to 1000 %)"
                        ),
                    ));
                }
            }
            Token::Word(word) if word == "param" && next(1) == Some(&Token::Symbol("(")) => {
                if let Some(Token::Text(table)) = next(2)
                    && names.params_known
                    && !names.params.defines(table)
                {
                    let known = names.params.defined_names();
                    let offset = tokens[index + 2].offset;
                    problems.push(Diagnostic::at(
                        file,
                        at(offset),
                        format!("unknown parameter table {table:?}{}", did_you_mean(table, &known)),
                    ));
                }
            }
            _ => {}
        }
    }
    problems.extend(unknown_functions(&tokens).into_iter().map(|(name, offset)| {
        let suggestion = did_you_mean(&name, &crate::api::known_functions());
        Diagnostic::at(file, at(offset), format!("no function named {name}{suggestion}"))
    }));
    for (name, offset, kind) in compared_names(&tokens) {
        let (known, what) = match kind {
            NameKind::Plan => (&names.plans, "plan"),
            NameKind::Agreement => (&names.agreements, "agreement"),
        };
        if !known.contains(&name) {
            let suggestion = closest(&name, known).map_or_else(
                || format!(" (the pack's {what}s: {})", known_list(known)),
                |near| format!(" (did you mean {near:?}?)"),
            );
            problems.push(Diagnostic::at(file, at(offset), format!("unknown {what} {name:?}{suggestion}")));
        }
    }
    problems
}

pub(crate) fn rate_message(what: &str, value: i64) -> String {
    if value < 0 {
        format!("{what} is {value} basis points: a rate cannot be negative")
    } else {
        format!("{what} is {value} basis points, above 100 % ({FULL_RATE_BPS}): a rate cannot pay more than the base")
    }
}

/// Words that look like a call but are not one (`if (a) {}`, `fn name(`).
const KEYWORDS: &[&str] = &[
    "if", "else", "while", "loop", "for", "in", "return", "switch", "do", "until", "let", "const", "throw", "try",
    "catch", "break", "continue", "not", "fn", "private",
];

/// Calls `name(...)` of functions that neither the script defines nor the engine offers (a
/// variable holding a function pointer, called as `f(x)`, is not counted). Method calls
/// (`list.len()`) are left to Rhai, which reports them when run.
fn unknown_functions(tokens: &[Located]) -> Vec<(String, usize)> {
    let token = |index: usize| tokens.get(index).map(|located| &located.token);
    let mut defined = BTreeSet::new();
    for index in 0..tokens.len() {
        if let (Some(Token::Word(word)), Some(Token::Word(name))) = (token(index), token(index + 1))
            && matches!(word.as_str(), "fn" | "let" | "const" | "for")
        {
            defined.insert(name.clone());
        }
        // Parameters of functions and closures: `fn f(a, b)`, `|a, b|`.
        if let (Some(Token::Word(name)), Some(Token::Symbol("," | ")" | "|"))) = (token(index), token(index + 1)) {
            let mut back = index;
            while back > 0 && matches!(token(back - 1), Some(Token::Word(_) | Token::Symbol(","))) {
                back -= 1;
            }
            if matches!(token(back.wrapping_sub(1)), Some(Token::Symbol("(" | "|")))
                && (matches!(token(back.wrapping_sub(1)), Some(Token::Symbol("|")))
                    || matches!(token(back.wrapping_sub(3)), Some(Token::Word(word)) if word == "fn"))
            {
                defined.insert(name.clone());
            }
        }
    }
    let mut found = Vec::new();
    for (index, located) in tokens.iter().enumerate() {
        let Token::Word(name) = &located.token else { continue };
        if token(index + 1) != Some(&Token::Symbol("("))
            || matches!(token(index.wrapping_sub(1)), Some(Token::Symbol("." | "?." | "::")))
            || matches!(token(index.wrapping_sub(1)), Some(Token::Word(word)) if word == "fn")
            || KEYWORDS.contains(&name.as_str())
            || defined.contains(name)
            || crate::api::is_known_function(name)
        {
            continue;
        }
        found.push((name.clone(), located.offset));
    }
    found
}

/// An integer literal at `index`, with an optional `-` before it, when it is the whole value
/// (followed by `,`, `}`, `;` or `)`).
fn signed_integer(tokens: &[Located], index: usize) -> Option<(i64, usize)> {
    let (negative, index) = match tokens.get(index).map(|located| &located.token) {
        Some(Token::Symbol("-")) => (true, index + 1),
        _ => (false, index),
    };
    let Token::Integer(value) = tokens.get(index)?.token else { return None };
    let whole = matches!(
        tokens.get(index + 1).map(|located| &located.token),
        None | Some(Token::Symbol("," | "}" | ";" | ")"))
    );
    let offset = tokens[if negative { index - 1 } else { index }].offset;
    whole.then_some((if negative { -value } else { value }, offset))
}

/// The second argument of the call whose `(` is at `open`, when it is a single integer literal.
fn second_argument_literal(tokens: &[Located], open: usize) -> Option<(i64, usize)> {
    let mut depth = 0_i32;
    for index in open..tokens.len() {
        match tokens[index].token {
            Token::Symbol("(" | "[" | "{" | "#{") => depth += 1,
            Token::Symbol(")" | "]" | "}") => {
                depth -= 1;
                if depth == 0 {
                    return None;
                }
            }
            Token::Symbol(",") if depth == 1 => {
                let (value, offset) = signed_integer(tokens, index + 1)?;
                let after = if matches!(tokens[index + 1].token, Token::Symbol("-")) { index + 3 } else { index + 2 };
                return matches!(tokens.get(after).map(|located| &located.token), Some(Token::Symbol(")")))
                    .then_some((value, offset));
            }
            _ => {}
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameKind {
    Plan,
    Agreement,
}

/// What a variable or key names by convention: `plan`, `compulsory.plan` and `*_plan` hold
/// plan names; `agreement`, `provider.agreement` and `*_agreement` agreement names.
fn kind_of(word: &str) -> Option<NameKind> {
    if word == "plan" || word.ends_with("_plan") {
        Some(NameKind::Plan)
    } else if word == "agreement" || word.ends_with("_agreement") {
        Some(NameKind::Agreement)
    } else {
        None
    }
}

/// Every string literal a script compares with a plan or an agreement: `plan == "CONFORT"`,
/// `"CONFORT" != compulsory.plan`, `plan in ["CONFORT", "INTEGRAL"]`, `switch plan { "A" => }`.
fn compared_names(tokens: &[Located]) -> Vec<(String, usize, NameKind)> {
    let token = |index: usize| tokens.get(index).map(|located| &located.token);
    let word_kind = |index: usize| match token(index) {
        Some(Token::Word(word)) => kind_of(word),
        _ => None,
    };
    let mut found = Vec::new();
    for index in 0..tokens.len() {
        match &tokens[index].token {
            Token::Symbol("==" | "!=") => {
                // name == "X": the word just before, not itself the start of a call or an index.
                if let (Some(kind), Some(Token::Text(name))) =
                    (index.checked_sub(1).and_then(word_kind), token(index + 1))
                    && !matches!(token(index + 2), Some(Token::Symbol("." | "(" | "[")))
                {
                    found.push((name.clone(), tokens[index + 1].offset, kind));
                }
                // "X" == a.b.plan
                if let Some(Token::Text(name)) = index.checked_sub(1).and_then(token) {
                    let mut end = index + 1;
                    while matches!(token(end + 1), Some(Token::Symbol("." | "?.")))
                        && matches!(token(end + 2), Some(Token::Word(_)))
                    {
                        end += 2;
                    }
                    if let Some(kind) = word_kind(end)
                        && !matches!(token(end + 1), Some(Token::Symbol("(" | "[")))
                    {
                        found.push((name.clone(), tokens[index - 1].offset, kind));
                    }
                }
            }
            Token::Word(word) if word == "in" => {
                if let Some(kind) = index.checked_sub(1).and_then(word_kind)
                    && token(index + 1) == Some(&Token::Symbol("["))
                {
                    let mut item = index + 2;
                    while let Some(Token::Text(name)) = token(item) {
                        found.push((name.clone(), tokens[item].offset, kind));
                        match token(item + 1) {
                            Some(Token::Symbol(",")) => item += 2,
                            _ => break,
                        }
                    }
                }
            }
            Token::Word(word) if word == "switch" => {
                let mut head = index + 1;
                while matches!(token(head), Some(Token::Word(_) | Token::Symbol("." | "?."))) {
                    head += 1;
                }
                let Some(kind) = head.checked_sub(1).and_then(word_kind) else { continue };
                if token(head) != Some(&Token::Symbol("{")) {
                    continue;
                }
                let mut depth = 0_i32;
                for (case, located) in tokens.iter().enumerate().skip(head) {
                    match &located.token {
                        Token::Symbol("{" | "(" | "[" | "#{") => depth += 1,
                        Token::Symbol("}" | ")" | "]") => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        Token::Text(name)
                            if depth == 1
                                && matches!(token(case + 1), Some(Token::Symbol("=>" | "|")))
                                && matches!(token(case.wrapping_sub(1)), Some(Token::Symbol("{" | "," | "|"))) =>
                        {
                            found.push((name.clone(), located.offset, kind));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    found
}

/// Table words that mark a table of rates (basis points, at most 100 %): `DOCTOR_RATE`,
/// `RATE_OUT_OF_PATHWAY`; and map keys that hold rates inside any table: `rate_bps`, `gp_rate`.
fn names_a_rate(name: &str) -> bool {
    name.split('_').any(|word| word.eq_ignore_ascii_case("rate") || word.eq_ignore_ascii_case("bps"))
}

/// Rates above 100 % in the tables (`params.rhai`, text `source`), and keys of tables keyed by
/// plan or agreement that name neither.
pub(crate) fn lint_params(file: &str, source: &str, names: &Names<'_>) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    for (table, rows) in names.params.tables() {
        for (date, value) in rows {
            let date = date.to_string();
            let mut path = vec![table.to_owned(), date.clone()];
            rates_in(value, names_a_rate(table), &mut path, &mut |path, what, bps| {
                let place: Vec<&str> = path.iter().map(String::as_str).collect();
                let message = rate_message(&format!("table {table}: row {date}: {what}"), bps);
                problems.push(Diagnostic::at(file, locate(source, &place), message));
            });
            keyed_by_name(value, &mut vec![table.to_owned(), date.clone()], names, &mut |path, message| {
                let place: Vec<&str> = path.iter().map(String::as_str).collect();
                problems.push(Diagnostic::at(
                    file,
                    locate(source, &place),
                    format!("table {table}: row {date}: {message}"),
                ));
            });
        }
    }
    problems
}

/// Calls `report(path, what, value)` for every integer that is a rate (inside a rate table,
/// or under a key naming a rate) outside 0..=100 %. `path` ends with the number itself, which
/// is where `locate` lands.
fn rates_in(value: &Dynamic, is_rate: bool, path: &mut Vec<String>, report: &mut dyn FnMut(&[String], String, i64)) {
    if let Ok(number) = value.as_int() {
        if is_rate && !(0..=FULL_RATE_BPS).contains(&number) {
            let what = match path.get(2..) {
                Some(keys) if !keys.is_empty() => keys.join("."),
                _ => "the rate".to_owned(),
            };
            path.push(number.unsigned_abs().to_string());
            report(path, what, number);
            path.pop();
        }
    } else if let Ok(items) = value.as_array_ref() {
        for item in items.iter() {
            rates_in(item, is_rate, path, report);
        }
    } else if let Ok(map) = value.as_map_ref() {
        for (key, item) in map.iter() {
            path.push(key.to_string());
            rates_in(item, is_rate || names_a_rate(key), path, report);
            path.pop();
        }
    }
}

/// A map some of whose keys are plan (or agreement) names is read as keyed by them
/// (`param("DOCTOR_PERCENT", date)[plan]`): every other key is reported, with the closest name.
fn keyed_by_name(
    value: &Dynamic,
    path: &mut Vec<String>,
    names: &Names<'_>,
    report: &mut dyn FnMut(&[String], String),
) {
    let Ok(map) = value.as_map_ref() else {
        if let Ok(items) = value.as_array_ref() {
            items.iter().for_each(|item| keyed_by_name(item, path, names, report));
        }
        return;
    };
    for (known, what) in [(&names.plans, "plan"), (&names.agreements, "agreement")] {
        let keys: Vec<&str> = map.keys().map(|key| key.as_str()).collect();
        if keys.iter().any(|key| known.contains(*key)) {
            for key in keys.iter().filter(|key| !known.contains(**key)) {
                path.push((*key).to_owned());
                report(path, format!("unknown {what} {key:?} in a map keyed by {what}{}", did_you_mean(key, known)));
                path.pop();
            }
            return;
        }
    }
    for (key, item) in map.iter() {
        path.push(key.to_string());
        keyed_by_name(item, path, names, report);
        path.pop();
    }
}

/// Plan and agreement names in a pack test file (`tests/*.json`, text `text`): every
/// `"plan"`, `"product"` or `"agreement"` key with a string value, in registries and in
/// expected decisions alike.
pub(crate) fn lint_test_file(file: &str, text: &str, names: &Names<'_>) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let tokens = json_strings(text);
    for pair in tokens.windows(2) {
        let [(key, _, key_is_key), (value, offset, value_is_key)] = pair else { continue };
        if !key_is_key || *value_is_key {
            continue;
        }
        let (known, what) = match key.as_str() {
            "plan" | "product" => (&names.plans, "plan"),
            "agreement" => (&names.agreements, "agreement"),
            _ => continue,
        };
        if !known.contains(value) {
            let suggestion = closest(value, known).map_or_else(
                || format!(" (the pack's {what}s: {})", known_list(known)),
                |near| format!(" (did you mean {near:?}?)"),
            );
            problems.push(Diagnostic::at(
                file,
                line_and_column(text, *offset),
                format!("unknown {what} {value:?}{suggestion}"),
            ));
        }
    }
    problems
}

/// The strings of a JSON text in order, each with its offset and whether it is a key (followed
/// by `:`). Anything else (numbers, `null`, braces) is skipped.
fn json_strings(text: &str) -> Vec<(String, usize, bool)> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(relative) = text[at..].find('"') {
        let start = at + relative;
        let (end, value, _) = quoted(text, start, b'"');
        let is_key = text[end..].trim_start().starts_with(':');
        found.push((value, start, is_key));
        at = end;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<Token> {
        tokens(text).into_iter().map(|located| located.token).collect()
    }

    #[test]
    fn tokens_skip_comments_characters_and_interpolated_strings() {
        let text =
            "let a = 1_000; // rate_bps: 99999\n/* x /* nested */ y */ `${a} %` `plain` 'c' \"q\\\"\" #{ b: -2 }";
        assert_eq!(
            words(text),
            [
                Token::Word("let".into()),
                Token::Word("a".into()),
                Token::Symbol("="),
                Token::Integer(1000),
                Token::Symbol(";"),
                Token::Text("plain".into()),
                Token::Text("q\"".into()),
                Token::Symbol("#{"),
                Token::Word("b".into()),
                Token::Symbol(":"),
                Token::Symbol("-"),
                Token::Integer(2),
                Token::Symbol("}"),
            ]
        );
    }

    #[test]
    fn finds_names_compared_with_plans_and_agreements() {
        let text = "if plan == \"A\" || \"B\" != compulsory.plan || provider.agreement == \"c\" {}\n\
                    if plan in [\"D\", \"E\"] {}\nswitch plan { \"F\" | \"G\" => 1, _ => 2 }\n\
                    if plan == \"H\".to_upper() {}";
        let found: Vec<(String, NameKind)> =
            compared_names(&tokens(text)).into_iter().map(|(name, _, kind)| (name, kind)).collect();
        let plan = |name: &str| (name.to_owned(), NameKind::Plan);
        assert_eq!(
            found,
            [plan("A"), plan("B"), ("c".to_owned(), NameKind::Agreement), plan("D"), plan("E"), plan("F"), plan("G"),]
        );
    }
}
