//! Canonical JSON for digests: object keys sorted by code point, no insignificant
//! whitespace, strings and numbers as serde_json writes them. The same value always gives
//! the same bytes, whatever order its fields were built in.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The canonical text of `v`.
pub fn to_canonical(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(child) = m.get(k) {
                    write(child, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(x, out);
            }
            out.push(']');
        }
        Value::Number(n) if n.is_f64() => out.push_str(&float_text(n.as_f64().unwrap_or(0.0))),
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Floats at 15 significant digits: a reader whose float parsing is off by one unit in
/// the last place (serde_json's default fast path can be) still gets the same digest.
fn float_text(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    format!("{f:.14e}")
}

/// `sha256:` + hex SHA-256 of the canonical text of `v`.
pub fn digest(v: &Value) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(to_canonical(v).as_bytes()))
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2], "x": "é"}}"#).unwrap();
        let b = json!({"a": {"x": "é", "y": [1, 2]}, "b": 1});
        assert_eq!(to_canonical(&a), r#"{"a":{"x":"é","y":[1,2]},"b":1}"#);
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(
            digest(&a),
            digest(&json!({"a": {"x": "é", "y": [2, 1]}, "b": 1}))
        );
        // One ulp apart: the same canonical text.
        let x = -0.10000000149011612f64;
        let y = f64::from_bits(x.to_bits() + 1);
        assert_eq!(to_canonical(&json!([x])), to_canonical(&json!([y])));
    }
}
