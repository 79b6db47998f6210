//! Resolved types, as the checker and the executor see them.

use std::fmt;
use std::sync::Arc;

/// A resolved type.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    /// Text.
    String,
    /// 64-bit signed integer.
    Int,
    /// 64-bit float.
    Float,
    /// `true` or `false`.
    Bool,
    /// A file system path (text).
    Path,
    /// A duration; milliseconds at run time.
    Duration,
    /// A size; bytes at run time.
    Size,
    /// Any JSON value, checked at run time only.
    Json,
    /// `[T]`
    List(Box<Ty>),
    /// A named or inline record.
    Record(Arc<Record>),
    /// `T?`
    Optional(Box<Ty>),
    /// `"a" | "b"`: one of these strings.
    Union(Arc<[String]>),
    /// The type of something already reported as wrong; fits everywhere.
    Error,
}

/// The fields of a record type.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The name of a `type` item; `None` for inline records.
    pub name: Option<String>,
    /// Fields in declaration order.
    pub fields: Vec<(String, Ty)>,
}

impl Record {
    /// The type of field `name`.
    pub fn field(&self, name: &str) -> Option<&Ty> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

impl Ty {
    /// An anonymous record.
    pub fn record(fields: Vec<(&str, Ty)>) -> Ty {
        Ty::Record(Arc::new(Record {
            name: None,
            fields: fields
                .into_iter()
                .map(|(n, t)| (n.to_string(), t))
                .collect(),
        }))
    }

    /// `[self]`
    pub fn list_of(self) -> Ty {
        Ty::List(Box::new(self))
    }

    /// The type without an outer `?`.
    pub fn strip_optional(&self) -> &Ty {
        match self {
            Ty::Optional(inner) => inner.strip_optional(),
            other => other,
        }
    }

    /// True for `Error` and `Json`, whose shape is not known statically.
    pub fn is_dynamic(&self) -> bool {
        matches!(self.strip_optional(), Ty::Error | Ty::Json)
    }

    /// Int or float.
    pub fn is_numeric(&self) -> bool {
        matches!(self.strip_optional(), Ty::Int | Ty::Float)
    }

    /// String, path or a string union.
    pub fn is_stringy(&self) -> bool {
        matches!(self.strip_optional(), Ty::String | Ty::Path | Ty::Union(_))
    }

    /// Whether a value of type `self` may be used where `to` is expected.
    pub fn fits(&self, to: &Ty) -> bool {
        use Ty::*;
        match (self, to) {
            (Error | Json, _) | (_, Error | Json) => true,
            (Optional(a), Optional(b)) => a.fits(b),
            (a, Optional(b)) => a.fits(b),
            (Optional(a), b) => a.fits(b),
            (Int, Float) => true,
            (String | Path | Union(_), String | Path) => true,
            // A string computed at run time is checked against the union then.
            (String, Union(_)) => true,
            (Union(a), Union(b)) => union_within(a, b),
            (List(a), List(b)) => a.fits(b),
            (Record(a), Record(b)) => b.fields.iter().all(|(name, want)| match a.field(name) {
                Some(have) => have.fits(want),
                None => matches!(want, Optional(_)),
            }),
            (a, b) => a == b,
        }
    }
}

/// Every member of `a` is a member of `b`: linear, not `a.len() × b.len()`
/// (a union can have 100,000 members).
fn union_within(a: &Arc<[String]>, b: &Arc<[String]>) -> bool {
    if Arc::ptr_eq(a, b) || a == b {
        return true;
    }
    if b.len() <= 16 {
        return a.iter().all(|x| b.contains(x));
    }
    let members: std::collections::HashSet<&str> = b.iter().map(String::as_str).collect();
    a.iter().all(|x| members.contains(x.as_str()))
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::String => f.write_str("string"),
            Ty::Int => f.write_str("int"),
            Ty::Float => f.write_str("float"),
            Ty::Bool => f.write_str("bool"),
            Ty::Path => f.write_str("path"),
            Ty::Duration => f.write_str("duration"),
            Ty::Size => f.write_str("size"),
            Ty::Json => f.write_str("json"),
            Ty::Error => f.write_str("{unknown}"),
            Ty::List(inner) => write!(f, "[{inner}]"),
            Ty::Optional(inner) => write!(f, "{inner}?"),
            Ty::Union(items) => {
                let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
                f.write_str(&quoted.join(" | "))
            }
            Ty::Record(rec) => match &rec.name {
                Some(name) => f.write_str(name),
                None => {
                    f.write_str("{ ")?;
                    for (i, (name, ty)) in rec.fields.iter().enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        write!(f, "{name}: {ty}")?;
                    }
                    f.write_str(" }")
                }
            },
        }
    }
}
