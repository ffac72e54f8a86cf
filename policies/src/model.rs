//! The public vocabulary: callers, requests, verdicts, decisions, limits, budgets.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// allow / ask / deny. Ordered by precedence: `Deny > Ask > Allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Run the call.
    Allow,
    /// Ask a human (or the MCP client) first.
    Ask,
    /// Refuse, with the reason.
    Deny,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allow => "allow",
            Verdict::Ask => "ask",
            Verdict::Deny => "deny",
        })
    }
}

impl std::str::FromStr for Verdict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "allow" => Ok(Verdict::Allow),
            "ask" => Ok(Verdict::Ask),
            "deny" => Ok(Verdict::Deny),
            other => Err(format!(
                "unknown decision '{other}'; expected \"allow\", \"ask\" or \"deny\""
            )),
        }
    }
}

/// What kind of front end makes a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallerKind {
    /// A person in `verity chat`.
    Tui,
    /// `verity tools call` / `verity run` on the command line.
    Cli,
    /// A client of `verity serve`.
    McpClient,
    /// A rollout worker.
    Rollout,
}

impl CallerKind {
    /// Every kind, for messages.
    pub const ALL: [CallerKind; 4] = [
        CallerKind::Tui,
        CallerKind::Cli,
        CallerKind::McpClient,
        CallerKind::Rollout,
    ];

    /// The kebab-case name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            CallerKind::Tui => "tui",
            CallerKind::Cli => "cli",
            CallerKind::McpClient => "mcp-client",
            CallerKind::Rollout => "rollout",
        }
    }
}

impl std::str::FromStr for CallerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        CallerKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown caller kind '{s}'; expected one of tui, cli, mcp-client, rollout")
            })
    }
}

/// Who makes a call: a kind and an identity within it (an MCP client's name or token
/// name, a rollout worker id, a user name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Caller {
    /// Front end kind.
    pub kind: CallerKind,
    /// Identity within the kind (may be empty).
    pub id: String,
}

impl Caller {
    /// A caller of the given kind and id.
    pub fn new(kind: CallerKind, id: impl Into<String>) -> Self {
        Self {
            kind,
            id: id.into(),
        }
    }

    /// The command-line user.
    pub fn cli() -> Self {
        Self::new(CallerKind::Cli, "")
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.id.is_empty() {
            f.write_str(self.kind.as_str())
        } else {
            write!(f, "{}:{}", self.kind.as_str(), self.id)
        }
    }
}

impl std::str::FromStr for Caller {
    type Err = String;
    /// `cli`, `mcp-client:claude-desktop`, `rollout:worker-3`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, id) = s.split_once(':').unwrap_or((s, ""));
        Ok(Caller::new(kind.parse()?, id))
    }
}

/// Tool behaviour hints as rules see them (MCP annotations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotations {
    /// Does not modify its environment.
    pub read_only: bool,
    /// May perform destructive updates.
    pub destructive: bool,
    /// Repeating a call has no further effect.
    pub idempotent: bool,
    /// Interacts with an open world.
    pub open_world: bool,
}

impl Annotations {
    /// MCP's defaults for a tool that declares nothing: the least trusting reading.
    pub const UNKNOWN: Annotations = Annotations {
        read_only: false,
        destructive: true,
        idempotent: false,
        open_world: true,
    };
}

/// Resource limits a rule imposes. They only ever tighten: combining two limit sets keeps
/// the smaller value of each field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_ms: Option<u64>,
    /// Memory in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Output in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_kb: Option<u64>,
    /// Deterministic CPU budget (tool-specific units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
}

impl Limits {
    /// The stricter of the two, field by field.
    #[must_use]
    pub fn tighten(self, other: Limits) -> Limits {
        fn min(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, None) => a,
                (None, b) => b,
            }
        }
        Limits {
            wall_ms: min(self.wall_ms, other.wall_ms),
            memory_mb: min(self.memory_mb, other.memory_mb),
            output_kb: min(self.output_kb, other.output_kb),
            fuel: min(self.fuel, other.fuel),
        }
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

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
