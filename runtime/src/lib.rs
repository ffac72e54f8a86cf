//! Verity's runtime: joins tools and policies and puts them in front of callers — the
//! command line, MCP clients (stdio and streamable HTTP), and the agent loop, whose model
//! backends (embedded mistral.rs, OpenAI-compatible HTTP) live in [`model`].
//!
//! The one path every tool call takes is [`ToolGate::call`]: normalise the name, ask the
//! policy, ask an [`Approver`] when the policy says `ask`, run the tool with the policy's
//! limits applied, charge budgets. Front ends differ only in who the [`Caller`] is and
//! which approver answers.
#![deny(missing_docs)]

pub mod agent;
mod approver;
mod error;
pub mod export;
mod gate;
pub mod hub;
pub mod mcp;
pub mod model;
pub mod reward;
pub mod rollout;
pub mod trajectory;
pub mod web;

pub use approver::{Approval, ApprovalRequest, Approver, AutoApprove, DenyAsk};
pub use error::{Error, Result};
pub use gate::{CallEvent, CallObserver, CallRequest, GatedCall, ToolGate, Unobserved};
pub use verity_policies::Decision;
pub use verity_tools::{Progress, ToolOutcome};
pub use verity_types::{Annotations, Caller, CallerKind, FailureKind, Limits, Verdict};
