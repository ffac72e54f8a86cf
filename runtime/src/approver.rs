//! Approvers answer the policy's `ask`: a person at a TTY, a TUI card, an MCP client via
//! elicitation, `--yes`, or — headless — a denial that says why.

use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;
use verity_policies::{Caller, Decision};

/// What an approver is asked.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalRequest {
    /// Who wants to make the call.
    pub caller: Caller,
    /// Normalised tool name.
    pub tool: String,
    /// Full arguments.
    pub args: Value,
    /// The policy decision that asked (rule id and reason).
    pub decision: Decision,
}

/// An approver's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "approval", rename_all = "snake_case")]
pub enum Approval {
    /// Go ahead.
    Approved {
        /// Who approved (`user`, `--yes`, `mcp-client:NAME`).
        by: String,
    },
    /// Do not run the call.
    Denied {
        /// Who denied.
        by: String,
        /// Why, for the caller.
        reason: String,
    },
}

/// Answers `ask` decisions.
pub trait Approver: Send + Sync {
    /// Decides one request. Must not hang forever; time out and deny instead.
    fn approve<'a>(&'a self, request: &'a ApprovalRequest) -> BoxFuture<'a, Approval>;
}

/// Headless default: every `ask` is denied, with the rule and the way to allow it.
#[derive(Debug, Default, Clone, Copy)]
pub struct DenyAsk;

impl Approver for DenyAsk {
    fn approve<'a>(&'a self, r: &'a ApprovalRequest) -> BoxFuture<'a, Approval> {
        Box::pin(async move {
            Approval::Denied {
                by: "headless".into(),
                reason: format!(
                    "'{}' needs approval (rule '{}': {}) and nobody can be asked here; rerun with --yes or change the policy",
                    r.tool, r.decision.rule_id, r.decision.reason
                ),
            }
        })
    }
}

/// `--yes`: every `ask` is approved.
#[derive(Debug, Default, Clone, Copy)]
pub struct AutoApprove;

impl Approver for AutoApprove {
    fn approve<'a>(&'a self, _r: &'a ApprovalRequest) -> BoxFuture<'a, Approval> {
        Box::pin(async move { Approval::Approved { by: "--yes".into() } })
    }
}
