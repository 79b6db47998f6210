//! An approval's `form`: journaled as JSON Schema, read back as a type, drawn as HTML fields, and filled from a posted form.

use crate::ir::{Record, Ty};
use serde_json::{Map, Value as Json};
use std::sync::Arc;

/// How deep a schema may nest before it is read as `json` (a journal is untrusted).
const MAX_DEPTH: usize = 16;

/// The type a journaled schema (written by `llm::schema::schema`) stands for;
/// anything it does not recognise is `json`, checked at run time only.
pub fn ty_of(schema: &Json) -> Ty {
    let defs = schema
        .get("$defs")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    ty_at(schema, &defs, 0)
}

fn ty_at(schema: &Json, defs: &Map<String, Json>, depth: usize) -> Ty {
    if depth > MAX_DEPTH {
        return Ty::Json;
    }
    if let Some(r) = schema.get("$ref").and_then(Json::as_str) {
        let name = r.trim_start_matches("#/$defs/");
        return match defs.get(name) {
            Some(def) => named(ty_at(def, defs, depth + 1), name),
            None => Ty::Json,
        };
    }
    if let Some([inner, null]) = schema
        .get("anyOf")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        && null.get("type").and_then(Json::as_str) == Some("null")
    {
        return Ty::Optional(Box::new(ty_at(inner, defs, depth + 1)));
    }
    if let Some(options) = schema.get("enum").and_then(Json::as_array) {
        let words: Vec<String> = options
            .iter()
            .filter_map(|o| o.as_str().map(str::to_string))
            .collect();
        return Ty::Union(words.into());
    }
    let description = schema.get("description").and_then(Json::as_str);
    match schema.get("type").and_then(Json::as_str) {
        Some("string") => Ty::String,
        Some("integer") if description == Some("milliseconds") => Ty::Duration,
        Some("integer") if description == Some("bytes") => Ty::Size,
        Some("integer") => Ty::Int,
        Some("number") => Ty::Float,
        Some("boolean") => Ty::Bool,
        Some("array") => match schema.get("items") {
            Some(items) => Ty::List(Box::new(ty_at(items, defs, depth + 1))),
            None => Ty::List(Box::new(Ty::Json)),
        },
        Some("object") => {
            let props = schema.get("properties").and_then(Json::as_object);
            // `required` lists every field in the flow's order; the map is sorted.
            let mut names: Vec<&str> = schema
                .get("required")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .filter_map(Json::as_str)
                .filter(|n| props.is_some_and(|p| p.contains_key(*n)))
                .collect();
            for k in props.into_iter().flat_map(|p| p.keys()) {
                if !names.contains(&k.as_str()) {
                    names.push(k);
                }
            }
            let fields = names
                .into_iter()
                .filter_map(|k| Some((k.to_string(), ty_at(props?.get(k)?, defs, depth + 1))))
                .collect();
            Ty::Record(Arc::new(Record { name: None, fields }))
        }
        _ => Ty::Json,
    }
}

fn named(ty: Ty, name: &str) -> Ty {
    match ty {
        Ty::Record(rec) => Ty::Record(Arc::new(Record {
            name: Some(name.to_string()),
            fields: rec.fields.clone(),
        })),
        other => other,
    }
}

/// How one answer is asked for on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A line of text.
    Text,
    /// A whole number (ints, durations in ms, sizes in bytes).
    Integer,
    /// A number.
    Number,
    /// A checkbox.
    Check,
    /// One of these words.
    Choice(Vec<String>),
    /// Anything else, as JSON text.
    JsonText,
}

/// One field of a form.
#[derive(Debug, Clone)]
pub struct Field {
    /// Its name (`STEP.form.NAME`).
    pub name: String,
    /// How it is asked for.
    pub input: Input,
    /// Whether it may be left empty (`T?`).
    pub optional: bool,
    /// Its type, as the flow writes it.
    pub ty: String,
}

/// The fields of a form type (a record); empty for anything else.
pub fn fields(ty: &Ty) -> Vec<Field> {
    let Ty::Record(rec) = ty else {
        return Vec::new();
    };
    rec.fields
        .iter()
        .map(|(name, fty)| {
            let inner = fty.strip_optional();
            let input = match inner {
                Ty::String | Ty::Path => Input::Text,
                Ty::Int | Ty::Duration | Ty::Size => Input::Integer,
                Ty::Float => Input::Number,
                Ty::Bool => Input::Check,
                Ty::Union(words) => Input::Choice(words.to_vec()),
                _ => Input::JsonText,
            };
            Field {
                name: name.clone(),
                input,
                optional: matches!(fty, Ty::Optional(_)),
                ty: fty.to_string(),
            }
        })
        .collect()
}

/// The answers of a posted HTML form (`form.NAME` fields), typed by `ty`:
/// an empty optional field is `null`, an unchecked box `false`.
pub fn from_posted(ty: &Ty, posted: &[(String, String)]) -> Result<Json, String> {
    let get = |name: &str| {
        posted
            .iter()
            .find(|(k, _)| k.strip_prefix("form.") == Some(name))
            .map(|(_, v)| v.as_str())
    };
    let mut out = Map::new();
    for f in fields(ty) {
        let raw = get(&f.name).unwrap_or("").trim();
        let value = if f.input == Input::Check {
            Json::Bool(matches!(raw, "on" | "true" | "1"))
        } else if raw.is_empty() && f.optional {
            Json::Null
        } else {
            typed(&f, raw)?
        };
        out.insert(f.name, value);
    }
    Ok(Json::Object(out))
}

fn typed(f: &Field, raw: &str) -> Result<Json, String> {
    let bad = |what: &str| format!("`{}` should be {what}, found `{raw}`", f.name);
    Ok(match &f.input {
        Input::Integer => Json::from(raw.parse::<i64>().map_err(|_| bad("a whole number"))?),
        Input::Number => raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Json::Number)
            .ok_or_else(|| bad("a number"))?,
        Input::JsonText => serde_json::from_str(raw).map_err(|_| bad("JSON"))?,
        Input::Text | Input::Choice(_) | Input::Check => Json::String(raw.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::schema::schema;

    #[test]
    fn a_schema_reads_back_as_its_type() {
        let inner = Ty::record(vec![("n", Ty::Int)]);
        let ty = Ty::record(vec![
            ("reason", Ty::String),
            ("window", Ty::Optional(Box::new(Ty::String))),
            ("wait", Ty::Duration),
            (
                "env",
                Ty::Union(vec!["prod".to_string(), "staging".to_string()].into()),
            ),
            ("ok", Ty::Bool),
            ("hosts", Ty::String.list_of()),
            ("more", inner),
        ]);
        assert_eq!(ty_of(&schema(&ty)).to_string(), ty.to_string());
    }

    #[test]
    fn posted_fields_are_typed() {
        let ty = Ty::record(vec![
            ("reason", Ty::String),
            ("window", Ty::Optional(Box::new(Ty::String))),
            ("count", Ty::Int),
            ("ok", Ty::Bool),
        ]);
        let posted = |pairs: &[(&str, &str)]| {
            let p: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            from_posted(&ty, &p)
        };
        let v = posted(&[
            ("form.reason", "fix"),
            ("form.count", "3"),
            ("form.ok", "on"),
        ]);
        assert_eq!(
            v,
            Ok(serde_json::json!({ "reason": "fix", "window": null, "count": 3, "ok": true }))
        );
        assert!(posted(&[("form.reason", "x"), ("form.count", "three")]).is_err());
    }
}
