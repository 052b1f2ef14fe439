//! Reading JSON fields with errors that name the field: `lines[2].charged: expected an integer
//! number of minor units, got "30.00"`.

use serde_json::{Map, Value};

use crate::attributes::{AttributeValue, Attributes};
use crate::date::Date;

/// A field-level problem: the path to the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub problem: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.problem)
    }
}

pub type FieldResult<T> = Result<T, FieldError>;

pub fn problem<T>(path: &str, text: impl Into<String>) -> FieldResult<T> {
    Err(FieldError { path: path.to_owned(), problem: text.into() })
}

/// A short, safe rendering of a JSON value for error messages.
pub fn describe(value: &Value) -> String {
    let text = match value {
        Value::Null => "null".to_owned(),
        Value::Bool(_) => "a boolean".to_owned(),
        Value::Number(number) => format!("the number {number}"),
        Value::String(text) => format!("the string {:?}", text.chars().take(40).collect::<String>()),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    };
    text.chars().take(80).collect()
}

pub fn field<'a>(object: &'a Map<String, Value>, path: &str, name: &str) -> FieldResult<&'a Value> {
    match object.get(name) {
        Some(Value::Null) | None => problem(&join(path, name), "is missing"),
        Some(value) => Ok(value),
    }
}

pub fn optional<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).filter(|value| !value.is_null())
}

pub fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") }
}

pub fn string<'a>(object: &'a Map<String, Value>, path: &str, name: &str) -> FieldResult<&'a str> {
    match field(object, path, name)? {
        Value::String(text) => Ok(text),
        other => problem(&join(path, name), format!("expected a string, got {}", describe(other))),
    }
}

pub fn date(object: &Map<String, Value>, path: &str, name: &str) -> FieldResult<Date> {
    let text = string(object, path, name)?;
    Date::parse(text).or_else(|error| problem(&join(path, name), error.to_string()))
}

pub fn optional_date(object: &Map<String, Value>, path: &str, name: &str) -> FieldResult<Option<Date>> {
    match optional(object, name) {
        None => Ok(None),
        Some(Value::String(text)) => {
            Date::parse(text).map(Some).or_else(|error| problem(&join(path, name), error.to_string()))
        }
        Some(other) => problem(&join(path, name), format!("expected a date string, got {}", describe(other))),
    }
}

/// An integer within `range`; rejects floats, strings and out-of-range values by name.
pub fn integer(
    object: &Map<String, Value>,
    path: &str,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
) -> FieldResult<i64> {
    let full = join(path, name);
    match field(object, path, name)? {
        Value::Number(number) => match number.as_i64() {
            Some(value) if range.contains(&value) => Ok(value),
            Some(value) => problem(&full, format!("{value} is outside {}..={}", range.start(), range.end())),
            None if number.is_u64() => problem(&full, format!("{number} is too large")),
            None => problem(&full, format!("expected a whole number, got {number}")),
        },
        other => problem(&full, format!("expected a whole number, got {}", describe(other))),
    }
}

pub fn object<'a>(value: &'a Value, path: &str) -> FieldResult<&'a Map<String, Value>> {
    match value {
        Value::Object(map) => Ok(map),
        other => problem(path, format!("expected an object, got {}", describe(other))),
    }
}

pub fn array<'a>(object: &'a Map<String, Value>, path: &str, name: &str) -> FieldResult<&'a Vec<Value>> {
    match field(object, path, name)? {
        Value::Array(items) => Ok(items),
        other => problem(&join(path, name), format!("expected a list, got {}", describe(other))),
    }
}

/// Scalar attributes (booleans, integers, strings); absent means empty.
pub fn attributes(object: &Map<String, Value>, path: &str, name: &str) -> FieldResult<Attributes> {
    let full = join(path, name);
    let Some(value) = optional(object, name) else {
        return Ok(Attributes::new());
    };
    let map = object_at(value, &full)?;
    if map.len() > 64 {
        return problem(&full, format!("has {} attributes, at most 64 are allowed", map.len()));
    }
    map.iter()
        .map(|(key, value)| {
            let attribute_path = format!("{full}.{key}");
            if key.is_empty() || key.len() > 64 || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return problem(&attribute_path, "attribute names use ASCII letters, digits and _ (at most 64)");
            }
            let attribute = match value {
                Value::Bool(flag) => AttributeValue::Bool(*flag),
                Value::Number(number) => match number.as_i64() {
                    Some(integer) => AttributeValue::Integer(integer),
                    None => return problem(&attribute_path, format!("expected a whole number, got {number}")),
                },
                Value::String(text) if text.chars().count() <= 256 => AttributeValue::Text(text.clone()),
                Value::String(_) => return problem(&attribute_path, "text longer than 256 characters"),
                other => {
                    return problem(
                        &attribute_path,
                        format!("expected a boolean, number or string, got {}", describe(other)),
                    );
                }
            };
            Ok((key.clone(), attribute))
        })
        .collect()
}

fn object_at<'a>(value: &'a Value, path: &str) -> FieldResult<&'a Map<String, Value>> {
    object(value, path)
}

pub fn attributes_to_json(attributes: &Attributes) -> Value {
    Value::Object(
        attributes
            .iter()
            .map(|(key, value)| {
                let json = match value {
                    AttributeValue::Bool(flag) => Value::Bool(*flag),
                    AttributeValue::Integer(integer) => Value::from(*integer),
                    AttributeValue::Text(text) => Value::String(text.clone()),
                };
                (key.clone(), json)
            })
            .collect(),
    )
}
