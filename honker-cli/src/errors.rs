//! How the CLI prints errors: `error [<stable code>]: <message>`, the code taken from the first
//! honker error in the chain, so scripts can match on it without parsing prose.

/// The stable code of the first honker error in `e`'s chain, if there is one.
pub(crate) fn code_of(e: &anyhow::Error) -> Option<&'static str> {
    e.chain().find_map(|cause| {
        if let Some(x) = cause.downcast_ref::<honker_stream::Error>() {
            Some(x.code())
        } else if let Some(x) = cause.downcast_ref::<honker_queue::Error>() {
            Some(x.code())
        } else if let Some(x) = cause.downcast_ref::<honker_cron::Error>() {
            Some(x.code())
        } else if let Some(x) = cause.downcast_ref::<honker_core::Error>() {
            Some(x.code())
        } else {
            cause
                .downcast_ref::<honker_core::WakeError>()
                .map(|x| x.code())
        }
    })
}

/// `e` and its causes joined by `: `, leaving out a cause that the message before it already
/// quotes (many errors include their source in their own message).
pub(crate) fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut last = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if last.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        last = text;
    }
    out
}

/// Print `e` to stderr with its code.
pub(crate) fn print(e: &anyhow::Error) {
    let msg = message(e);
    #[allow(clippy::print_stderr)]
    match code_of(e) {
        Some(code) => eprintln!("error [{code}]: {msg}"),
        None => eprintln!("error: {msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn queue_and_cron_codes_are_found_too() {
        let e = anyhow::Error::new(honker_cron::Error::NotFound { name: "n".into() })
            .context("removing n");
        assert_eq!(code_of(&e), Some("cron.not_found"));
        let q = honker_queue::Queue::new("").unwrap_err();
        let code = q.code();
        let e = anyhow::Error::new(q).context("queue");
        assert_eq!(code_of(&e), Some(code));
        assert!(code.starts_with("queue."), "{code}");
    }

    #[test]
    fn code_is_found_under_context() {
        let e: anyhow::Result<()> = Err(honker_core::Error::NotDatabase {
            path: "x.db".into(),
        })
        .context("opening x.db");
        let e = e.unwrap_err();
        assert_eq!(code_of(&e), Some("db.not_database"));
    }

    #[test]
    fn a_cause_quoted_by_its_parent_is_not_repeated() {
        let source = serde_json::from_str::<serde_json::Value>("nope").unwrap_err();
        let e = anyhow::Error::new(honker_core::Error::PayloadNotJson { source }).context("notify");
        let msg = message(&e);
        assert!(msg.starts_with("notify: payload is not JSON: "), "{msg}");
        assert_eq!(msg.matches("line 1").count(), 1, "{msg}");
    }

    #[test]
    fn plain_errors_have_no_code() {
        assert_eq!(code_of(&anyhow::anyhow!("nope")), None);
    }
}
