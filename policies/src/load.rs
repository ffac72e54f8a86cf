//! Policy files (TOML) → compiled [`Policy`]. Every error carries `file:line:column` and
//! the expected form; nothing invalid is ever half-loaded.

use std::collections::{BTreeMap, HashSet};

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSetBuilder};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::{
    check::TestCase,
    condition::{AnnotationCondition, AnnotationField, ArgCondition, Path, Test, OPERATORS},
    engine::{CallerMatcher, Policy, Rule},
    error::{locate, PolicyError, Result},
    model::{Annotations, Budget, Caller, CallerKind, Limits, Verdict},
};

/// Default cap on the serialised size of a call's arguments.
pub(crate) const DEFAULT_MAX_ARGS_BYTES: u64 = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    default: Spanned<String>,
    #[serde(default)]
    max_args_bytes: Option<u64>,
    #[serde(default, rename = "rule")]
    rules: Vec<Spanned<RawRule>>,
    #[serde(default)]
    budget: Budget,
    #[serde(default, rename = "test")]
    tests: Vec<Spanned<RawTest>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    /// For people reading the file; the engine does not use it (`reason` is what callers
    /// are told).
    #[serde(default, rename = "description")]
    _description: Option<String>,
    tool: Spanned<OneOrMany>,
    #[serde(default)]
    caller: Option<Spanned<toml::Value>>,
    decision: Spanned<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    when: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    limits: Option<Limits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    #[serde(default)]
    name: Option<String>,
    tool: String,
    #[serde(default)]
    args: Option<toml::Value>,
    #[serde(default)]
    caller: Option<Spanned<String>>,
    #[serde(default)]
    annotations: Option<Annotations>,
    expect: Spanned<String>,
    #[serde(default)]
    rule: Option<String>,
}

struct Ctx<'a> {
    file: &'a str,
    src: &'a str,
}

impl Ctx<'_> {
    fn err(&self, offset: usize, message: impl Into<String>) -> PolicyError {
        PolicyError::Invalid {
            location: locate(self.file, self.src, offset),
            message: message.into(),
        }
    }
}

pub(crate) fn parse(src: &str, file: &str) -> Result<Policy> {
    let cx = Ctx { file, src };
    let raw: RawPolicy = toml::from_str(src).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        cx.err(offset, e.message().trim_end().to_owned())
    })?;

    let default: Verdict =
        raw.default
            .get_ref()
            .parse()
            .map_err(|m: verity_types::UnknownName| {
                cx.err(raw.default.span().start, format!("default: {m}"))
            })?;

    let mut rules = Vec::with_capacity(raw.rules.len());
    let mut ids = HashSet::new();
    let mut globs = GlobSetBuilder::new();
    let mut glob_owner = Vec::new();
    for spanned in raw.rules {
        let start = spanned.span().start;
        let r = spanned.into_inner();
        let id = r.id.get_ref().trim().to_owned();
        if id.is_empty() {
            return Err(cx.err(r.id.span().start, "rule id must not be empty"));
        }
        if !ids.insert(id.clone()) {
            return Err(cx.err(
                r.id.span().start,
                format!("duplicate rule id '{id}'; every rule needs a unique id"),
            ));
        }
        let verdict: Verdict =
            r.decision
                .get_ref()
                .parse()
                .map_err(|m: verity_types::UnknownName| {
                    cx.err(r.decision.span().start, m.to_string())
                })?;
        let tool_span = r.tool.span().start;
        let patterns = r.tool.into_inner().into_vec();
        if patterns.is_empty() {
            return Err(cx.err(tool_span, "tool must name at least one tool or glob"));
        }
        for p in patterns {
            let norm = normalize_pattern(&p).map_err(|m| cx.err(tool_span, m))?;
            let glob = GlobBuilder::new(&norm)
                .build()
                .map_err(|e| cx.err(tool_span, format!("invalid tool glob {p:?}: {e}")))?;
            globs.add(glob);
            glob_owner.push(rules.len());
        }
        let callers = match &r.caller {
            None => Vec::new(),
            Some(c) => {
                parse_callers(c.get_ref()).map_err(|m| cx.err(c.span().start, m.to_string()))?
            }
        };
        let polarity_conditions = parse_when(&r.when, &cx)?;
        let line = locate(file, src, start).line;
        rules.push(Rule {
            id,
            line,
            verdict,
            reason: r.reason,
            callers,
            conditions: polarity_conditions.0,
            annotations: polarity_conditions.1,
            limits: r.limits.unwrap_or_default(),
        });
    }
    let tool_globs = globs
        .build()
        .map_err(|e| cx.err(0, format!("cannot compile tool globs: {e}")))?;

    let mut tests = Vec::new();
    for spanned in raw.tests {
        let start = spanned.span().start;
        let t = spanned.into_inner();
        let expect: Verdict = t
            .expect
            .get_ref()
            .parse()
            .map_err(|m: verity_types::UnknownName| cx.err(t.expect.span().start, m.to_string()))?;
        let caller = match &t.caller {
            None => Caller::cli(),
            Some(c) => c
                .get_ref()
                .parse()
                .map_err(|m: verity_types::UnknownName| cx.err(c.span().start, m.to_string()))?,
        };
        let args = match t.args {
            None => Value::Object(Default::default()),
            Some(a) => {
                serde_json::to_value(a).map_err(|e| cx.err(start, format!("test args: {e}")))?
            }
        };
        if let Some(rule) = &t.rule {
            if !ids.contains(rule) && !rule.starts_with("default") {
                return Err(cx.err(
                    start,
                    format!("test expects rule '{rule}', which is not defined"),
                ));
            }
        }
        tests.push(TestCase {
            name: t.name,
            line: locate(file, src, start).line,
            caller,
            tool: t.tool,
            args,
            annotations: t.annotations,
            expect,
            rule: t.rule,
        });
    }

    Ok(Policy {
        name: raw.name.unwrap_or_else(|| file.to_owned()),
        description: raw.description,
        source: file.to_owned(),
        digest: hex::encode(Sha256::digest(src.as_bytes())),
        default,
        rules,
        tool_globs,
        glob_owner,
        budget: raw.budget,
        max_args_bytes: raw.max_args_bytes.unwrap_or(DEFAULT_MAX_ARGS_BYTES),
        tests,
    })
}

fn normalize_pattern(p: &str) -> std::result::Result<String, String> {
    // Globs are normalised like names; glob metacharacters are allowed on top.
    let stripped: String = p
        .chars()
        .filter(|c| !matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | ',' | '!'))
        .collect();
    if !stripped.is_empty() {
        crate::name::normalize_tool_name(&stripped)
            .map_err(|m| format!("tool pattern {p:?}: {m}"))?;
    }
    Ok(p.to_lowercase())
}

fn parse_callers(v: &toml::Value) -> std::result::Result<Vec<CallerMatcher>, String> {
    const EXPECTED: &str = "caller must be a string like \"cli\" or \"mcp-client:claude-*\", a table { kind = \"mcp-client\", id = \"claude-*\" }, or an array of those";
    let one = |v: &toml::Value| -> std::result::Result<CallerMatcher, String> {
        let (kind, id) = match v {
            toml::Value::String(s) => {
                let (k, i) = s.split_once(':').unwrap_or((s.as_str(), ""));
                (k.to_owned(), (!i.is_empty()).then(|| i.to_owned()))
            }
            toml::Value::Table(t) => {
                for k in t.keys() {
                    if k != "kind" && k != "id" {
                        return Err(format!(
                            "unknown key '{k}' in caller; expected 'kind' and optionally 'id'"
                        ));
                    }
                }
                let kind = t
                    .get("kind")
                    .and_then(toml::Value::as_str)
                    .ok_or_else(|| EXPECTED.to_owned())?;
                let id = t.get("id").map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| EXPECTED.to_owned())
                });
                (kind.to_owned(), id.transpose()?)
            }
            _ => return Err(EXPECTED.to_owned()),
        };
        let kind: Option<CallerKind> = if kind == "*" {
            None
        } else {
            Some(
                kind.parse()
                    .map_err(|e: verity_types::UnknownName| e.to_string())?,
            )
        };
        let id: Option<GlobMatcher> = id
            .map(|i| {
                Glob::new(&i)
                    .map(|g| g.compile_matcher())
                    .map_err(|e| format!("invalid caller id glob {i:?}: {e}"))
            })
            .transpose()?;
        Ok(CallerMatcher { kind, id })
    };
    match v {
        toml::Value::Array(a) => a.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

type Conditions = (Vec<ArgCondition>, Vec<AnnotationCondition>);

fn parse_when(when: &BTreeMap<String, Spanned<toml::Value>>, cx: &Ctx<'_>) -> Result<Conditions> {
    let mut args = Vec::new();
    let mut annotations = Vec::new();
    for (key, spanned) in when {
        let at = spanned.span().start;
        let value = spanned.get_ref();
        let mut flat = Vec::new();
        flatten(key, value, &mut flat);
        for (path, v) in flat {
            if let Some(field) = path.strip_prefix("annotations.") {
                let field = AnnotationField::parse(field).map_err(|m| cx.err(at, m))?;
                let value = v.as_bool().ok_or_else(|| {
                    cx.err(
                        at,
                        format!("annotation condition '{path}' expects true or false"),
                    )
                })?;
                annotations.push(AnnotationCondition { field, value });
                continue;
            }
            let p = Path::parse(&path).map_err(|m| cx.err(at, m))?;
            let json = serde_json::to_value(v).map_err(|e| cx.err(at, e.to_string()))?;
            let (tests, optional) = match &json {
                Value::Object(ops) => {
                    let mut tests = Vec::new();
                    let mut optional = false;
                    for (op, arg) in ops {
                        if op == "optional" {
                            optional = arg
                                .as_bool()
                                .ok_or_else(|| cx.err(at, "'optional' expects true or false"))?;
                            continue;
                        }
                        tests.push(
                            Test::build(op, arg)
                                .map_err(|m| cx.err(at, format!("condition on '{path}': {m}")))?,
                        );
                    }
                    (tests, optional)
                }
                // A bare value is shorthand for equality.
                other => (vec![Test::Eq(other.clone())], false),
            };
            args.push(ArgCondition {
                path: p,
                tests,
                optional,
            });
        }
    }
    Ok((args, annotations))
}

/// Flattens nested tables into dotted paths until a table whose keys are all operators
/// (a condition) or a non-table value.
fn flatten<'v>(prefix: &str, v: &'v toml::Value, out: &mut Vec<(String, &'v toml::Value)>) {
    match v {
        // A table with any operator key is a condition (unknown keys in it are errors);
        // a table without one is a level of the path.
        toml::Value::Table(t)
            if !t.is_empty() && !t.keys().any(|k| OPERATORS.contains(&k.as_str())) =>
        {
            for (k, child) in t {
                flatten(&format!("{prefix}.{k}"), child, out);
            }
        }
        _ => out.push((prefix.to_owned(), v)),
    }
}
