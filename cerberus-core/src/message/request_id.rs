//! JSON-RPC request ids as map keys.

use serde_json::Value;

/// A JSON-RPC id as a hash-map key: every door matches an answer to its request by one.
///
/// Integer and string ids (all that the protocol allows in practice) are keys as they are, without
/// formatting them as JSON text; an id `1` and an id `"1"` stay apart, as do `1` and `1.0`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestId {
    /// A non-negative integer id.
    Unsigned(u64),
    /// A negative integer id.
    Negative(i64),
    /// A string id.
    Text(Box<str>),
    /// Any other id, by its JSON text (a fraction, or a value the protocol does not allow).
    Json(Box<str>),
}

impl RequestId {
    /// The key of `id`.
    pub fn of(id: &Value) -> Self {
        match id {
            Value::String(text) => Self::Text(text.as_str().into()),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(n), _) => Self::Unsigned(n),
                (None, Some(n)) => Self::Negative(n),
                (None, None) => Self::Json(n.to_string().into()),
            },
            other => Self::Json(other.to_string().into()),
        }
    }

    /// The id as JSON again.
    pub fn to_value(&self) -> Value {
        match self {
            Self::Unsigned(n) => Value::from(*n),
            Self::Negative(n) => Value::from(*n),
            Self::Text(text) => Value::String(text.as_ref().to_owned()),
            Self::Json(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ids_of_different_types_are_different_keys() {
        let ids = [
            json!(1),
            json!("1"),
            json!(1.0),
            json!(-1),
            json!("-1"),
            json!(null),
            json!(u64::MAX),
        ];
        for (i, a) in ids.iter().enumerate() {
            for (j, b) in ids.iter().enumerate() {
                assert_eq!(RequestId::of(a) == RequestId::of(b), i == j, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn a_key_gives_its_id_back() {
        for id in [
            json!(7),
            json!(-7),
            json!("abc"),
            json!("quote \" and é"),
            json!(2.5),
            json!(null),
        ] {
            assert_eq!(RequestId::of(&id).to_value(), id);
        }
    }
}
