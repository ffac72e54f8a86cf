//! The vocabulary shared by Verity's crates. `verity-tools` and `verity-policies` know
//! nothing of each other, yet both speak of a call's [`Caller`], a tool's
//! [`Annotations`], its resource [`Limits`] and why it failed ([`FailureKind`]); the
//! runtime joins them. Each type lives here once, so no crate converts between copies.
//!
//! ```
//! use verity_types::{Caller, CallerKind, Limits};
//!
//! let caller: Caller = "mcp-client:ide".parse().unwrap();
//! assert_eq!(caller.kind, CallerKind::McpClient);
//! let tool = Limits { wall_ms: Some(10_000), ..Limits::default() };
//! let rule = Limits { wall_ms: Some(2_000), memory_mb: Some(64), ..Limits::default() };
//! assert_eq!(tool.tighten(rule).wall_ms, Some(2_000));
//! ```

#![deny(missing_docs)]

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A name that is not one of the expected words (a verdict, a caller kind).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{found}'; expected {expected}")]
pub struct UnknownName {
    /// What was being parsed (`decision`, `caller kind`).
    pub what: &'static str,
    /// The text that did not parse.
    pub found: String,
    /// The accepted words, for the message.
    pub expected: &'static str,
}

/// allow / ask / deny. Ordered by precedence: `Deny > Ask > Allow`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Run the call.
    Allow,
    /// Ask a human (or the MCP client) first.
    Ask,
    /// Refuse, with the reason.
    Deny,
}

impl Verdict {
    /// The lowercase word used in policy files and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Ask => "ask",
            Verdict::Deny => "deny",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Verdict {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        [Verdict::Allow, Verdict::Ask, Verdict::Deny]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "decision",
                found: s.to_owned(),
                expected: "\"allow\", \"ask\" or \"deny\"",
            })
    }
}

/// What kind of front end makes a call.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
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
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        CallerKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "caller kind",
                found: s.to_owned(),
                expected: "one of tui, cli, mcp-client, rollout",
            })
    }
}

/// Who makes a call: a kind and an identity within it (an MCP client's name or token
/// name, a rollout worker id, a user name).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
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
    type Err = UnknownName;
    /// `cli`, `mcp-client:claude-desktop`, `rollout:worker-3`.
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        let (kind, id) = s.split_once(':').unwrap_or((s, ""));
        Ok(Caller::new(kind.parse()?, id))
    }
}

/// Hints about a tool's behaviour: mirrored 1:1 into MCP tool annotations, and what
/// permission rules match on (`when = { annotations.read_only = false }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Annotations {
    /// The tool does not change its environment.
    pub read_only: bool,
    /// The tool may perform destructive updates (meaningful only when not read-only).
    pub destructive: bool,
    /// Calling it twice with the same arguments has no further effect.
    pub idempotent: bool,
    /// The tool talks to an open world (the web, other people's systems).
    pub open_world: bool,
}

impl Annotations {
    /// A pure function of its arguments: read-only, idempotent, closed-world.
    pub const PURE: Self = Self {
        read_only: true,
        destructive: false,
        idempotent: true,
        open_world: false,
    };

    /// MCP's defaults for a tool that declares nothing: the least trusting reading.
    pub const UNKNOWN: Self = Self {
        read_only: false,
        destructive: true,
        idempotent: false,
        open_world: true,
    };
}

/// Resource limits of one call. `None` means "no limit from here" (the tool's own default
/// applies). Limits only ever get tighter as they pass from the tool through the policy to
/// the call: see [`Limits::tighten`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock time in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_ms: Option<u64>,
    /// Memory in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Output size in KiB (per stream where a tool has several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_kb: Option<u64>,
}

impl Limits {
    /// The stricter of `self` and `other`, field by field. Never looser than either.
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
        }
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// Why a tool call did not produce a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The arguments did not match the tool's schema.
    InvalidArguments,
    /// The tool ran and reported an error (a parse error, division by zero, ...).
    Execution,
    /// A resource limit (output, memory, size of a number, ...) was reached.
    LimitExceeded,
    /// The wall-clock limit was reached.
    Timeout,
    /// The caller cancelled the call.
    Cancelled,
    /// No tool of that name is registered.
    UnknownTool,
    /// The call was not permitted (by a permission policy or an approver).
    Denied,
}

impl FailureKind {
    /// The snake_case word used in records, JSON events and messages to the model
    /// (`error (timeout): …`). The one text form of a failure kind.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::InvalidArguments => "invalid_arguments",
            FailureKind::Execution => "execution",
            FailureKind::LimitExceeded => "limit_exceeded",
            FailureKind::Timeout => "timeout",
            FailureKind::Cancelled => "cancelled",
            FailureKind::UnknownTool => "unknown_tool",
            FailureKind::Denied => "denied",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_match_serde() {
        for k in [
            FailureKind::InvalidArguments,
            FailureKind::Execution,
            FailureKind::LimitExceeded,
            FailureKind::Timeout,
            FailureKind::Cancelled,
            FailureKind::UnknownTool,
            FailureKind::Denied,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for v in [Verdict::Allow, Verdict::Ask, Verdict::Deny] {
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
            assert_eq!(v.as_str().parse::<Verdict>().unwrap(), v);
        }
        for k in CallerKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn callers_round_trip_and_unknown_kinds_say_what_is_expected() {
        let c: Caller = "rollout:w-3".parse().unwrap();
        assert_eq!(c, Caller::new(CallerKind::Rollout, "w-3"));
        assert_eq!(c.to_string(), "rollout:w-3");
        assert_eq!(Caller::cli().to_string(), "cli");
        let e = "robot:x".parse::<Caller>().unwrap_err().to_string();
        assert!(e.contains("'robot'") && e.contains("mcp-client"), "{e}");
    }

    #[test]
    fn limits_only_tighten_and_unknown_fields_are_refused() {
        let a = Limits {
            wall_ms: Some(5),
            memory_mb: None,
            output_kb: Some(64),
        };
        let b = Limits {
            wall_ms: Some(9),
            memory_mb: Some(16),
            output_kb: None,
        };
        assert_eq!(
            a.tighten(b),
            Limits {
                wall_ms: Some(5),
                memory_mb: Some(16),
                output_kb: Some(64)
            }
        );
        let e = serde_json::from_str::<Limits>(r#"{"fuel": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("fuel") && e.contains("wall_ms"), "{e}");
    }
}
