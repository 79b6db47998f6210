//! Values across the two engines: a Postgres column read as the Rust type
//! asked for, and what rusqlite would bind sent as the type Postgres expects.

use super::DbError;
use bytes::{BufMut, BytesMut};
use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use rusqlite::types::{ToSqlOutput, ValueRef};

/// A value read from Postgres, before it becomes the type asked for.
#[derive(Debug)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// Any integer type (and booleans read as numbers).
    Int(i64),
    /// A floating-point or numeric value.
    Real(f64),
    /// Text, JSON.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl From<ValueRef<'_>> for Value {
    fn from(v: ValueRef<'_>) -> Value {
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(n) => Value::Int(n),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

/// A Rust type a column can be read as, from either engine.
pub trait Column: rusqlite::types::FromSql + Sized {
    /// The value from a Postgres column.
    fn from_value(v: Value) -> Result<Self, String>;
}

impl Column for i64 {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Int(i) => Ok(i),
            Value::Real(f) if f.fract() == 0.0 => Ok(f as i64),
            Value::Text(t) => t.parse().map_err(|_| format!("`{t}` is not an integer")),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}

macro_rules! narrow_int {
    ($($t:ty),*) => {$(
        impl Column for $t {
            fn from_value(v: Value) -> Result<Self, String> {
                let i = i64::from_value(v)?;
                <$t>::try_from(i).map_err(|_| format!("{i} is out of range"))
            }
        }
    )*};
}
narrow_int!(i32, u32);

impl Column for f64 {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Int(i) => Ok(i as f64),
            Value::Real(f) => Ok(f),
            Value::Text(t) => t.parse().map_err(|_| format!("`{t}` is not a number")),
            other => Err(format!("expected a number, found {other:?}")),
        }
    }
}

impl Column for bool {
    fn from_value(v: Value) -> Result<Self, String> {
        Ok(i64::from_value(v)? != 0)
    }
}

impl Column for String {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Text(t) => Ok(t),
            Value::Int(i) => Ok(i.to_string()),
            Value::Real(f) => Ok(f.to_string()),
            Value::Blob(b) => String::from_utf8(b).map_err(|_| "bytes that are not UTF-8".into()),
            Value::Null => Err("expected text, found NULL".into()),
        }
    }
}

impl Column for Vec<u8> {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b),
            Value::Text(t) => Ok(t.into_bytes()),
            other => Err(format!("expected bytes, found {other:?}")),
        }
    }
}

impl<T: Column> Column for Option<T> {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let int = |n: usize| -> Result<i64, Box<dyn std::error::Error + Sync + Send>> {
            if raw.len() != n {
                return Err("a truncated integer".into());
            }
            let mut b = [0u8; 8];
            b[8 - n..].copy_from_slice(raw);
            let shift = 64 - 8 * n as u32;
            Ok(i64::from_be_bytes(b) << shift >> shift)
        };
        Ok(match *ty {
            Type::BOOL => Value::Int(i64::from(raw.first().is_some_and(|b| *b != 0))),
            Type::INT2 => Value::Int(int(2)?),
            Type::INT4 => Value::Int(int(4)?),
            Type::INT8 => Value::Int(int(8)?),
            Type::OID => Value::Int(int(4)? & 0xffff_ffff),
            Type::FLOAT4 => Value::Real(f64::from(f32::from_sql(ty, raw)?)),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::NUMERIC => numeric(raw)?,
            Type::BYTEA => Value::Blob(raw.to_vec()),
            Type::JSONB => {
                Value::Text(std::str::from_utf8(raw.get(1..).unwrap_or(&[]))?.to_string())
            }
            _ => Value::Text(std::str::from_utf8(raw)?.to_string()),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Value::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Postgres's binary NUMERIC (base-10000 digits) as an integer when whole, else a float.
fn numeric(raw: &[u8]) -> Result<Value, Box<dyn std::error::Error + Sync + Send>> {
    let word = |i: usize| -> Result<i16, Box<dyn std::error::Error + Sync + Send>> {
        raw.get(i..i + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a truncated numeric".into())
    };
    let (ndigits, weight, sign, scale) = (word(0)?, word(2)?, word(4)? as u16, word(6)?);
    if sign == 0xC000 {
        return Ok(Value::Real(f64::NAN));
    }
    let mut value = 0f64;
    for d in 0..ndigits.max(0) as usize {
        let digit = f64::from(word(8 + 2 * d)?);
        value += digit * 10000f64.powi(i32::from(weight) - d as i32);
    }
    if sign == 0x4000 {
        value = -value;
    }
    Ok(if scale == 0 && value.abs() < 9.0e15 {
        Value::Int(value as i64)
    } else {
        Value::Real(value)
    })
}

/// One parameter for Postgres, converted from what rusqlite would bind to
/// whatever type the server expects in that place.
#[derive(Debug)]
pub(super) struct Param(Value);

impl Param {
    pub(super) fn from_sqlite(p: &dyn rusqlite::ToSql) -> Result<Param, DbError> {
        Ok(Param(match p.to_sql()? {
            ToSqlOutput::Borrowed(v) => v.into(),
            ToSqlOutput::Owned(v) => ValueRef::from(&v).into(),
            _ => return Err(DbError::Value("an unsupported parameter".into())),
        }))
    }

    /// The Postgres type this value has by itself (text for NULL).
    pub(super) fn natural_type(&self) -> Type {
        match self.0 {
            Value::Int(_) => Type::INT8,
            Value::Real(_) => Type::FLOAT8,
            Value::Blob(_) => Type::BYTEA,
            Value::Null | Value::Text(_) => Type::TEXT,
        }
    }
}

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use Value as V;
        let text = |s: &str, out: &mut BytesMut| {
            if *ty == Type::JSONB {
                out.put_u8(1);
            }
            out.put_slice(s.as_bytes());
        };
        match (&self.0, ty) {
            (V::Null, _) => return Ok(IsNull::Yes),
            (V::Int(i), &Type::INT8) => out.put_i64(*i),
            (V::Int(i), &Type::INT4) => out.put_i32(i32::try_from(*i)?),
            (V::Int(i), &Type::INT2) => out.put_i16(i16::try_from(*i)?),
            (V::Int(i), &Type::FLOAT8) => out.put_f64(*i as f64),
            (V::Int(i), &Type::FLOAT4) => out.put_f32(*i as f32),
            (V::Int(i), &Type::BOOL) => out.put_u8(u8::from(*i != 0)),
            (V::Int(i), _) => text(&i.to_string(), out),
            (V::Real(f), &Type::FLOAT8) => out.put_f64(*f),
            (V::Real(f), &Type::FLOAT4) => out.put_f32(*f as f32),
            (V::Real(f), &Type::INT8) if f.fract() == 0.0 => out.put_i64(*f as i64),
            (V::Real(f), _) => text(&f.to_string(), out),
            (V::Text(s), &Type::INT8) => out.put_i64(s.parse()?),
            (V::Text(s), &Type::INT4) => out.put_i32(s.parse()?),
            (V::Text(s), &Type::FLOAT8) => out.put_f64(s.parse()?),
            (V::Text(s), _) => text(s, out),
            (V::Blob(b), &Type::BYTEA) => out.put_slice(b),
            (V::Blob(b), _) => text(std::str::from_utf8(b)?, out),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_decodes_whole_and_fractional_values() {
        // 12345.5: ndigits 3, weight 1, sign +, scale 1: digits 1, 2345, 5000.
        let raw = [0, 3, 0, 1, 0, 0, 0, 1, 0, 1, 0x09, 0x29, 0x13, 0x88];
        match numeric(&raw).unwrap() {
            Value::Real(f) => assert!((f - 12345.5).abs() < 1e-9),
            v => panic!("{v:?}"),
        }
        // -20000: ndigits 1, weight 1, sign -, scale 0.
        let raw = [0, 1, 0, 1, 0x40, 0, 0, 0, 0, 2];
        assert!(matches!(numeric(&raw).unwrap(), Value::Int(-20000)));
    }
}
