//! Serde helpers writing `u64` as a decimal string (the Kubernetes API server turns JSON integers
//! above 2^63 into floats). Reading accepts a string or a JSON integer.
//!
//! Use with `#[serde(with = "ringshift_ring::serde_u64")]`, or
//! `#[serde(with = "ringshift_ring::serde_u64::option")]` for `Option<u64>`.

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;

/// Serialize a `u64` as a decimal string.
pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// Deserialize a `u64` from a decimal string (or a JSON integer).
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    deserializer.deserialize_any(U64Visitor)
}

struct U64Visitor;

impl Visitor<'_> for U64Visitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an unsigned 64-bit integer as a decimal string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        v.parse::<u64>()
            .map_err(|e| E::custom(format!("invalid u64 string {v:?}: {e}")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("negative value {v} for a u64")))
    }
}

/// The same for `Option<u64>` (`null` or absent is `None`; use with `#[serde(default)]`).
pub mod option {
    use super::U64Visitor;
    use serde::{Deserializer, Serializer};

    /// Serialize an `Option<u64>` as a decimal string or `null`.
    pub fn serialize<S: Serializer>(value: &Option<u64>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => serializer.collect_str(v),
            None => serializer.serialize_none(),
        }
    }

    /// Deserialize an `Option<u64>` from a decimal string, a JSON integer or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u64>, D::Error> {
        struct OptVisitor;
        impl<'de> serde::de::Visitor<'de> for OptVisitor {
            type Value = Option<u64>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("null or an unsigned 64-bit integer as a decimal string")
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(U64Visitor).map(Some)
            }
        }
        deserializer.deserialize_option(OptVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Doc {
        #[serde(with = "super")]
        v: u64,
        #[serde(with = "super::option", default)]
        o: Option<u64>,
    }

    #[test]
    fn u64_round_trips_as_string() {
        let d = Doc {
            v: u64::MAX,
            o: Some(1 << 63),
        };
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(
            json,
            r#"{"v":"18446744073709551615","o":"9223372036854775808"}"#
        );
        assert_eq!(serde_json::from_str::<Doc>(&json).unwrap(), d);
        let none: Doc = serde_json::from_str(r#"{"v":5,"o":null}"#).unwrap();
        assert_eq!(none, Doc { v: 5, o: None });
        let absent: Doc = serde_json::from_str(r#"{"v":"7"}"#).unwrap();
        assert_eq!(absent, Doc { v: 7, o: None });
        assert!(serde_json::from_str::<Doc>(r#"{"v":"-1"}"#).is_err());
        assert!(serde_json::from_str::<Doc>(r#"{"v":"1.5e3"}"#).is_err());
    }
}
