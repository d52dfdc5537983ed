//! Payload checks: every payload is JSON text within a size limit, checked before any write.

use crate::error::{Error, Result};

/// The default payload limit: 1 MiB of JSON text.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Check that `payload` is one JSON value of at most `limit` bytes.
///
/// The size is checked first so an oversized payload is refused without parsing it.
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
    serde_json::from_str::<serde::de::IgnoredAny>(payload)
        .map(|_| ())
        .map_err(|source| Error::PayloadNotJson { source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_json_accepts_values_and_refuses_others() {
        for ok in ["{}", "[1,2]", "\"s\"", "3.5", "null", " {\"a\": [true]} "] {
            check_json(ok, 100).unwrap();
        }
        for bad in ["", "{", "hello", "{} {}", "'x'"] {
            assert_eq!(
                check_json(bad, 100).unwrap_err().code(),
                "payload.not_json",
                "{bad:?}"
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
