//! Expectations of interop scenarios: variable substitution, pattern matching on values, and the
//! raw JSON spans `$text` compares byte for byte.

use std::collections::HashMap;

use serde_json::{Number, Value};

/// Replace every string that is exactly `$name` by the variable's value (recursively).
pub(crate) fn substitute(v: &Value, vars: &HashMap<String, Value>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) if s.starts_with('$') && s.len() > 1 && !is_operator(s) => vars
            .get(&s[1..])
            .cloned()
            .ok_or_else(|| format!("unknown variable `{s}`"))?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| substitute(i, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), substitute(v, vars)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Operator names are keys, never variables, but a lone `"$gt"` string is still refused as a
/// variable name so a typo cannot silently match.
fn is_operator(s: &str) -> bool {
    matches!(
        s,
        "$json" | "$text" | "$gt" | "$ge" | "$lt" | "$le" | "$any"
    )
}

/// Whether `actual` matches `pattern`; `raw` is the JSON text `actual` was parsed from (for
/// `$text`). The error names the JSON pointer of the first mismatch.
pub(crate) fn check(pattern: &Value, actual: &Value, raw: &str) -> Result<(), String> {
    walk(pattern, Some(actual), raw, &mut Vec::new())
}

fn walk(
    pattern: &Value,
    actual: Option<&Value>,
    raw: &str,
    path: &mut Vec<String>,
) -> Result<(), String> {
    let at = || {
        if path.is_empty() {
            "the value".to_owned()
        } else {
            format!("/{}", path.join("/"))
        }
    };
    if let Value::Object(p) = pattern
        && p.len() == 1
    {
        let (op, arg) = p.iter().next().expect("one entry");
        if op.starts_with('$') {
            return operator(op, arg, actual, raw, path).map_err(|e| format!("{}: {e}", at()));
        }
    }
    let Some(actual) = actual else {
        return Err(format!("{}: missing, expected {}", at(), short(pattern)));
    };
    match (pattern, actual) {
        (Value::Object(p), Value::Object(a)) => {
            for (k, pv) in p {
                path.push(k.clone());
                walk(pv, a.get(k), raw, path)?;
                path.pop();
            }
            Ok(())
        }
        (Value::Array(p), Value::Array(a)) => {
            if p.len() != a.len() {
                return Err(format!(
                    "{}: expected {} items, got {}: {}",
                    at(),
                    p.len(),
                    a.len(),
                    short(actual)
                ));
            }
            for (i, (pv, av)) in p.iter().zip(a).enumerate() {
                path.push(i.to_string());
                walk(pv, Some(av), raw, path)?;
                path.pop();
            }
            Ok(())
        }
        (p, a) if json_eq(p, a) => Ok(()),
        (p, a) => Err(format!("{}: expected {}, got {}", at(), short(p), short(a))),
    }
}

fn operator(
    op: &str,
    arg: &Value,
    actual: Option<&Value>,
    raw: &str,
    path: &[String],
) -> Result<(), String> {
    if op == "$any" {
        return actual.map(|_| ()).ok_or_else(|| "missing".to_owned());
    }
    let actual = actual.ok_or_else(|| format!("missing, expected {op} {}", short(arg)))?;
    match op {
        "$json" => {
            let text = arg.as_str().ok_or("$json takes JSON text")?;
            let want: Value =
                serde_json::from_str(text).map_err(|e| format!("$json text is not JSON: {e}"))?;
            if json_eq(&want, actual) {
                Ok(())
            } else {
                Err(format!(
                    "expected the value of {}, got {}",
                    short(&want),
                    short(actual)
                ))
            }
        }
        "$text" => {
            let want = arg.as_str().ok_or("$text takes JSON text")?;
            let got = raw_at(raw, path).ok_or("cannot locate the raw text")?;
            if got == want {
                Ok(())
            } else {
                Err(format!(
                    "raw text differs at byte {}: expected {} bytes {}, got {} bytes {}",
                    first_difference(want, got),
                    want.len(),
                    short_str(want),
                    got.len(),
                    short_str(got)
                ))
            }
        }
        "$gt" | "$ge" | "$lt" | "$le" => {
            let (Some(a), Some(b)) = (actual.as_f64(), arg.as_f64()) else {
                return Err(format!(
                    "{op} compares numbers, got {} and {}",
                    short(actual),
                    short(arg)
                ));
            };
            let ok = match op {
                "$gt" => a > b,
                "$ge" => a >= b,
                "$lt" => a < b,
                _ => a <= b,
            };
            if ok {
                Ok(())
            } else {
                Err(format!("expected {op} {b}, got {a}"))
            }
        }
        other => Err(format!("unknown operator {other}")),
    }
}

/// JSON values equal, numbers by value: two integers exactly, otherwise as doubles.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_eq(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        (a, b) => a == b,
    }
}

fn number_eq(x: &Number, y: &Number) -> bool {
    if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (x.as_u64(), y.as_u64()) {
        return a == b;
    }
    if x.is_f64() || y.is_f64() {
        return x.as_f64() == y.as_f64();
    }
    false
}

fn first_difference(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

fn short(v: &Value) -> String {
    short_str(&v.to_string())
}

fn short_str(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}

/// The raw text of the value at `path` (object keys and array indexes) inside the JSON `text`.
pub(crate) fn raw_at<'t>(text: &'t str, path: &[String]) -> Option<&'t str> {
    let b = text.as_bytes();
    let mut pos = skip_ws(b, 0);
    for seg in path {
        match b.get(pos)? {
            b'{' => {
                pos = skip_ws(b, pos + 1);
                loop {
                    if b.get(pos)? == &b'}' {
                        return None;
                    }
                    let key_end = skip_value(b, pos)?;
                    let key: String = serde_json::from_str(&text[pos..key_end]).ok()?;
                    pos = skip_ws(b, key_end);
                    if b.get(pos)? != &b':' {
                        return None;
                    }
                    pos = skip_ws(b, pos + 1);
                    if &key == seg {
                        break;
                    }
                    pos = skip_ws(b, skip_value(b, pos)?);
                    if b.get(pos)? == &b',' {
                        pos = skip_ws(b, pos + 1);
                    }
                }
            }
            b'[' => {
                let index: usize = seg.parse().ok()?;
                pos = skip_ws(b, pos + 1);
                for _ in 0..index {
                    pos = skip_ws(b, skip_value(b, pos)?);
                    if b.get(pos)? != &b',' {
                        return None;
                    }
                    pos = skip_ws(b, pos + 1);
                }
            }
            _ => return None,
        }
    }
    let end = skip_value(b, pos)?;
    Some(&text[pos..end])
}

fn skip_ws(b: &[u8], mut pos: usize) -> usize {
    while b.get(pos).is_some_and(|c| c.is_ascii_whitespace()) {
        pos += 1;
    }
    pos
}

/// The end of the JSON value starting at `pos` (not validated: serde_json parsed the line).
fn skip_value(b: &[u8], pos: usize) -> Option<usize> {
    match b.get(pos)? {
        b'"' => {
            let mut i = pos + 1;
            loop {
                match b.get(i)? {
                    b'\\' => i += 2,
                    b'"' => return Some(i + 1),
                    _ => i += 1,
                }
            }
        }
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = pos;
            loop {
                match b.get(i)? {
                    b'"' => {
                        i = skip_value(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = pos;
            while b
                .get(i)
                .is_some_and(|c| !matches!(c, b',' | b']' | b'}') && !c.is_ascii_whitespace())
            {
                i += 1;
            }
            (i > pos).then_some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(pattern: Value, raw: &str) -> Result<(), String> {
        check(&pattern, &serde_json::from_str(raw).unwrap(), raw)
    }

    #[test]
    fn objects_match_on_the_keys_named_and_arrays_on_every_item() {
        ok(json!([{"id": 1}]), r#"[{"id":1,"extra":true}]"#).unwrap();
        let e = ok(json!([{"id": 2}]), r#"[{"id":1}]"#).unwrap_err();
        assert!(
            e.contains("/0/id") && e.contains("expected 2, got 1"),
            "{e}"
        );
        assert!(
            ok(json!([1]), "[1,2]")
                .unwrap_err()
                .contains("expected 1 items, got 2")
        );
        assert!(
            ok(json!({"a": 1}), "{}")
                .unwrap_err()
                .contains("/a: missing")
        );
    }

    #[test]
    fn numbers_compare_by_value_and_integers_exactly() {
        ok(json!(9007199254740993_u64), "9007199254740993").unwrap();
        assert!(ok(json!(9007199254740993_u64), "9007199254740992").is_err());
        ok(json!({"$json": "1.0"}), "1").unwrap();
        ok(json!({"$gt": 5}), "6").unwrap();
        assert!(ok(json!({"$le": 5}), "6").is_err());
    }

    #[test]
    fn json_operator_needs_the_same_value_and_text_operator_the_same_bytes() {
        ok(
            json!({"p": {"$json": r#"{"b":1,"a":[2]}"#}}),
            r#"{"p":{"a":[2],"b":1}}"#,
        )
        .unwrap();
        assert!(
            ok(
                json!({"p": {"$json": r#"{"b":1}"#}}),
                r#"{"p":{"b":1,"c":0}}"#
            )
            .is_err()
        );
        ok(
            json!([{"p": {"$text": r#"{"b":1,"a":"é"}"#}}]),
            r#"[{"x":"]","p":{"b":1,"a":"é"}}]"#,
        )
        .unwrap();
        let e = ok(
            json!([{"p": {"$text": r#"{"b":1,"a":2}"#}}]),
            r#"[{"p":{"a":2,"b":1}}]"#,
        )
        .unwrap_err();
        assert!(e.contains("raw text differs at byte 2"), "{e}");
    }

    #[test]
    fn raw_at_finds_nested_spans_past_strings_with_brackets() {
        let text = r#" {"a" : [1, {"s":"x\"]}"}, {"k": [true , null]} ], "b":"y"} "#;
        let p = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(raw_at(text, &p(&["a", "2", "k"])), Some("[true , null]"));
        assert_eq!(raw_at(text, &p(&["a", "1"])), Some(r#"{"s":"x\"]}"}"#));
        assert_eq!(raw_at(text, &p(&["b"])), Some(r#""y""#));
        assert_eq!(raw_at(text, &p(&["c"])), None);
        assert_eq!(raw_at(text, &p(&["a", "3"])), None);
    }

    #[test]
    fn substitution_keeps_types_and_refuses_unknown_names() {
        let vars = HashMap::from([("id".to_owned(), json!(7))]);
        assert_eq!(
            substitute(&json!({"a": ["$id"], "b": "$$"}), &vars).unwrap_err(),
            "unknown variable `$$`"
        );
        assert_eq!(
            substitute(&json!({"a": ["$id"], "b": "x"}), &vars).unwrap(),
            json!({"a": [7], "b": "x"})
        );
    }
}
