//! Tool failures: values a model (or an MCP client) can read and act on.

use serde::Serialize;

/// Why a tool call did not produce a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// A failed tool call, described for the model that made it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ToolFailure {
    /// What kind of failure this is.
    pub kind: FailureKind,
    /// One plain sentence saying what was wrong, where, and what was expected.
    pub message: String,
}

impl ToolFailure {
    /// A failure of the given kind.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The tool ran and reported an error.
    pub fn execution(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Execution, message)
    }

    /// The arguments were not what the tool expects.
    pub fn invalid_arguments(message: impl Into<String>) -> Self {
        Self::new(FailureKind::InvalidArguments, message)
    }
}
