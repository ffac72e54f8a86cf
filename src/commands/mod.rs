//! One module per subcommand; each turns parsed flags into calls on the crates.

pub mod index;
pub mod policy;
pub mod serve;
pub mod setup;
pub mod tools;

use std::{path::PathBuf, sync::Arc};

use anyhow::Context as _;
use verity_policies::{AuditSink, PolicyEngine};

/// `--policy` and `--audit`, shared by every command that calls tools.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyOpts {
    /// Permission policy: a preset (default, strict, trusted) or a TOML file.
    #[arg(long, env = "VERITY_POLICY", default_value = "default")]
    pub policy: String,
    /// Append an audit record of every policy decision to this JSONL file.
    #[arg(long, env = "VERITY_AUDIT")]
    pub audit: Option<PathBuf>,
}

impl PolicyOpts {
    pub fn engine(&self) -> anyhow::Result<Arc<PolicyEngine>> {
        let mut engine = PolicyEngine::load(&self.policy)?;
        if let Some(path) = &self.audit {
            let sink = AuditSink::file(path)
                .with_context(|| format!("cannot open audit log {}", path.display()))?;
            engine = engine.with_audit(sink);
        }
        Ok(Arc::new(engine))
    }
}

/// A tokio runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
