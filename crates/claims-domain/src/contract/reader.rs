//! Reading back the JSON forms this crate and the audit log write (decision/v1, audit/v1
//! parts), with errors that name the exact field: `decision.lines[0].charged: expected a whole
//! number`. Stored and recorded forms are read exactly: a field of the wrong type is an error,
//! never a default.

use serde_json::{Map, Value};

use super::fields::FieldError;

/// A JSON value with the path it was found at.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> Reader<'a> {
    /// The value at the top of a form, named `path` in errors (`decision`, `moves`…).
    pub fn root(value: &'a Value, path: &str) -> Reader<'a> {
        Reader { value, path: path.to_owned() }
    }

    pub fn value(&self) -> &'a Value {
        self.value
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// An error about this value.
    pub fn problem(&self, text: impl Into<String>) -> FieldError {
        FieldError { path: self.path.clone(), problem: text.into() }
    }

    fn unexpected(&self, name: &str, found: &str) -> FieldError {
        FieldError { path: format!("{}.{name}", self.path), problem: format!("unexpected {found:?}") }
    }

    pub fn object(&self) -> Result<&'a Map<String, Value>, FieldError> {
        self.value.as_object().ok_or_else(|| self.problem("expected an object"))
    }

    /// A field that must be present (it may be `null` only if the caller then accepts it).
    pub fn field(&self, name: &str) -> Result<Reader<'a>, FieldError> {
        let value = self.object()?.get(name).ok_or_else(|| self.problem(format!("{name} is missing")))?;
        Ok(Reader { value, path: format!("{}.{name}", self.path) })
    }

    /// A field that may be missing or null.
    pub fn optional(&self, name: &str) -> Option<Reader<'a>> {
        match self.value.get(name) {
            None | Some(Value::Null) => None,
            Some(value) => Some(Reader { value, path: format!("{}.{name}", self.path) }),
        }
    }

    pub fn items(&self) -> Result<Vec<Reader<'a>>, FieldError> {
        let items = self.value.as_array().ok_or_else(|| self.problem("expected a list"))?;
        Ok(items
            .iter()
            .enumerate()
            .map(|(index, value)| Reader { value, path: format!("{}[{index}]", self.path) })
            .collect())
    }

    pub fn as_text(&self) -> Result<&'a str, FieldError> {
        self.value.as_str().ok_or_else(|| self.problem("expected a string"))
    }

    pub fn as_integer(&self) -> Result<i64, FieldError> {
        self.value.as_i64().ok_or_else(|| self.problem("expected a whole number"))
    }

    pub fn text(&self, name: &str) -> Result<&'a str, FieldError> {
        self.field(name)?.as_text()
    }

    pub fn integer(&self, name: &str) -> Result<i64, FieldError> {
        self.field(name)?.as_integer()
    }

    pub fn boolean(&self, name: &str) -> Result<bool, FieldError> {
        let field = self.field(name)?;
        field.value.as_bool().ok_or_else(|| field.problem("expected true or false"))
    }

    /// A non-negative count that fits `u32` (line numbers, script positions).
    pub fn small(&self, name: &str) -> Result<u32, FieldError> {
        let field = self.field(name)?;
        field
            .value
            .as_u64()
            .and_then(|number| u32::try_from(number).ok())
            .ok_or_else(|| field.problem("expected a count"))
    }

    /// A text field parsed with `parse` (ids, dates…), its error named by the field.
    pub fn parsed<T, E: std::fmt::Display>(
        &self,
        name: &str,
        parse: fn(&str) -> Result<T, E>,
    ) -> Result<T, FieldError> {
        let field = self.field(name)?;
        parse(field.as_text()?).map_err(|error| field.problem(error.to_string()))
    }

    /// A text field that must be one of a closed set of names.
    pub fn named<T>(&self, name: &str, parse: fn(&str) -> Option<T>) -> Result<T, FieldError> {
        let text = self.text(name)?;
        parse(text).ok_or_else(|| self.unexpected(name, text))
    }
}

impl std::error::Error for FieldError {}
