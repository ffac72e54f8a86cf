//! Argument and annotation conditions, compiled once at load.
//!
//! A path starts at `args` and walks fields: `args.timeout_ms`, `args.files.*.path`
//! (`*`: any one field or element), `args.**` (every value at any depth). Conditions
//! fail closed through their *polarity*:
//!
//! * in a `deny` or `ask` rule (widening), a condition holds if **any** value on the
//!   path satisfies it, testing both the raw string and its NFKC form without invisible
//!   characters;
//! * in an `allow` rule (narrowing), **every** value on the path must satisfy it, in
//!   both forms, and the path must exist (unless the condition says `optional = true`).
//!
//! String tests (`regex`, `glob`, `contains`) on an object or array see every nested
//! string, every key, and all nested strings joined — so a secret split across fields is
//! still seen. Numeric tests accept numbers written as strings (`"5000"`).
//!
//! `domain` reads a string as a URL and tests its host against a list (`python.org`
//! exactly, `*.python.org` any subdomain, `.python.org` both). The URL is parsed as a
//! browser would (`https://python.org@evil.com` is evil.com). A value that is not a URL
//! with a host satisfies a widening `domain` test and never a narrowing one.

use globset::{Glob, GlobMatcher};
use regex::Regex;
use serde_json::Value;

use crate::{model::Annotations, name::normalize_text};

/// Whether a condition belongs to a rule that widens (deny/ask) or narrows (allow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Polarity {
    Widen,
    Narrow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Field(String),
    Any,
    Deep,
}

/// A parsed `args...` path.
#[derive(Debug, Clone)]
pub(crate) struct Path {
    segments: Vec<Segment>,
}

impl Path {
    /// Parses `args`, `args.a.b`, `args.*.x`, `args.**`.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let mut parts = s.split('.');
        if parts.next() != Some("args") {
            return Err(format!(
                "condition path '{s}' must start with 'args' (e.g. \"args.timeout_ms\", \"args.**\") or be an annotation (\"annotations.read_only\")"
            ));
        }
        let mut segments = Vec::new();
        for p in parts {
            segments.push(match p {
                "" => return Err(format!("condition path '{s}' has an empty segment")),
                "*" => Segment::Any,
                "**" => Segment::Deep,
                f => Segment::Field(f.to_owned()),
            });
        }
        Ok(Path { segments })
    }

    /// Every value the path reaches in `root`. A final `**` yields every scalar below
    /// it and, with `containers`, every object and array too (whose string view joins
    /// their nested strings — how split secrets are seen).
    pub(crate) fn select<'v>(&self, root: &'v Value, containers: bool, out: &mut Vec<&'v Value>) {
        select(&self.segments, root, containers, out);
    }
}

fn select<'v>(segments: &[Segment], v: &'v Value, containers: bool, out: &mut Vec<&'v Value>) {
    let Some((first, rest)) = segments.split_first() else {
        out.push(v);
        return;
    };
    match first {
        Segment::Field(f) => match v {
            Value::Object(m) => {
                if let Some(child) = m.get(f) {
                    select(rest, child, containers, out);
                }
            }
            Value::Array(a) => {
                if let Some(child) = f.parse::<usize>().ok().and_then(|i| a.get(i)) {
                    select(rest, child, containers, out);
                }
            }
            _ => {}
        },
        Segment::Any => for_children(v, |c| select(rest, c, containers, out)),
        Segment::Deep => {
            if rest.is_empty() {
                if containers {
                    out.push(v);
                    for_descendants(v, &mut |c| out.push(c));
                } else {
                    scalars(v, out);
                }
            } else {
                // Zero or more levels, then the rest.
                select(rest, v, containers, out);
                for_descendants(v, &mut |c| select(rest, c, containers, out));
            }
        }
    }
}

fn for_children<'v>(v: &'v Value, mut f: impl FnMut(&'v Value)) {
    match v {
        Value::Object(m) => m.values().for_each(&mut f),
        Value::Array(a) => a.iter().for_each(&mut f),
        _ => {}
    }
}

fn for_descendants<'v>(v: &'v Value, f: &mut dyn FnMut(&'v Value)) {
    let children: Vec<&'v Value> = match v {
        Value::Object(m) => m.values().collect(),
        Value::Array(a) => a.iter().collect(),
        _ => Vec::new(),
    };
    for c in children {
        f(c);
        for_descendants(c, f);
    }
}

fn scalars<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
    match v {
        Value::Object(_) | Value::Array(_) => {
            for_children(v, |c| scalars(c, out));
            // An empty container is still a value on the path.
            if matches!(v, Value::Object(m) if m.is_empty())
                || matches!(v, Value::Array(a) if a.is_empty())
            {
                out.push(v);
            }
        }
        _ => out.push(v),
    }
}

/// Every string a string test sees in `v`: itself if a string (numbers and booleans as
/// their JSON text), else nested strings, keys, and all of them joined.
fn strings_of(v: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Bool(b) => out.push(b.to_string()),
            Value::Null => {}
            Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            Value::Object(m) => {
                for (k, c) in m {
                    out.push(k.clone());
                    walk(c, out);
                }
            }
        }
    }
    match v {
        Value::Object(_) | Value::Array(_) => {
            let mut out = Vec::new();
            walk(v, &mut out);
            let joined = out.concat();
            out.push(joined);
            out
        }
        Value::Null => Vec::new(),
        other => {
            let mut out = Vec::new();
            walk(other, &mut out);
            out
        }
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn length(v: &Value) -> Option<usize> {
    match v {
        Value::String(s) => Some(s.chars().count()),
        Value::Array(a) => Some(a.len()),
        Value::Object(m) => Some(m.len()),
        _ => None,
    }
}

/// Equality as a rule author means it: numbers numerically (also when written as
/// strings), strings also after normalisation when `normalized` is set.
fn loosely_equal(a: &Value, b: &Value, normalized: bool) -> bool {
    if let (Some(x), Some(y)) = (as_number(a), as_number(b)) {
        if matches!(a, Value::Number(_)) || matches!(b, Value::Number(_)) {
            return x == y;
        }
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) if normalized => {
            normalize_text(x) == normalize_text(y)
        }
        _ => a == b,
    }
}

/// One test on the values a path selects.
#[derive(Debug, Clone)]
pub(crate) enum Test {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    Regex(Regex),
    NotRegex(Regex),
    Glob(GlobMatcher),
    Contains(String),
    Lt(f64),
    Le(f64),
    Gt(f64),
    Ge(f64),
    MinLen(usize),
    MaxLen(usize),
    Exists(bool),
    Domain(Vec<DomainPattern>),
}

/// One entry of a `domain` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DomainPattern {
    /// `python.org`: that host only.
    Exact(String),
    /// `*.python.org`: any subdomain, not the apex.
    Sub(String),
    /// `.python.org`: the apex and any subdomain.
    Both(String),
}

impl DomainPattern {
    fn parse(s: &str) -> Result<Self, String> {
        let lower = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let (make, rest): (fn(String) -> Self, &str) = if let Some(r) = lower.strip_prefix("*.") {
            (DomainPattern::Sub, r)
        } else if let Some(r) = lower.strip_prefix('.') {
            (DomainPattern::Both, r)
        } else {
            (DomainPattern::Exact, lower.as_str())
        };
        let ok = !rest.is_empty()
            && rest
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !ok {
            return Err(format!(
                "invalid domain {s:?}; write `example.com`, `*.example.com` or `.example.com`"
            ));
        }
        Ok(make(rest.to_owned()))
    }

    fn matches(&self, host: &str) -> bool {
        let under = |apex: &str| {
            host.strip_suffix(apex)
                .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1)
        };
        match self {
            DomainPattern::Exact(d) => host == d,
            DomainPattern::Sub(d) => under(d),
            DomainPattern::Both(d) => host == d || under(d),
        }
    }
}

/// The host of a URL-ish string, lower-case, without a trailing dot. Bare hosts
/// (`python.org/x`) are read as https URLs.
pub(crate) fn url_host(s: &str) -> Option<String> {
    let s = s.trim();
    let parsed = url::Url::parse(s)
        .ok()
        .filter(|u| u.has_host())
        .or_else(|| {
            (!s.contains("://"))
                .then(|| url::Url::parse(&format!("https://{s}")).ok())
                .flatten()
        })?;
    let host = parsed
        .host_str()?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// The operator names a condition table may use.
pub(crate) const OPERATORS: &[&str] = &[
    "eq",
    "ne",
    "in",
    "not_in",
    "regex",
    "not_regex",
    "glob",
    "contains",
    "lt",
    "le",
    "gt",
    "ge",
    "min_len",
    "max_len",
    "exists",
    "domain",
    "optional",
];

impl Test {
    /// Builds a test from an operator and its TOML-derived JSON value.
    pub(crate) fn build(op: &str, v: &Value) -> Result<Test, String> {
        let num = || {
            v.as_f64()
                .ok_or_else(|| format!("'{op}' expects a number, got {v}"))
        };
        let uint = || {
            v.as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| format!("'{op}' expects a non-negative integer, got {v}"))
        };
        let string = || {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("'{op}' expects a string, got {v}"))
        };
        let list = || {
            v.as_array()
                .cloned()
                .ok_or_else(|| format!("'{op}' expects an array, got {v}"))
        };
        let regex = || -> Result<Regex, String> {
            let pattern = string()?;
            regex::RegexBuilder::new(&pattern)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| format!("invalid regex {pattern:?}: {e}"))
        };
        Ok(match op {
            "eq" => Test::Eq(v.clone()),
            "ne" => Test::Ne(v.clone()),
            "in" => Test::In(list()?),
            "not_in" => Test::NotIn(list()?),
            "regex" => Test::Regex(regex()?),
            "not_regex" => Test::NotRegex(regex()?),
            "glob" => {
                let pattern = string()?;
                Test::Glob(
                    Glob::new(&pattern)
                        .map_err(|e| format!("invalid glob {pattern:?}: {e}"))?
                        .compile_matcher(),
                )
            }
            "contains" => Test::Contains(string()?),
            "lt" => Test::Lt(num()?),
            "le" => Test::Le(num()?),
            "gt" => Test::Gt(num()?),
            "ge" => Test::Ge(num()?),
            "min_len" => Test::MinLen(uint()?),
            "max_len" => Test::MaxLen(uint()?),
            "domain" => {
                let items = match v {
                    Value::String(one) => vec![Value::String(one.clone())],
                    _ => list()?,
                };
                let patterns = items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .ok_or_else(|| format!("'domain' expects strings, got {i}"))
                            .and_then(DomainPattern::parse)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if patterns.is_empty() {
                    return Err("'domain' needs at least one domain".into());
                }
                Test::Domain(patterns)
            }
            "exists" => Test::Exists(
                v.as_bool()
                    .ok_or_else(|| format!("'exists' expects true or false, got {v}"))?,
            ),
            other => {
                return Err(format!(
                    "unknown operator '{other}'; expected one of {}",
                    OPERATORS.join(", ")
                ))
            }
        })
    }

    /// Whether one value satisfies the test, in raw (`normalized == false`) or
    /// normalised form.
    fn holds(&self, v: &Value, normalized: bool, polarity: Polarity) -> bool {
        let text = |s: &str| {
            if normalized {
                normalize_text(s)
            } else {
                s.to_owned()
            }
        };
        let any_or_all = |f: &dyn Fn(&str) -> bool| {
            let strings = strings_of(v);
            match polarity {
                Polarity::Widen => strings.iter().any(|s| f(&text(s))),
                Polarity::Narrow => !strings.is_empty() && strings.iter().all(|s| f(&text(s))),
            }
        };
        match self {
            Test::Eq(x) => loosely_equal(v, x, normalized),
            Test::Ne(x) => !loosely_equal(v, x, normalized),
            Test::In(xs) => xs.iter().any(|x| loosely_equal(v, x, normalized)),
            Test::NotIn(xs) => !xs.iter().any(|x| loosely_equal(v, x, normalized)),
            Test::Regex(r) => any_or_all(&|s| r.is_match(s)),
            Test::NotRegex(r) => {
                // "no string matches": the negation of the widening test.
                let strings = strings_of(v);
                !strings.iter().any(|s| r.is_match(&text(s)))
            }
            Test::Glob(g) => any_or_all(&|s| g.is_match(s)),
            Test::Contains(needle) => {
                let needle = text(needle);
                any_or_all(&|s| s.contains(needle.as_str()))
            }
            Test::Lt(x) => as_number(v).is_some_and(|n| n < *x),
            Test::Le(x) => as_number(v).is_some_and(|n| n <= *x),
            Test::Gt(x) => as_number(v).is_some_and(|n| n > *x),
            Test::Ge(x) => as_number(v).is_some_and(|n| n >= *x),
            Test::MinLen(n) => length(v).is_some_and(|l| l >= *n),
            Test::MaxLen(n) => length(v).is_some_and(|l| l <= *n),
            Test::Exists(_) => true,
            Test::Domain(patterns) => {
                let host = v.as_str().and_then(|s| url_host(&text(s)));
                match (host, polarity) {
                    (Some(h), _) => patterns.iter().any(|p| p.matches(&h)),
                    // Not a URL: a deny/ask rule about domains still applies (fail closed),
                    // an allow rule never does.
                    (None, Polarity::Widen) => v.is_string(),
                    (None, Polarity::Narrow) => false,
                }
            }
        }
    }
}

/// A compiled condition: a path, its tests (all must hold), and whether a missing path
/// is acceptable.
#[derive(Debug, Clone)]
pub(crate) struct ArgCondition {
    pub path: Path,
    pub tests: Vec<Test>,
    pub optional: bool,
}

impl ArgCondition {
    pub(crate) fn matches(&self, args: &Value, polarity: Polarity) -> bool {
        let mut values = Vec::new();
        self.path
            .select(args, polarity == Polarity::Widen, &mut values);
        for test in &self.tests {
            if let Test::Exists(want) = test {
                if values.is_empty() == *want {
                    return false;
                }
            }
        }
        let value_tests: Vec<&Test> = self
            .tests
            .iter()
            .filter(|t| !matches!(t, Test::Exists(_)))
            .collect();
        if value_tests.is_empty() {
            return true;
        }
        if values.is_empty() {
            return match polarity {
                Polarity::Widen => false,
                Polarity::Narrow => self.optional,
            };
        }
        let one = |v: &Value| {
            value_tests.iter().all(|t| {
                let raw = t.holds(v, false, polarity);
                let norm = t.holds(v, true, polarity);
                match polarity {
                    Polarity::Widen => raw || norm,
                    Polarity::Narrow => raw && norm,
                }
            })
        };
        match polarity {
            Polarity::Widen => values.iter().any(|v| one(v)),
            Polarity::Narrow => values.iter().all(|v| one(v)),
        }
    }
}

/// A condition on one annotation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AnnotationCondition {
    pub field: AnnotationField,
    pub value: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum AnnotationField {
    ReadOnly,
    Destructive,
    Idempotent,
    OpenWorld,
}

impl AnnotationField {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "read_only" => Self::ReadOnly,
            "destructive" => Self::Destructive,
            "idempotent" => Self::Idempotent,
            "open_world" => Self::OpenWorld,
            other => {
                return Err(format!(
                    "unknown annotation '{other}'; expected read_only, destructive, idempotent or open_world"
                ))
            }
        })
    }
}

impl AnnotationCondition {
    pub(crate) fn matches(&self, a: &Annotations) -> bool {
        let actual = match self.field {
            AnnotationField::ReadOnly => a.read_only,
            AnnotationField::Destructive => a.destructive,
            AnnotationField::Idempotent => a.idempotent,
            AnnotationField::OpenWorld => a.open_world,
        };
        actual == self.value
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cond(path: &str, op: &str, v: Value) -> ArgCondition {
        ArgCondition {
            path: Path::parse(path).unwrap_or_else(|e| panic!("{e}")),
            tests: vec![Test::build(op, &v).unwrap_or_else(|e| panic!("{e}"))],
            optional: false,
        }
    }

    #[test]
    fn deep_paths_see_nested_strings() {
        let c = cond("args.**", "regex", json!("(?i)api[_-]?key"));
        let args = json!({"a": {"b": [1, {"c": "my API_KEY=1"}]}});
        assert!(c.matches(&args, Polarity::Widen));
        assert!(!c.matches(&json!({"a": "harmless"}), Polarity::Widen));
    }

    #[test]
    fn secrets_split_across_fields_are_seen_joined() {
        let args = json!({"parts": ["-----BEGIN RSA PRI", "VATE KEY-----"]});
        for path in ["args.**", "args.*", "args"] {
            let c = cond(path, "regex", json!("BEGIN [A-Z ]*PRIVATE KEY"));
            assert!(c.matches(&args, Polarity::Widen), "{path}");
        }
    }

    #[test]
    fn numbers_as_strings_are_numbers() {
        let c = cond("args.timeout_ms", "le", json!(5000));
        assert!(c.matches(&json!({"timeout_ms": "4000"}), Polarity::Narrow));
        assert!(!c.matches(&json!({"timeout_ms": "99999"}), Polarity::Narrow));
        assert!(!c.matches(&json!({"timeout_ms": "lots"}), Polarity::Narrow));
        assert!(!c.matches(&json!({}), Polarity::Narrow));
    }

    #[test]
    fn allow_needs_every_value_widen_needs_one() {
        let c = cond("args.files.*", "glob", json!("/tmp/*"));
        let args = json!({"files": ["/tmp/a", "/etc/passwd"]});
        assert!(!c.matches(&args, Polarity::Narrow));
        assert!(c.matches(&args, Polarity::Widen));
    }

    #[test]
    fn normalisation_widens_deny_and_narrows_allow() {
        // Fullwidth letters and a zero-width space: a human reads "password".
        let sneaky = json!({"q": "ｐａｓｓ\u{200b}word"});
        let deny = cond("args.q", "regex", json!("password"));
        assert!(deny.matches(&sneaky, Polarity::Widen));
        let allow = cond("args.q", "regex", json!("^[a-z]+$"));
        assert!(!allow.matches(&sneaky, Polarity::Narrow));
        assert!(allow.matches(&json!({"q": "plain"}), Polarity::Narrow));
    }

    #[test]
    fn domain_rules_read_urls_like_a_browser() {
        let allow = cond(
            "args.url",
            "domain",
            json!(["python.org", "*.rust-lang.org"]),
        );
        for (url, ok) in [
            ("https://python.org/3/", true),
            ("python.org/3/", true),
            ("https://docs.python.org/", false),
            ("https://doc.rust-lang.org/std", true),
            ("https://rust-lang.org/", false),
            ("https://python.org@evil.com/", false),
            ("https://evil.com/?next=python.org", false),
            ("https://python.org.evil.com/", false),
            ("https://PYTHON.ORG./x", true),
            ("not a url at all", false),
        ] {
            assert_eq!(
                allow.matches(&json!({ "url": url }), Polarity::Narrow),
                ok,
                "{url}"
            );
        }
        let deny = cond("args.url", "domain", json!(".evil.com"));
        assert!(deny.matches(&json!({"url": "https://a.b.evil.com/x"}), Polarity::Widen));
        assert!(deny.matches(&json!({"url": "http://evil.com"}), Polarity::Widen));
        // Fullwidth look-alike host: normalised to evil.com, so the deny still applies.
        assert!(deny.matches(&json!({"url": "https://ｅｖｉｌ.com/"}), Polarity::Widen));
        // Unparseable: deny/ask rules fail closed.
        assert!(deny.matches(&json!({"url": "http://[::1"}), Polarity::Widen));
        assert!(!deny.matches(&json!({"url": "https://good.org"}), Polarity::Widen));
        assert!(Test::build("domain", &json!(["bad domain"])).is_err());
        assert!(Test::build("domain", &json!([])).is_err());
    }
}
