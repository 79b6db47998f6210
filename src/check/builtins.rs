//! Signatures of the built-in methods and functions of expressions.

use crate::ir::Ty;

/// A built-in's parameters and result.
pub struct Signature {
    /// Required parameter types.
    pub params: Vec<Ty>,
    /// Optional trailing parameter types.
    pub optional: Vec<Ty>,
    /// The result type.
    pub ret: Ty,
}

fn sig(params: Vec<Ty>, ret: Ty) -> Signature {
    Signature {
        params,
        optional: Vec::new(),
        ret,
    }
}

/// Methods of strings (and paths and string unions).
pub const STRING_METHODS: &[&str] = &[
    "len",
    "contains",
    "starts_with",
    "ends_with",
    "matches",
    "lines",
    "trim",
    "lower",
    "upper",
    "parse_json",
    "parse_int",
];
/// Methods of lists.
pub const LIST_METHODS: &[&str] = &["len", "is_empty", "contains"];
/// Methods of records and maps.
pub const MAP_METHODS: &[&str] = &["keys", "contains_key"];
/// Methods of `json` values that say what they hold (checked at run time).
pub const JSON_METHODS: &[&str] = &["as_string", "as_int", "as_float", "as_bool", "as_list"];
/// Functions callable by name.
pub const FUNCTIONS: &[&str] = &["env", "secret", "exists", "read", "json", "recall"];

/// The signature of `recv.name(...)`, if that method exists for the receiver's type.
pub fn method(recv: &Ty, name: &str) -> Option<Signature> {
    let recv = recv.strip_optional();
    if recv.is_stringy() {
        return string_method(name);
    }
    match recv {
        Ty::List(elem) => list_method(elem, name),
        Ty::Record(_) => map_method(name),
        Ty::Json | Ty::Error => string_method(name)
            .or_else(|| list_method(&Ty::Json, name))
            .or_else(|| map_method(name))
            .or_else(|| json_method(name)),
        _ => None,
    }
}

/// Method names available on a type, for suggestions.
pub fn method_names(recv: &Ty) -> Vec<&'static str> {
    let recv = recv.strip_optional();
    if recv.is_stringy() {
        return STRING_METHODS.to_vec();
    }
    match recv {
        Ty::List(_) => LIST_METHODS.to_vec(),
        Ty::Record(_) => MAP_METHODS.to_vec(),
        Ty::Json | Ty::Error => STRING_METHODS
            .iter()
            .chain(LIST_METHODS)
            .chain(MAP_METHODS)
            .chain(JSON_METHODS)
            .copied()
            .collect(),
        _ => Vec::new(),
    }
}

fn string_method(name: &str) -> Option<Signature> {
    Some(match name {
        "len" | "parse_int" => sig(vec![], Ty::Int),
        "contains" | "starts_with" | "ends_with" | "matches" => sig(vec![Ty::String], Ty::Bool),
        "lines" => sig(vec![], Ty::String.list_of()),
        "trim" | "lower" | "upper" => sig(vec![], Ty::String),
        "parse_json" => sig(vec![], Ty::Json),
        _ => return None,
    })
}

fn list_method(elem: &Ty, name: &str) -> Option<Signature> {
    Some(match name {
        "len" => sig(vec![], Ty::Int),
        "is_empty" => sig(vec![], Ty::Bool),
        "contains" => sig(vec![elem.clone()], Ty::Bool),
        _ => return None,
    })
}

fn json_method(name: &str) -> Option<Signature> {
    Some(match name {
        "as_string" => sig(vec![], Ty::String),
        "as_int" => sig(vec![], Ty::Int),
        "as_float" => sig(vec![], Ty::Float),
        "as_bool" => sig(vec![], Ty::Bool),
        "as_list" => sig(vec![], Ty::Json.list_of()),
        _ => return None,
    })
}

fn map_method(name: &str) -> Option<Signature> {
    Some(match name {
        "keys" => sig(vec![], Ty::String.list_of()),
        "contains_key" => sig(vec![Ty::String], Ty::Bool),
        _ => return None,
    })
}

/// The signature of the function `name(...)`.
pub fn function(name: &str) -> Option<Signature> {
    Some(match name {
        "env" => Signature {
            params: vec![Ty::String],
            optional: vec![Ty::String],
            ret: Ty::String,
        },
        "secret" | "read" => sig(
            vec![if name == "read" { Ty::Path } else { Ty::String }],
            Ty::String,
        ),
        "exists" => sig(vec![Ty::Path], Ty::Bool),
        "json" => sig(vec![Ty::Json], Ty::String),
        _ => return None,
    })
}
