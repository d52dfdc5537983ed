//! `/metrics`: the overview as Prometheus text (format 0.0.4), or OpenMetrics 1.0 when the
//! scraper asks for `application/openmetrics-text`.
//!
//! Gauges come from the file at scrape time. The two counters (`honker_queue_finished_total`,
//! `honker_queue_dead_letters_total`) count what this server saw happen since it started (see
//! [`Throughput`]): the file keeps no count of acked jobs.

use std::fmt::Write;

use serde_json::Value;

use super::live::Throughput;

/// Escape a label value: backslash, double quote and newline.
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

struct Out {
    text: String,
    openmetrics: bool,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // OpenMetrics names a counter family without `_total`; the 0.0.4 format names it as
        // its samples are named.
        let family = if self.openmetrics && kind == "counter" {
            name.trim_end_matches("_total")
        } else {
            name
        };
        let _ = writeln!(self.text, "# HELP {family} {help}");
        let _ = writeln!(self.text, "# TYPE {family} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// Render `overview` (as [`super::server`] builds it) and the counters.
pub(crate) fn render(overview: &Value, t: &Throughput, openmetrics: bool) -> String {
    let mut o = Out {
        text: String::new(),
        openmetrics,
    };
    o.family(
        "honker_up",
        "gauge",
        "1 while the dashboard can read the database.",
    );
    o.sample("honker_up", &[], 1.0);

    let queues = list(&overview["queues"]);
    o.family(
        "honker_queue_jobs",
        "gauge",
        "Jobs per queue and state (retrying: pending or scheduled jobs tried before, a subset).",
    );
    for q in queues {
        let name = q["name"].as_str().unwrap_or_default();
        for state in ["pending", "scheduled", "running", "retrying", "dead"] {
            o.sample(
                "honker_queue_jobs",
                &[("queue", name), ("state", state)],
                num(&q[state]),
            );
        }
    }
    o.family(
        "honker_queue_oldest_pending_age_seconds",
        "gauge",
        "How long the oldest due job of the queue has waited.",
    );
    for q in queues {
        let name = q["name"].as_str().unwrap_or_default();
        o.sample(
            "honker_queue_oldest_pending_age_seconds",
            &[("queue", name)],
            num(&q["oldest_pending_age_ms"]) / 1000.0,
        );
    }
    o.family(
        "honker_queue_paused",
        "gauge",
        "1 when the queue is paused.",
    );
    for q in queues {
        let name = q["name"].as_str().unwrap_or_default();
        let paused = q["paused"].as_bool().unwrap_or(false);
        o.sample(
            "honker_queue_paused",
            &[("queue", name)],
            f64::from(u8::from(paused)),
        );
    }
    o.family(
        "honker_queue_finished_total",
        "counter",
        "Jobs acked or cancelled since this server started (estimated between samples).",
    );
    for q in queues {
        let name = q["name"].as_str().unwrap_or_default();
        let n = t.finished_total.get(name).copied().unwrap_or(0);
        o.sample("honker_queue_finished_total", &[("queue", name)], n as f64);
    }
    o.family(
        "honker_queue_dead_letters_total",
        "counter",
        "Jobs that went to the dead letters since this server started.",
    );
    for q in queues {
        let name = q["name"].as_str().unwrap_or_default();
        let n = t.dead_total.get(name).copied().unwrap_or(0);
        o.sample(
            "honker_queue_dead_letters_total",
            &[("queue", name)],
            n as f64,
        );
    }

    let streams = list(&overview["streams"]);
    o.family(
        "honker_stream_events",
        "gauge",
        "Events stored per stream topic.",
    );
    for s in streams {
        let topic = s["topic"].as_str().unwrap_or_default();
        o.sample(
            "honker_stream_events",
            &[("topic", topic)],
            num(&s["events"]),
        );
    }
    o.family(
        "honker_stream_consumer_lag_events",
        "gauge",
        "Stored events above the consumer's committed offset.",
    );
    for s in streams {
        let topic = s["topic"].as_str().unwrap_or_default();
        for c in list(&s["consumers"]) {
            let consumer = c["consumer"].as_str().unwrap_or_default();
            o.sample(
                "honker_stream_consumer_lag_events",
                &[("topic", topic), ("consumer", consumer)],
                num(&c["lag_events"]),
            );
        }
    }
    o.family(
        "honker_stream_consumer_lag_seconds",
        "gauge",
        "Age of the oldest event the consumer has not committed.",
    );
    for s in streams {
        let topic = s["topic"].as_str().unwrap_or_default();
        for c in list(&s["consumers"]) {
            let consumer = c["consumer"].as_str().unwrap_or_default();
            o.sample(
                "honker_stream_consumer_lag_seconds",
                &[("topic", topic), ("consumer", consumer)],
                num(&c["lag_ms"]) / 1000.0,
            );
        }
    }

    let schedules = list(&overview["schedules"]);
    o.family(
        "honker_cron_lateness_seconds",
        "gauge",
        "How far past its next boundary an unpaused schedule is (0: on time).",
    );
    for s in schedules {
        let name = s["name"].as_str().unwrap_or_default();
        o.sample(
            "honker_cron_lateness_seconds",
            &[("schedule", name)],
            num(&s["late_ms"]) / 1000.0,
        );
    }
    o.family(
        "honker_cron_last_fire_lateness_seconds",
        "gauge",
        "How long after its boundary the last fire happened.",
    );
    for s in schedules {
        let name = s["name"].as_str().unwrap_or_default();
        if s["last_fire_late_ms"].is_number() {
            o.sample(
                "honker_cron_last_fire_lateness_seconds",
                &[("schedule", name)],
                num(&s["last_fire_late_ms"]) / 1000.0,
            );
        }
    }
    o.family(
        "honker_cron_paused",
        "gauge",
        "1 when the schedule is paused.",
    );
    for s in schedules {
        let name = s["name"].as_str().unwrap_or_default();
        let paused = s["paused"].as_bool().unwrap_or(false);
        o.sample(
            "honker_cron_paused",
            &[("schedule", name)],
            f64::from(u8::from(paused)),
        );
    }

    let channels = list(&overview["channels"]);
    o.family(
        "honker_notifications_last_minute",
        "gauge",
        "Pub/sub notifications per channel in the last minute.",
    );
    for c in channels {
        let name = c["channel"].as_str().unwrap_or_default();
        o.sample(
            "honker_notifications_last_minute",
            &[("channel", name)],
            num(&c["last_minute"]),
        );
    }
    if openmetrics {
        o.text.push_str("# EOF\n");
    }
    o.text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_are_escaped_and_counter_families_follow_the_format() {
        let overview = json!({
            "queues": [{"name": "a\"b\\c\nd", "pending": 3, "dead": 1, "paused": true}],
            "streams": [], "schedules": [], "channels": [],
        });
        let mut t = Throughput::default();
        t.finished_total.insert("a\"b\\c\nd".into(), 9);
        let text = render(&overview, &t, false);
        assert!(
            text.contains(r#"honker_queue_jobs{queue="a\"b\\c\nd",state="pending"} 3"#),
            "{text}"
        );
        assert!(
            text.contains("# TYPE honker_queue_finished_total counter"),
            "{text}"
        );
        assert!(
            text.contains(r#"honker_queue_finished_total{queue="a\"b\\c\nd"} 9"#),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
        let om = render(&overview, &t, true);
        assert!(om.contains("# TYPE honker_queue_finished counter"), "{om}");
        assert!(om.ends_with("# EOF\n"));
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
