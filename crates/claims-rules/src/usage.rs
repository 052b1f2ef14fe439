//! Which arguments a script function reads at all.
//!
//! Building an argument map and handing Rhai its own copy costs as much as running a short
//! script, and most functions read only some of their arguments (an agreement's `fn tariff`
//! rarely reads `claim`). A parameter the function's body never names cannot be observed: its
//! value is passed as `()` instead. The answer is decided once, when the pack is loaded, and only
//! "never named" is trusted; whenever anything is unclear the argument counts as read.
//!
//! "Never named" is proven one of two ways:
//! - the parameter's name occurs exactly once in the whole script text, in the function's own
//!   header (no comment, string, other function or closure mentions it), or
//! - the script still compiles, under strict variables, with that one parameter renamed in the
//!   header: a variable that is not defined is a compile error there, so the body cannot use the
//!   old name (and no function has that name, which a bare name could otherwise point to).

use rhai::Engine;

/// For each parameter of `fn function` with `count` parameters in script `text` (compiled by
/// `engine` as `ast`), whether its body may read it. All `true` unless proven otherwise.
pub(crate) fn parameters_read(engine: &Engine, ast: &rhai::AST, text: &str, function: &str, count: usize) -> Vec<bool> {
    let mut read = vec![true; count];
    let Some(header) = header(ast, text, function, count) else {
        return read;
    };
    for (index, (name, place)) in header.iter().enumerate() {
        read[index] =
            !(occurrences(text, name) == 1 || compiles_renamed(engine, text, function, count, index, name, place));
    }
    read
}

/// The parameters of the one definition of `fn function` with `count` parameters, each with
/// its byte range in `text`; `None` unless there is exactly one such header, written plainly
/// (names, commas and spaces only), with the parameters Rhai compiled.
fn header(ast: &rhai::AST, text: &str, function: &str, count: usize) -> Option<Vec<(String, std::ops::Range<usize>)>> {
    let mut compiled = ast.iter_functions().filter(|f| f.name == function);
    let definition = compiled.next()?;
    if compiled.next().is_some() || definition.params.len() != count {
        return None;
    }
    let mut headers = headers(text, function);
    let open = headers.next()?;
    if headers.next().is_some() {
        return None;
    }
    let close = open + text[open..].find(')')?;
    let list = &text[open + 1..close];
    if !list.bytes().all(|byte| is_word_byte(byte) || byte == b',' || byte.is_ascii_whitespace()) {
        return None;
    }
    let mut params = Vec::new();
    let mut start = open + 1;
    for part in list.split(',') {
        let name = part.trim();
        let offset = start + part.find(name)?;
        params.push((name.to_owned(), offset..offset + name.len()));
        start += part.len() + 1;
    }
    let same = params.len() == count && params.iter().zip(&definition.params).all(|((name, _), known)| name == known);
    same.then_some(params)
}

/// Byte offsets of the `(` of every `fn <function> (` in `text`, comments and strings included.
fn headers<'a>(text: &'a str, function: &'a str) -> impl Iterator<Item = usize> + 'a {
    words(text, "fn").filter_map(move |at| {
        let after_fn = at + 2;
        let rest = &text[after_fn..];
        let name_at = after_fn + (rest.len() - rest.trim_start().len());
        let after_name = name_at + function.len();
        if !text[name_at..].starts_with(function) || text.as_bytes().get(after_name).is_some_and(|b| is_word_byte(*b)) {
            return None;
        }
        let rest = &text[after_name..];
        let open = after_name + (rest.len() - rest.trim_start().len());
        text[open..].starts_with('(').then_some(open)
    })
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// Offsets of `word` in `text` as a whole word, anywhere (comments and strings included).
fn words<'a>(text: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    let bytes = text.as_bytes();
    text.match_indices(word).map(|(at, _)| at).filter(move |at| {
        let end = at + word.len();
        (*at == 0 || !is_word_byte(bytes[at - 1])) && (end >= bytes.len() || !is_word_byte(bytes[end]))
    })
}

fn occurrences(text: &str, word: &str) -> usize {
    words(text, word).count()
}

/// Whether the script compiles with parameter `index` (`name`, at `place`) of `fn function`
/// renamed to a name found nowhere else, and Rhai sees that parameter under the new name.
fn compiles_renamed(
    engine: &Engine,
    text: &str,
    function: &str,
    count: usize,
    index: usize,
    name: &str,
    place: &std::ops::Range<usize>,
) -> bool {
    if !engine.strict_variables() {
        return false;
    }
    let renamed = format!("unread_parameter_{index}_{name}");
    if text.contains(&renamed) {
        return false;
    }
    let probe = format!("{}{renamed}{}", &text[..place.start], &text[place.end..]);
    let Ok(ast) = engine.compile(&probe) else {
        return false;
    };
    let renamed_here = ast
        .iter_functions()
        .any(|f| f.name == function && f.params.len() == count && f.params.get(index) == Some(&renamed.as_str()));
    renamed_here && !ast.iter_functions().any(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sandboxed_engine;

    fn read(source: &str) -> Vec<bool> {
        let engine = sandboxed_engine();
        let ast = engine.compile(source).expect("the script compiles");
        parameters_read(&engine, &ast, source, "tariff", 4)
    }

    #[test]
    fn a_parameter_named_only_in_the_header_is_not_read() {
        assert_eq!(read("fn tariff(line, member, provider, claim) { line.act }"), [true, false, false, false]);
        assert_eq!(
            read("fn tariff(\n    line,\n    member, provider,claim\n) { line.act + provider.x }"),
            [true, false, true, false]
        );
    }

    #[test]
    fn a_parameter_named_elsewhere_is_read_unless_the_script_compiles_without_it() {
        // Named in a comment, a string and another function's own parameter: still not read.
        let source = "// the claim\nfn helper(claim) { claim }\nfn tariff(line, member, provider, claim) { \
                      let text = \"claim\"; helper(line) }";
        assert_eq!(read(source), [true, false, false, false]);
        // Read in the body, in an interpolated string, through a closure, or passed on.
        for body in ["claim.claim_id", "`${claim}`", "{ let f = || claim; f.call() }", "helper(claim)", "claim"] {
            let source = format!("fn helper(x) {{ x }}\nfn tariff(line, member, provider, claim) {{ {body} }}");
            assert!(read(&source)[3], "{body}");
        }
        // A closure inside a closure.
        let source = "fn tariff(line, member, provider, claim) { let f = || { let g = || claim; g.call() }; f.call() }";
        assert!(read(source)[3]);
    }

    #[test]
    fn anything_unclear_counts_as_read() {
        // A function named like the parameter: a bare name could be a pointer to it.
        let source = "fn claim() { 1 }\nfn tariff(line, member, provider, claim) { line }";
        assert!(read(source)[3]);
        // A comment in the header.
        let source = "fn tariff(line, member /* m */, provider, claim) { line }";
        assert_eq!(read(source), [true; 4]);
        // Two headers (one commented out).
        let source =
            "// fn tariff(line, member, provider, claim) {}\nfn tariff(line, member, provider, claim) { line }";
        assert_eq!(read(source), [true; 4]);
    }
}
