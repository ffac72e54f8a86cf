//! The public vocabulary: callers, requests, verdicts, decisions, limits, budgets.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use verity_types::{Annotations, Caller, CallerKind, Limits, Verdict};

/// Budgets and rate limits, per caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Calls per rolling minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls_per_minute: Option<u32>,
    /// Calls over the engine's lifetime (a `serve` process, a run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_calls: Option<u64>,
    /// Seconds of `code` tool execution over the engine's lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_seconds_per_session: Option<u64>,
}

/// One question to the policy.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Who asks.
    pub caller: &'a Caller,
    /// The tool name as the caller wrote it (normalised by the policy).
    pub tool: &'a str,
    /// Parsed arguments.
    pub args: &'a Value,
    /// The tool's annotations; `None` means unknown (MCP defaults: not read-only,
    /// destructive, open-world).
    pub annotations: Option<Annotations>,
}

impl<'a> Request<'a> {
    /// A request with unknown annotations.
    pub fn new(caller: &'a Caller, tool: &'a str, args: &'a Value) -> Self {
        Self {
            caller,
            tool,
            args,
            annotations: None,
        }
    }

    /// Sets the tool's annotations.
    #[must_use]
    pub fn with_annotations(mut self, annotations: Annotations) -> Self {
        self.annotations = Some(annotations);
        self
    }
}

/// A rule that matched a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleMatch {
    /// Rule id.
    pub rule_id: String,
    /// The rule's decision.
    pub verdict: Verdict,
    /// 1-based line of the rule in its file.
    pub line: usize,
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// allow / ask / deny.
    pub verdict: Verdict,
    /// The rule that decided (`default` when none matched; `budget.*`, `name.invalid`,
    /// `args.too-large` for built-in checks).
    pub rule_id: String,
    /// Why, in words for the caller.
    pub reason: String,
    /// Limits to apply to the call (all matching rules' limits, tightest of each).
    pub limits: Limits,
    /// The normalised tool name that was matched.
    pub tool: String,
    /// Every rule that matched, in file order (the winner and the ones that lost).
    pub matched: Vec<RuleMatch>,
}
