//! Payload checks: every payload is JSON text within a size limit, checked before any write.

use crate::error::{Error, Result};

/// The default payload limit: 1 MiB of JSON text.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// How deep a payload may nest arrays and objects. Reads embed a payload two levels down
/// (`[{"payload": ...}]`), and serde_json, the strictest reader among the bindings, refuses
/// documents nested deeper than 128; 64 leaves room for any wrapper a binding adds.
pub const MAX_PAYLOAD_DEPTH: u32 = 64;

/// Check that `payload` is one JSON value of at most `limit` bytes that every consumer can read.
///
/// The size is checked first so an oversized payload is refused without parsing it. Beyond the
/// JSON grammar (RFC 8259), every number must fit an IEEE double and every string escape must
/// be a valid code point (no lone surrogate), as I-JSON (RFC 7493) asks, and arrays and objects
/// may nest at most [`MAX_PAYLOAD_DEPTH`] levels. `1e400` is valid JSON text, but Rust's
/// serde_json and Go's encoding/json refuse it, so one such payload would make every read that
/// embeds it unparsable for those bindings.
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
    let not_json = |source| Error::PayloadNotJson { source };
    let mut de = serde_json::Deserializer::from_str(payload);
    serde::de::DeserializeSeed::deserialize(Readable(MAX_PAYLOAD_DEPTH), &mut de)
        .map_err(not_json)?;
    de.end().map_err(not_json)
}

/// Reads one JSON value through in full without keeping it, with this many more levels of
/// arrays and objects allowed. Unlike `IgnoredAny`, which skips numbers and strings unchecked,
/// it makes serde_json convert every number and decode every string, which refuses
/// out-of-range numbers and lone surrogates.
#[derive(Clone, Copy)]
struct Readable(u32);

impl Readable {
    fn inner<E: serde::de::Error>(self) -> std::result::Result<Readable, E> {
        match self.0.checked_sub(1) {
            Some(left) => Ok(Readable(left)),
            None => Err(E::custom(format_args!(
                "nested deeper than {MAX_PAYLOAD_DEPTH} levels"
            ))),
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Readable {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Readable {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<(), A::Error> {
        let inner = self.inner()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<(), A::Error> {
        let inner = self.inner()?;
        while map.next_key_seed(inner)?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// A stored payload as JSON text to embed in a read's output, unchanged: the stored text itself
/// (trimmed) when it passes [`check_json`], so every language reads back the bytes the writer
/// sent; a JSON string holding it otherwise (a row written around honker), so the output stays
/// readable everywhere.
pub fn embeddable(payload: &str) -> std::borrow::Cow<'_, str> {
    if check_json(payload, usize::MAX).is_ok() {
        std::borrow::Cow::Borrowed(payload.trim())
    } else {
        std::borrow::Cow::Owned(serde_json::Value::String(payload.to_owned()).to_string())
    }
}

/// The JSON string literal of a name that repeats from row to row (the queue of a claim's jobs,
/// the topic of a page of events): escaped once, and again only when the name changes.
#[derive(Debug, Default)]
pub struct RepeatedName<'a> {
    last: Option<(&'a str, String)>,
}

impl<'a> RepeatedName<'a> {
    /// `name` as a JSON string literal.
    pub fn json(&mut self, name: &'a str) -> &str {
        match &self.last {
            Some((last, _)) if *last == name => {}
            _ => self.last = Some((name, serde_json::Value::from(name).to_string())),
        }
        self.last.as_ref().map_or("\"\"", |(_, json)| json.as_str())
    }
}

/// `object` (a serialized JSON object) with `"payload": <payload>` added last, the payload
/// embedded by [`embeddable`].
pub fn with_payload(object: &serde_json::Value, payload: &str) -> String {
    let mut out = object.to_string();
    debug_assert!(out.ends_with('}'), "not an object: {out}");
    out.pop();
    if out.len() > 1 {
        out.push(',');
    }
    out.push_str("\"payload\":");
    out.push_str(&embeddable(payload));
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_name_is_the_serializers_literal_each_time() {
        let mut names = RepeatedName::default();
        for name in ["emails", "emails", "q\"uo\\te\u{1}é", "", "emails"] {
            assert_eq!(names.json(name), serde_json::Value::from(name).to_string());
        }
    }

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
    fn check_json_agrees_with_serde_json_values_up_to_the_depth_limit() {
        for text in [
            "1e400",
            "-0",
            "1E+2",
            "[1,]",
            r#"{"a":{"b":[{}]}}"#,
            "\"\\ud800\"",
        ] {
            assert_eq!(
                check_json(text, usize::MAX).is_ok(),
                serde_json::from_str::<serde_json::Value>(text).is_ok(),
                "{text}"
            );
        }
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        check_json(&nested(MAX_PAYLOAD_DEPTH as usize), usize::MAX).unwrap();
        let deep = format!(r#"{{"a":{}}}"#, nested(MAX_PAYLOAD_DEPTH as usize - 1));
        check_json(&deep, usize::MAX).unwrap();
        for too_deep in [
            nested(MAX_PAYLOAD_DEPTH as usize + 1),
            format!(r#"{{"a":{}}}"#, nested(MAX_PAYLOAD_DEPTH as usize)),
            nested(10_000),
        ] {
            let e = check_json(&too_deep, usize::MAX).unwrap_err();
            assert_eq!(e.code(), "payload.not_json");
            assert!(
                e.to_string().contains("nested deeper than 64 levels"),
                "{e}"
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
