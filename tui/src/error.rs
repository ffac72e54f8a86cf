//! Errors of the terminal UI.

/// What can stop the chat.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TuiError {
    /// The terminal could not be set up, read or drawn.
    #[error("terminal: {0}")]
    Io(#[from] std::io::Error),
    /// The record file could not be opened.
    #[error("record file {0}")]
    Record(String),
}

/// Result of the UI.
pub type Result<T> = std::result::Result<T, TuiError>;
