//! An ordered JSON value for the answers the sim writes.
//!
//! The provider docs quote bodies with their keys in the providers' own order
//! (`code`, `message`, `errors`, `status`, `details`). `serde_json::Value` sorts keys, and
//! turning on its `preserve_order` feature would change every other crate's output, so the
//! sim builds its bodies from this small tree instead: keys come out in the order written.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// A JSON value whose objects keep their insertion order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum J {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    /// The compact JSON text of this value.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        // Serializing this tree into a Vec cannot fail: every key is a string.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// An array of strings.
    pub(crate) fn strings(items: &[&str]) -> J {
        J::Arr(items.iter().map(|s| J::from(*s)).collect())
    }

    /// Appends a key to an object (no-op on other variants).
    pub(crate) fn push(&mut self, key: &str, value: impl Into<J>) {
        if let J::Obj(fields) = self {
            fields.push((key.to_owned(), value.into()));
        }
    }

    /// The value of `key` if this is an object that has it.
    pub(crate) fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Keeps only the listed keys (plus `always`), in this object's own order.
    pub(crate) fn select(self, keys: &[&str], always: &[&str]) -> J {
        match self {
            J::Obj(fields) => J::Obj(
                fields
                    .into_iter()
                    .filter(|(k, _)| {
                        always.contains(&k.as_str())
                            || keys.iter().any(|s| s.eq_ignore_ascii_case(k))
                    })
                    .collect(),
            ),
            other => other,
        }
    }
}

impl Serialize for J {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            J::Null => serializer.serialize_unit(),
            J::Bool(b) => serializer.serialize_bool(*b),
            J::Int(i) => serializer.serialize_i64(*i),
            J::Str(s) => serializer.serialize_str(s),
            J::Arr(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            J::Obj(fields) => {
                let mut map = serializer.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl From<&str> for J {
    fn from(s: &str) -> J {
        J::Str(s.to_owned())
    }
}
impl From<String> for J {
    fn from(s: String) -> J {
        J::Str(s)
    }
}
impl From<&String> for J {
    fn from(s: &String) -> J {
        J::Str(s.clone())
    }
}
impl From<bool> for J {
    fn from(b: bool) -> J {
        J::Bool(b)
    }
}
impl From<i64> for J {
    fn from(i: i64) -> J {
        J::Int(i)
    }
}
impl From<u16> for J {
    fn from(i: u16) -> J {
        J::Int(i64::from(i))
    }
}
impl From<u32> for J {
    fn from(i: u32) -> J {
        J::Int(i64::from(i))
    }
}
impl From<Vec<J>> for J {
    fn from(items: Vec<J>) -> J {
        J::Arr(items)
    }
}
impl<T: Into<J>> From<Option<T>> for J {
    fn from(value: Option<T>) -> J {
        value.map_or(J::Null, Into::into)
    }
}

/// Builds an ordered object: `obj! { "a" => 1i64, "b" => "x" }`.
macro_rules! obj {
    ($($key:expr => $value:expr),* $(,)?) => {
        $crate::json::J::Obj(vec![$(($key.to_string(), $crate::json::J::from($value))),*])
    };
}
pub(crate) use obj;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_order() {
        let value = obj! { "z" => 1i64, "a" => vec![J::Null, J::from(true)], "m" => "s" };
        assert_eq!(
            String::from_utf8(value.to_bytes()).unwrap(),
            r#"{"z":1,"a":[null,true],"m":"s"}"#
        );
    }

    #[test]
    fn select_keeps_listed_keys_and_always() {
        let value = obj! { "id" => "1", "mail" => "m", "userType" => "Member" };
        let kept = value.select(&["usertype"], &["id"]);
        assert_eq!(kept, obj! { "id" => "1", "userType" => "Member" });
    }
}
