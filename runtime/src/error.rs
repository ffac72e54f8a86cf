//! Runtime errors (faults of the runtime itself; tool failures are values).

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong in the runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The permission policy could not be loaded.
    #[error(transparent)]
    Policy(#[from] verity_policies::PolicyError),
    /// The server configuration is unsafe or inconsistent.
    #[error("{0}")]
    Config(String),
    /// An I/O error (binding a socket, reading a file).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The MCP transport failed.
    #[error("MCP: {0}")]
    Mcp(String),
}
