//! Tool failures: values a model (or an MCP client) can read and act on.

pub use verity_types::FailureKind;

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
