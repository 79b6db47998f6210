//! Flow types as JSON Schema, for `output:` of `llm` steps.
//!
//! The mapping (documented in docs/llm.md):
//! `string`/`path` → `"string"`, `int` → `"integer"`, `duration` and `size` →
//! `"integer"` (milliseconds, bytes), `float` → `"number"`, `bool` →
//! `"boolean"`, `json` → `{}` (anything), `[T]` → an array of T, `T?` →
//! `anyOf` T or `null`, `"a" | "b"` → a string `enum`, records → an object
//! with every field listed in `required` and no other properties (optional
//! fields must be present, possibly `null`: what strict structured-output
//! modes ask for), named types → `$defs` entries reached by `$ref`.

use crate::ir::Ty;
use serde_json::{Map, Value as Json, json};

/// The JSON Schema of `ty`, with named records under `$defs`.
pub fn schema(ty: &Ty) -> Json {
    let mut defs = Map::new();
    // The root is written out even when it is a named record: structured
    // output modes want an object at the top, not a `$ref`.
    let mut root = match ty {
        Ty::Record(rec) => {
            let anonymous = crate::ir::Record {
                name: None,
                fields: rec.fields.clone(),
            };
            to_schema(&Ty::Record(std::sync::Arc::new(anonymous)), &mut defs)
        }
        other => to_schema(other, &mut defs),
    };
    if !defs.is_empty()
        && let Json::Object(m) = &mut root
    {
        m.insert("$defs".into(), Json::Object(defs));
    }
    root
}

fn to_schema(ty: &Ty, defs: &mut Map<String, Json>) -> Json {
    match ty {
        Ty::String | Ty::Path => json!({ "type": "string" }),
        Ty::Int => json!({ "type": "integer" }),
        Ty::Duration => json!({ "type": "integer", "description": "milliseconds" }),
        Ty::Size => json!({ "type": "integer", "description": "bytes" }),
        Ty::Float => json!({ "type": "number" }),
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::Json | Ty::Error => json!({}),
        Ty::List(elem) => json!({ "type": "array", "items": to_schema(elem, defs) }),
        Ty::Optional(inner) => {
            json!({ "anyOf": [to_schema(inner, defs), { "type": "null" }] })
        }
        Ty::Union(options) => json!({ "type": "string", "enum": options.as_ref() }),
        Ty::Record(rec) => {
            if let Some(name) = &rec.name
                && defs.contains_key(name)
            {
                return json!({ "$ref": format!("#/$defs/{name}") });
            }
            if let Some(name) = &rec.name {
                // Reserve the name first: a record cannot contain itself, but
                // the same named type may appear in several fields.
                defs.insert(name.clone(), Json::Null);
            }
            let mut props = Map::new();
            for (field, fty) in &rec.fields {
                props.insert(field.clone(), to_schema(fty, defs));
            }
            let required: Vec<&str> = rec.fields.iter().map(|(n, _)| n.as_str()).collect();
            let object = json!({
                "type": "object",
                "properties": props,
                "required": required,
                "additionalProperties": false,
            });
            match &rec.name {
                Some(name) => {
                    defs.insert(name.clone(), object);
                    json!({ "$ref": format!("#/$defs/{name}") })
                }
                None => object,
            }
        }
    }
}

/// The reply text with a surrounding Markdown code fence removed, if any.
pub fn strip_fence(text: &str) -> &str {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let Some(body) = rest.strip_suffix("```") else {
        return t;
    };
    // Drop the info string (`json`) on the opening line.
    match body.find('\n') {
        Some(nl) => body[nl + 1..].trim(),
        None => body.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Record;
    use std::sync::Arc;

    #[test]
    fn named_records_go_to_defs_once() {
        let plan = Ty::Record(Arc::new(Record {
            name: Some("Plan".into()),
            fields: vec![
                ("summary".into(), Ty::String),
                ("files".into(), Ty::Path.list_of()),
                (
                    "risk".into(),
                    Ty::Union(Arc::from(vec!["low".to_string(), "high".to_string()])),
                ),
                ("note".into(), Ty::Optional(Box::new(Ty::String))),
            ],
        }));
        let ty = Ty::record(vec![("a", plan.clone()), ("b", plan.clone().list_of())]);
        let s = schema(&ty);
        assert_eq!(s["properties"]["a"], json!({ "$ref": "#/$defs/Plan" }));
        assert_eq!(s["properties"]["b"]["items"]["$ref"], "#/$defs/Plan");
        let def = &s["$defs"]["Plan"];
        assert_eq!(def["required"], json!(["summary", "files", "risk", "note"]));
        assert_eq!(def["additionalProperties"], false);
        assert_eq!(def["properties"]["risk"]["enum"], json!(["low", "high"]));
        assert_eq!(
            def["properties"]["note"]["anyOf"][1],
            json!({ "type": "null" })
        );
        assert_eq!(s["required"], json!(["a", "b"]));
        // A named record at the root is written out, not referenced.
        let s = schema(&plan);
        assert_eq!(s["type"], "object");
        assert!(s.get("$defs").is_none());
    }

    #[test]
    fn scalars() {
        assert_eq!(schema(&Ty::Int)["type"], "integer");
        assert_eq!(schema(&Ty::Float)["type"], "number");
        assert_eq!(schema(&Ty::Json), json!({}));
        assert_eq!(schema(&Ty::Size)["description"], "bytes");
    }

    #[test]
    fn fences_are_stripped() {
        assert_eq!(strip_fence("```json\n{\"a\": 1}\n```"), "{\"a\": 1}");
        assert_eq!(strip_fence("  {\"a\": 1} "), "{\"a\": 1}");
        assert_eq!(strip_fence("```\n[1]\n```"), "[1]");
        assert_eq!(strip_fence("```oops"), "```oops");
    }
}
