//! Canonical JSON for digests: object keys sorted by code point, no insignificant
//! whitespace, strings and numbers as serde_json writes them. The same value always gives
//! the same bytes, whatever order its fields were built in.

use std::io::Write as _;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The canonical text of `v`.
pub fn to_canonical(v: &Value) -> String {
    let mut out = Vec::new();
    write(v, &mut out, None);
    // Only JSON text and serde_json-escaped strings were written.
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends the canonical text of `v` to `out`. `skip` leaves one key out of one nested
/// object (`("integrity", "digest")`: a record's digest covers everything but itself) —
/// without copying the record.
fn write(v: &Value, out: &mut Vec<u8>, skip: Option<(&str, &[&str])>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            // serde_json's map may keep insertion order (`preserve_order`): sort by code
            // point (byte order of UTF-8).
            keys.sort_unstable();
            out.push(b'{');
            let mut first = true;
            for k in keys {
                let Some(child) = m.get(k) else { continue };
                if !first {
                    out.push(b',');
                }
                first = false;
                write_str(k, out);
                out.push(b':');
                match skip {
                    Some((outer, inner)) if outer == k => write_without(child, inner, out),
                    _ => write(child, out, None),
                }
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(x, out, None);
            }
            out.push(b']');
        }
        Value::String(s) => write_str(s, out),
        Value::Number(n) => {
            if let Some(i) = n.as_u64() {
                out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
            } else if let Some(i) = n.as_i64() {
                out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
            } else {
                write_float(n.as_f64().unwrap_or(0.0), out);
            }
        }
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Null => out.extend_from_slice(b"null"),
    }
}

/// An object with some keys left out (anything else as is).
fn write_without(v: &Value, skip: &[&str], out: &mut Vec<u8>) {
    match v {
        Value::Object(m) if skip.iter().any(|k| m.contains_key(*k)) => {
            let mut keys: Vec<&String> = m.keys().filter(|k| !skip.contains(&k.as_str())).collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                if let Some(child) = m.get(k) {
                    write(child, out, None);
                }
            }
            out.push(b'}');
        }
        other => write(other, out, None),
    }
}

/// A JSON string exactly as serde_json escapes it.
fn write_str(s: &str, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Floats at 15 significant digits: a reader whose float parsing is off by one unit in
/// the last place (serde_json's default fast path can be) still gets the same digest.
fn write_float(f: f64, out: &mut Vec<u8>) {
    if f == 0.0 {
        out.push(b'0');
    } else {
        let _ = write!(out, "{f:.14e}");
    }
}

fn hash_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `sha256:` + hex SHA-256 of the canonical text of `v`.
pub fn digest(v: &Value) -> String {
    let mut out = Vec::with_capacity(4096);
    write(v, &mut out, None);
    hash_hex(&out)
}

/// [`digest`] of `v` as if `v[outer][inner]` were absent.
pub fn digest_without(v: &Value, outer: &str, inner: &str) -> String {
    digest_without_keys(v, outer, &[inner])
}

/// [`digest`] of `v` as if each `v[outer][k]` for `k` in `inner` were absent.
pub fn digest_without_keys(v: &Value, outer: &str, inner: &[&str]) -> String {
    let mut out = Vec::with_capacity(4096);
    write(v, &mut out, Some((outer, inner)));
    hash_hex(&out)
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
        assert_eq!(
            to_canonical(&json!([0.0, -3, 1.5, true, null])),
            "[0,-3,1.50000000000000e0,true,null]"
        );
    }

    #[test]
    fn digest_without_equals_digest_of_the_value_without_the_key() {
        let r = json!({"a": [1, 2.5, "x\n\"y"], "integrity": {"prev": null, "digest": "d"}, "z": {"digest": 1}});
        let mut copy = r.clone();
        copy["integrity"].as_object_mut().unwrap().remove("digest");
        assert_eq!(digest_without(&r, "integrity", "digest"), digest(&copy));
        // Only the named object loses the key.
        assert_ne!(
            digest_without(&r, "integrity", "digest"),
            digest_without(&r, "z", "digest")
        );
    }
}
