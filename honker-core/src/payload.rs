//! Payload checks: every payload is JSON text within a size limit, checked before any write.

use crate::error::{Error, Result};

/// The default payload limit: 1 MiB of JSON text.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Check that `payload` is one JSON value of at most `limit` bytes that every consumer can read.
///
/// The size is checked first so an oversized payload is refused without parsing it. Beyond the
/// JSON grammar, every number must fit an IEEE double and every string escape must be a valid
/// code point (no lone surrogate, I-JSON's rules): `1e400` is valid JSON text, but Rust's
/// serde_json and Go's encoding/json refuse it, so one such payload would make every read that
/// embeds it unparsable for those bindings. Nesting is limited to 128 levels.
///
/// # Errors
///
/// [`Error::PayloadTooLarge`] or [`Error::PayloadNotJson`].
pub fn check_json(payload: &str, limit: usize) -> Result<()> {
    if payload.len() > limit {
        return Err(Error::PayloadTooLarge {
            size: payload.len(),
            limit,
        });
    }
    serde_json::from_str::<Readable>(payload)
        .map(|_| ())
        .map_err(|source| Error::PayloadNotJson { source })
}

/// A JSON value read through in full, without being kept: unlike `IgnoredAny`, which skips
/// numbers and strings unchecked, it makes serde_json convert every number and decode every
/// string, which refuses out-of-range numbers and lone surrogates.
struct Readable;

impl<'de> serde::Deserialize<'de> for Readable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Readable, D::Error> {
        d.deserialize_any(Readable)
    }
}

impl<'de> serde::de::Visitor<'de> for Readable {
    type Value = Readable;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<Readable, E> {
        Ok(Readable)
    }

    fn visit_i64<E>(self, _: i64) -> std::result::Result<Readable, E> {
        Ok(Readable)
    }

    fn visit_u64<E>(self, _: u64) -> std::result::Result<Readable, E> {
        Ok(Readable)
    }

    fn visit_f64<E>(self, _: f64) -> std::result::Result<Readable, E> {
        Ok(Readable)
    }

    fn visit_str<E>(self, _: &str) -> std::result::Result<Readable, E> {
        Ok(Readable)
    }

    fn visit_unit<E>(self) -> std::result::Result<Readable, E> {
        Ok(Readable)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Readable, A::Error> {
        while seq.next_element::<Readable>()?.is_some() {}
        Ok(Readable)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Readable, A::Error> {
        while map.next_entry::<Readable, Readable>()?.is_some() {}
        Ok(Readable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_json_accepts_values_and_refuses_others() {
        for ok in [
            "{}",
            "[1,2]",
            "\"s\"",
            "3.5",
            "null",
            " {\"a\": [true]} ",
            "1.7976931348623157e308",
            "123456789012345678901234567890",
            r#""\ud83d\ude00 and \u00e9""#,
            r#"{"a": 1, "a": 2}"#,
        ] {
            check_json(ok, 100).unwrap();
        }
        for bad in [
            "",
            "{",
            "hello",
            "{} {}",
            "'x'",
            "1e400",
            "[1, -1e309]",
            r#"{"a": "\ud800"}"#,
            r#"{"\udc00": 1}"#,
        ] {
            assert_eq!(
                check_json(bad, 100).unwrap_err().code(),
                "payload.not_json",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn check_json_accepts_exactly_what_serde_json_values_accept() {
        let deep_ok = format!("{}{}", "[".repeat(127), "]".repeat(127));
        let too_deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        for text in [
            deep_ok.as_str(),
            too_deep.as_str(),
            "1e400",
            "-0",
            "1E+2",
            "[1,]",
        ] {
            assert_eq!(
                check_json(text, usize::MAX).is_ok(),
                serde_json::from_str::<serde_json::Value>(text).is_ok(),
                "{text:.40}"
            );
        }
    }

    #[test]
    fn check_json_refuses_oversized_before_parsing() {
        let big = "x".repeat(11);
        assert_eq!(
            check_json(&big, 10).unwrap_err().code(),
            "payload.too_large"
        );
    }
}
