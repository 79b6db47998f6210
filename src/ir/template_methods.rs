//! The built-in methods of the expression language, callable in templates too
//! (`{{ plan.stdout.trim() }}`), so both places mean the same thing.

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind, State};

fn bad(msg: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

fn arg<'a>(args: &'a [Value], i: usize, method: &str) -> Result<&'a str, Error> {
    args.get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{method}() takes a string argument")))
}

/// Handles `value.method(args)` for flowc's built-in methods.
pub fn call(_: &mut State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    if let Some(want) = method.strip_prefix("as_") {
        return as_kind(value, want);
    }
    if let Some(s) = value.as_str() {
        return Ok(match method {
            "len" => Value::from(s.chars().count()),
            "is_empty" => Value::from(s.is_empty()),
            "trim" => Value::from(s.trim()),
            "lower" => Value::from(s.to_lowercase()),
            "upper" => Value::from(s.to_uppercase()),
            "lines" => Value::from(s.lines().map(Value::from).collect::<Vec<_>>()),
            "contains" => Value::from(s.contains(arg(args, 0, method)?)),
            "starts_with" => Value::from(s.starts_with(arg(args, 0, method)?)),
            "ends_with" => Value::from(s.ends_with(arg(args, 0, method)?)),
            "matches" => {
                let re = regex::Regex::new(arg(args, 0, method)?)
                    .map_err(|e| bad(format!("matches(): bad regular expression: {e}")))?;
                Value::from(re.is_match(s))
            }
            "parse_int" => Value::from(
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| bad(format!("parse_int(): {s:?} is not an integer")))?,
            ),
            "parse_json" => {
                let v: serde_json::Value =
                    serde_json::from_str(s).map_err(|e| bad(format!("parse_json(): {e}")))?;
                json_to_value(&v)
            }
            _ => return Err(Error::from(ErrorKind::UnknownMethod)),
        });
    }
    match (value.kind(), method) {
        (ValueKind::Seq | ValueKind::Map, "len") => Ok(Value::from(value.len().unwrap_or(0))),
        (ValueKind::Seq, "is_empty") => Ok(Value::from(value.len() == Some(0))),
        (ValueKind::Seq, "contains") => {
            let needle = args.first().cloned().unwrap_or_default();
            Ok(Value::from(value.try_iter()?.any(|v| v == needle)))
        }
        (ValueKind::Map, "keys") => Ok(Value::from(value.try_iter()?.collect::<Vec<_>>())),
        (ValueKind::Map, "contains_key") => {
            let key = arg(args, 0, method)?;
            Ok(Value::from(
                value.get_attr(key).is_ok_and(|v| !v.is_undefined()),
            ))
        }
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

/// `as_string()`, `as_int()`, …: the value itself when it is of that kind.
fn as_kind(value: &Value, want: &str) -> Result<Value, Error> {
    let (ok, word) = match want {
        "string" => (value.kind() == ValueKind::String, "a string"),
        "int" => (value.is_integer(), "an int"),
        "float" => (value.kind() == ValueKind::Number, "a number"),
        "bool" => (value.kind() == ValueKind::Bool, "a bool"),
        "list" => (value.kind() == ValueKind::Seq, "a list"),
        _ => return Err(Error::from(ErrorKind::UnknownMethod)),
    };
    if ok {
        Ok(value.clone())
    } else {
        Err(bad(format!(
            "as_{want}(): the value is {}, not {word}",
            kind_word(value)
        )))
    }
}

/// JSON → template value.
pub fn json_to_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::from(i),
            None => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => Value::from(items.iter().map(json_to_value).collect::<Vec<_>>()),
        J::Object(map) => Value::from(
            map.iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect::<std::collections::BTreeMap<String, Value>>(),
        ),
    }
}

/// The context variable through which the executor hands a template the
/// run's memory (a map of key → value) for `recall`.
pub const MEMORY_VAR: &str = "__flowc_memory";

/// `recall(key)` and `recall(key, default)` in a template: the run's memory
/// value of `key`; the default (else `none`) when nothing is remembered.
pub fn recall(state: &State, key: &str, default: Option<Value>) -> Result<Value, Error> {
    let found = state
        .lookup(MEMORY_VAR)
        .and_then(|m| m.get_attr(key).ok())
        .filter(|v| !v.is_undefined());
    match (found, default) {
        (Some(v), Some(d)) => {
            if same_kind(&v, &d) {
                Ok(v)
            } else {
                Err(bad(format!(
                    "recall(): memory `{key}` holds {}, not {} like its default",
                    kind_word(&v),
                    kind_word(&d)
                )))
            }
        }
        (Some(v), None) => Ok(v),
        (None, Some(d)) => Ok(d),
        (None, None) => Ok(Value::from(())),
    }
}

fn same_kind(v: &Value, d: &Value) -> bool {
    d.is_none() || v.kind() == d.kind()
}

fn kind_word(v: &Value) -> &'static str {
    match v.kind() {
        ValueKind::String => "a string",
        ValueKind::Number => "a number",
        ValueKind::Bool => "a bool",
        ValueKind::Seq => "a list",
        ValueKind::Map => "a record",
        ValueKind::None => "null",
        _ => "a value",
    }
}
