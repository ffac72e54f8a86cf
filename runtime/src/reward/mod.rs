//! Verifiers: deterministic, versioned rewards for a finished run. Each runs under its own
//! time limit on a blocking thread (or in the sandbox), so a pathological answer reports
//! `timed_out` instead of hanging the rollout — whatever thread called it.

mod math;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use verity_tools::{code::CodeParams, CallContext, Tool};

pub use math::{extract_answer, math_equal};

use crate::model::ToolCall;

/// Which verifier scores a task, with its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum VerifierSpec {
    /// Math answer equivalence against `ground_truth` (a number, LaTeX, a tuple, set,
    /// interval, equation, expression or choice letter) — see `reward/math`. A run cut by
    /// the token limit scores 0 unless `allow_truncated`.
    Math {
        /// Score truncated runs too (by what they stated before the cut).
        #[serde(default)]
        allow_truncated: bool,
    },
    /// The answer equals `ground_truth` exactly (after trimming).
    Exact,
    /// Equal after lower-casing, removing punctuation and articles, collapsing spaces.
    Normalized,
    /// The answer matches this regex (`ground_truth` unused).
    Regex {
        /// Pattern.
        pattern: String,
    },
    /// The answer is JSON whose `field` (dot path) equals `ground_truth`.
    JsonField {
        /// Dot path, e.g. `result.total`.
        field: String,
    },
    /// Python tests run in the sandbox against the answer's code (HumanEval style):
    /// `ground_truth` is the test code; it passes when it runs without error.
    Code {
        /// Function the tests call as `check(entry_point)`, if any.
        #[serde(default)]
        entry_point: Option<String>,
        /// Wall-clock limit in milliseconds (default 10000).
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// The calls the model made match `ground_truth` (BFCL style): a list of
    /// `{name, arguments}` where each argument lists its allowed values; order-insensitive;
    /// an empty list means "no call" (irrelevance).
    ToolCall,
    /// The answer matches a format regex (a format reward, e.g. `(?s)<think>.*</think>.*`).
    Format {
        /// Pattern.
        pattern: String,
    },
}

impl VerifierSpec {
    /// The math verifier with default settings.
    pub const MATH: Self = VerifierSpec::Math {
        allow_truncated: false,
    };

    /// Name and version recorded with every result; a change in behaviour bumps it.
    pub fn id(&self) -> (&'static str, u32) {
        match self {
            VerifierSpec::Math { .. } => ("math", 3),
            VerifierSpec::Exact => ("exact", 1),
            VerifierSpec::Normalized => ("normalized", 1),
            VerifierSpec::Regex { .. } => ("regex", 1),
            VerifierSpec::JsonField { .. } => ("json_field", 1),
            VerifierSpec::Code { .. } => ("code", 2),
            VerifierSpec::ToolCall => ("tool_call", 1),
            VerifierSpec::Format { .. } => ("format", 1),
        }
    }
}

/// One verifier's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RewardResult {
    /// Verifier name.
    pub name: String,
    /// Verifier version.
    pub version: u32,
    /// Reward in [0, 1].
    pub score: f64,
    /// Whether it passed.
    pub passed: bool,
    /// What was extracted from the answer.
    pub extracted: Option<String>,
    /// The gold answer, as compared.
    pub gold: Value,
    /// Why, in words.
    pub detail: String,
    /// Whether it ran out of time (score 0).
    pub timed_out: bool,
    /// Time taken.
    pub ms: u64,
}

/// Default time limit of the non-sandboxed verifiers.
pub const VERIFIER_TIMEOUT: Duration = Duration::from_secs(5);

/// What a verifier looks at.
#[derive(Debug, Clone, Default)]
pub struct Attempt {
    /// The final answer (None: the run ended without one).
    pub answer: Option<String>,
    /// Every tool call the model made, in order.
    pub calls: Vec<ToolCall>,
    /// The run was cut by the token limit (its last reply is incomplete).
    pub truncated: bool,
}

/// Scores one attempt.
pub async fn score(spec: &VerifierSpec, gold: &Value, attempt: &Attempt) -> RewardResult {
    let (name, version) = spec.id();
    let started = Instant::now();
    let result = match spec {
        VerifierSpec::Code {
            entry_point,
            timeout_ms,
        } => Ok(code(attempt, gold, entry_point.as_deref(), *timeout_ms).await),
        _ => {
            let (spec, gold2, attempt2) = (spec.clone(), gold.clone(), attempt.clone());
            let job = tokio::task::spawn_blocking(move || pure(&spec, &gold2, &attempt2));
            match tokio::time::timeout(VERIFIER_TIMEOUT, job).await {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(e)) => Ok(Verdict::fail(None, format!("the verifier failed: {e}"))),
                Err(_) => Err(()),
            }
        }
    };
    let ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(v) => RewardResult {
            name: name.into(),
            version,
            score: if v.passed { 1.0 } else { 0.0 },
            passed: v.passed,
            extracted: v.extracted,
            gold: gold.clone(),
            detail: v.detail,
            timed_out: false,
            ms,
        },
        Err(()) => RewardResult {
            name: name.into(),
            version,
            score: 0.0,
            passed: false,
            extracted: None,
            gold: gold.clone(),
            detail: format!("timed out after {} ms", VERIFIER_TIMEOUT.as_millis()),
            timed_out: true,
            ms,
        },
    }
}

struct Verdict {
    passed: bool,
    extracted: Option<String>,
    detail: String,
}

impl Verdict {
    fn pass(extracted: Option<String>, detail: impl Into<String>) -> Self {
        Self {
            passed: true,
            extracted,
            detail: detail.into(),
        }
    }
    fn fail(extracted: Option<String>, detail: impl Into<String>) -> Self {
        Self {
            passed: false,
            extracted,
            detail: detail.into(),
        }
    }
    fn of(ok: bool, extracted: Option<String>, detail: impl Into<String>) -> Self {
        if ok {
            Self::pass(extracted, detail)
        } else {
            Self::fail(extracted, detail)
        }
    }
}

fn gold_text(gold: &Value) -> String {
    match gold {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn normalize_text(s: &str) -> String {
    let lowered = s.to_lowercase();
    let cleaned: String = lowered
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c.is_whitespace() {
                c
            } else {
                ' '
            }
        })
        .collect();
    cleaned
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn pure(spec: &VerifierSpec, gold: &Value, attempt: &Attempt) -> Verdict {
    if matches!(spec, VerifierSpec::ToolCall) {
        return tool_calls(gold, &attempt.calls);
    }
    let Some(answer) = attempt.answer.as_deref() else {
        return Verdict::fail(None, "no answer");
    };
    match spec {
        VerifierSpec::Math { allow_truncated } => {
            if attempt.truncated && !allow_truncated {
                return Verdict::fail(
                    None,
                    "the run was cut by the token limit (set allow_truncated to score it)",
                );
            }
            let Some(extracted) = extract_answer(answer) else {
                return Verdict::fail(None, "no answer could be extracted");
            };
            let g = gold_text(gold);
            if math_equal(&extracted, &g) {
                Verdict::pass(Some(extracted), "equivalent")
            } else {
                Verdict::fail(Some(extracted), "not equivalent")
            }
        }
        VerifierSpec::Exact => {
            let a = answer.trim();
            Verdict::of(
                a == gold_text(gold).trim(),
                Some(a.to_owned()),
                "exact comparison",
            )
        }
        VerifierSpec::Normalized => {
            let a = normalize_text(answer);
            Verdict::of(
                a == normalize_text(&gold_text(gold)),
                Some(a),
                "normalised comparison",
            )
        }
        VerifierSpec::Regex { pattern } | VerifierSpec::Format { pattern } => {
            match regex::RegexBuilder::new(pattern)
                .size_limit(1 << 20)
                .build()
            {
                Ok(re) => Verdict::of(re.is_match(answer), None, format!("/{pattern}/")),
                Err(e) => Verdict::fail(None, format!("bad pattern: {e}")),
            }
        }
        VerifierSpec::JsonField { field } => {
            let body = answer
                .trim()
                .trim_start_matches("```json")
                .trim_start_matches("```")
                .trim_end_matches("```");
            let Ok(v) = serde_json::from_str::<Value>(body.trim()) else {
                return Verdict::fail(None, "the answer is not JSON");
            };
            let got = field
                .split('.')
                .try_fold(&v, |cur, key| cur.get(key))
                .cloned();
            match got {
                Some(x) => Verdict::of(&x == gold, Some(x.to_string()), format!("field {field}")),
                None => Verdict::fail(None, format!("no field {field}")),
            }
        }
        VerifierSpec::ToolCall | VerifierSpec::Code { .. } => unreachable_verdict(),
    }
}

fn unreachable_verdict() -> Verdict {
    Verdict::fail(None, "internal: verifier dispatched to the wrong path")
}

/// BFCL-style: every expected call matched by a distinct actual call with the same name,
/// every required argument present with an allowed value, no unexpected arguments.
fn tool_calls(gold: &Value, calls: &[ToolCall]) -> Verdict {
    let Some(expected) = gold.as_array() else {
        return Verdict::fail(None, "ground truth must be a list of {name, arguments}");
    };
    let made: Vec<String> = calls
        .iter()
        .map(|c| format!("{}({})", c.name, c.arguments))
        .collect();
    let extracted = Some(made.join("; "));
    if expected.is_empty() {
        return Verdict::of(calls.is_empty(), extracted, "irrelevance: no call expected");
    }
    if expected.len() != calls.len() {
        return Verdict::fail(
            extracted,
            format!("{} calls expected, {} made", expected.len(), calls.len()),
        );
    }
    let mut used = vec![false; calls.len()];
    for e in expected {
        let name = e.get("name").and_then(Value::as_str).unwrap_or_default();
        let args = e.get("arguments").and_then(Value::as_object);
        let found = calls.iter().enumerate().position(|(i, c)| {
            !used[i] && c.name == name && args.is_none_or(|a| args_match(a, &c.arguments))
        });
        match found {
            Some(i) => used[i] = true,
            None => return Verdict::fail(extracted, format!("no call matches {e}")),
        }
    }
    Verdict::pass(extracted, "all expected calls made")
}

/// `allowed`: argument → list of allowed values (`""` in the list: may be omitted).
fn args_match(allowed: &serde_json::Map<String, Value>, actual: &Value) -> bool {
    let Some(actual) = actual.as_object() else {
        return false;
    };
    if actual.keys().any(|k| !allowed.contains_key(k)) {
        return false;
    }
    allowed.iter().all(|(k, options)| {
        let options: Vec<&Value> = match options {
            Value::Array(a) => a.iter().collect(),
            one => vec![one],
        };
        match actual.get(k) {
            None => options.iter().any(|o| o.as_str() == Some("")),
            Some(v) => options.iter().any(|o| values_equal(o, v)),
        }
    })
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) => x.trim() == y.trim(),
        _ => a == b,
    }
}

/// The answer's code (from a ```python block, else the whole answer) + the tests, run in
/// the sandbox.
async fn code(
    attempt: &Attempt,
    tests: &Value,
    entry_point: Option<&str>,
    timeout_ms: Option<u64>,
) -> Verdict {
    let Some(answer) = attempt.answer.as_deref() else {
        return Verdict::fail(None, "no answer");
    };
    let program = extract_code(answer);
    let mut source = format!("{program}\n\n{}\n", gold_text(tests));
    if let Some(e) = entry_point {
        source.push_str(&format!("\ncheck({e})\n"));
    }
    // Exit status 0 alone is no proof: `sys.exit(0)` or `os._exit(0)` in the answer ends
    // the program before a test runs. The tests pass only if the program also reaches its
    // last line, an expression of a fresh token, and reports it as its value.
    let token = verity_tools::code::nonce();
    source.push_str(&format!("\n'{token}'\n"));
    // One sandbox for every code verification in the process: the interpreter is loaded
    // once, not once per sample.
    static CODE: std::sync::OnceLock<verity_tools::code::Code> = std::sync::OnceLock::new();
    let tool = CODE.get_or_init(verity_tools::code::Code::default);
    let params = CodeParams {
        code: source,
        timeout_ms: Some(timeout_ms.unwrap_or(10_000)),
        memory_mb: None,
        seed: Some(0),
        session_id: None,
    };
    match tool.call(params, CallContext::default()).await {
        Ok(out) => {
            let clean = out.exit_code == Some(0) && out.limit_hit.is_none();
            let finished = out.value.as_deref() == Some(format!("'{token}'").as_str());
            let ok = clean && finished;
            let tail: String = out
                .stderr
                .lines()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .join(" | ");
            let reason = if ok {
                "tests passed".to_owned()
            } else if clean {
                "tests failed: the program exited before its tests ran to the end".to_owned()
            } else if tail.is_empty() {
                "tests failed: no output".to_owned()
            } else {
                format!("tests failed: {tail}")
            };
            Verdict::of(ok, Some(program), reason)
        }
        Err(e) => Verdict::fail(Some(program), format!("sandbox: {e}")),
    }
}

fn extract_code(answer: &str) -> String {
    for fence in ["```python", "```py", "```"] {
        if let Some(start) = answer.find(fence) {
            let rest = &answer[start + fence.len()..];
            if let Some(end) = rest.find("```") {
                return rest[..end].trim_matches('\n').to_owned();
            }
        }
    }
    answer.to_owned()
}

#[cfg(test)]
mod tests;
