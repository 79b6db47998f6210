//! A skill's inputs from the command line (`-i key=value`, `--inputs FILE`), typed by its parameters.

use super::eval::{Evaluator, validate};
use crate::ir::{Skill, Ty};
use serde_json::{Map, Value as Json};

/// Parses `-i` pairs and an inputs file into typed values; every problem is reported.
pub fn collect(
    skill: &Skill,
    pairs: &[String],
    file: Option<(&str, &str)>,
) -> Result<Map<String, Json>, Vec<String>> {
    let mut errors = Vec::new();
    let mut given: Map<String, Json> = Map::new();
    if let Some((path, text)) = file {
        let parsed: Result<Json, String> = if path.ends_with(".json") {
            serde_json::from_str(text).map_err(|e| e.to_string())
        } else {
            serde_saphyr::from_str(text).map_err(|e| e.to_string())
        };
        match parsed {
            Ok(Json::Object(map)) => given.extend(map),
            Ok(Json::Null) => {}
            Ok(_) => errors.push(format!("`{path}` must hold a map of input names to values")),
            Err(e) => errors.push(format!("cannot read inputs from `{path}`: {e}")),
        }
    }
    for pair in pairs {
        let Some((name, raw)) = pair.split_once('=') else {
            errors.push(format!("`-i {pair}` should be `-i NAME=VALUE`"));
            continue;
        };
        let name = name.trim();
        let Some(param) = skill.params.iter().find(|p| p.name == name) else {
            continue_unknown(skill, name, &mut errors);
            continue;
        };
        match parse_text(raw, &param.ty) {
            Ok(v) => {
                given.insert(name.to_string(), v);
            }
            Err(e) => errors.push(format!("input `{name}`: {e}")),
        }
    }
    let out = typed(skill, &given, &mut errors);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Inputs already parsed as JSON (a trigger's evaluated `run:` arguments):
/// each is validated against its parameter's type, and defaults fill the rest.
pub fn from_values(
    skill: &Skill,
    given: &Map<String, Json>,
) -> Result<Map<String, Json>, Vec<String>> {
    let mut errors = Vec::new();
    let out = typed(skill, given, &mut errors);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Validates `given` against the skill's parameters and fills in defaults.
fn typed(skill: &Skill, given: &Map<String, Json>, errors: &mut Vec<String>) -> Map<String, Json> {
    let mut out = Map::new();
    for (name, value) in given {
        let Some(param) = skill.params.iter().find(|p| &p.name == name) else {
            if !errors.iter().any(|e| e.contains(&format!("`{name}`"))) {
                continue_unknown(skill, name, errors);
            }
            continue;
        };
        let value = coerce(value.clone(), &param.ty);
        match validate(&value, &param.ty) {
            Ok(()) => {
                out.insert(name.clone(), value);
            }
            Err(e) => errors.push(format!(
                "input `{name}` should be {}: {}",
                param.ty,
                e.replacen('$', "value", 1)
            )),
        }
    }
    let ev = Evaluator::new();
    for param in &skill.params {
        if out.contains_key(&param.name) || given.contains_key(&param.name) {
            continue;
        }
        match &param.default {
            Some(d) => {
                let bound = out.clone();
                let lookup = |n: &str| bound.get(n).cloned();
                match ev.value(skill, d, &lookup) {
                    Ok(v) => {
                        out.insert(param.name.clone(), v);
                    }
                    Err(e) => errors.push(format!("the default of `{}` failed: {e}", param.name)),
                }
            }
            None if matches!(param.ty, Ty::Optional(_)) => {
                out.insert(param.name.clone(), Json::Null);
            }
            None => errors.push(format!(
                "missing input `{}` ({}): pass `-i {}=VALUE`",
                param.name, param.ty, param.name
            )),
        }
    }
    out
}

fn continue_unknown(skill: &Skill, name: &str, errors: &mut Vec<String>) {
    let names: Vec<&str> = skill.params.iter().map(|p| p.name.as_str()).collect();
    let hint = match crate::diag::did_you_mean(name, names.iter().copied()) {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None if names.is_empty() => " (it takes no inputs)".into(),
        None => format!(" (its inputs: {})", names.join(", ")),
    };
    errors.push(format!(
        "skill `{}` has no input `{name}`{hint}",
        skill.name
    ));
}

/// Reads a command-line value as the parameter's type.
fn parse_text(raw: &str, ty: &Ty) -> Result<Json, String> {
    match ty.strip_optional() {
        Ty::String | Ty::Path | Ty::Union(_) => Ok(Json::String(raw.to_string())),
        Ty::Int => raw
            .trim()
            .parse::<i64>()
            .map(Json::from)
            .map_err(|_| format!("{raw:?} is not an int")),
        Ty::Float => raw
            .trim()
            .parse::<f64>()
            .map(Json::from)
            .map_err(|_| format!("{raw:?} is not a float")),
        Ty::Bool => match raw.trim() {
            "true" => Ok(Json::Bool(true)),
            "false" => Ok(Json::Bool(false)),
            _ => Err(format!("{raw:?} is not a bool (true or false)")),
        },
        Ty::Duration => parse_unit(
            raw,
            &[
                ("ms", 1),
                ("s", 1000),
                ("m", 60_000),
                ("h", 3_600_000),
                ("d", 86_400_000),
            ],
        )
        .ok_or_else(|| format!("{raw:?} is not a duration such as 250ms, 10s, 5m, 2h or 1d")),
        Ty::Size => parse_unit(
            raw,
            &[
                ("KiB", 1 << 10),
                ("MiB", 1 << 20),
                ("GiB", 1 << 30),
                ("KB", 1000),
                ("MB", 1_000_000),
                ("GB", 1_000_000_000),
                ("B", 1),
            ],
        )
        .ok_or_else(|| format!("{raw:?} is not a size such as 64KiB or 2GiB")),
        _ => serde_json::from_str(raw).map_err(|e| format!("{raw:?} is not JSON: {e}")),
    }
}

fn parse_unit(raw: &str, units: &[(&str, i64)]) -> Option<Json> {
    let raw = raw.trim();
    if let Ok(n) = raw.parse::<i64>() {
        return Some(Json::from(n));
    }
    for (suffix, factor) in units {
        if let Some(num) = raw.strip_suffix(suffix) {
            let n: i64 = num.replace('_', "").parse().ok()?;
            return n.checked_mul(*factor).map(Json::from);
        }
    }
    None
}

/// Values from a YAML or JSON file: durations and sizes may be written as text.
fn coerce(value: Json, ty: &Ty) -> Json {
    match (&value, ty.strip_optional()) {
        (Json::String(s), Ty::Duration | Ty::Size | Ty::Int | Ty::Float | Ty::Bool) => {
            parse_text(s, ty).unwrap_or(value)
        }
        _ => value,
    }
}
