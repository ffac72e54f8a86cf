//! One module per subcommand; each turns parsed flags into calls on the crates.

pub mod agent_opts;
pub mod chat;
pub mod export;
pub mod index;
pub mod key;
pub mod model;
pub mod policy;
pub mod rollout;
pub mod run;
pub mod score;
pub mod serve;
pub mod setup;
pub mod tools;
pub mod train;
pub mod verify;

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

/// The web backend, when configured: `VERITY_SEARXNG_URL` (a SearxNG instance with JSON
/// output enabled); `VERITY_WEB_ALLOW_PRIVATE=1` lets `fetch` reach loopback/LAN hosts.
pub fn web_config() -> Option<verity_tools::web::WebConfig> {
    let url = std::env::var("VERITY_SEARXNG_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())?;
    let mut config = verity_tools::web::WebConfig::new(url);
    config.allow_private_addresses =
        std::env::var("VERITY_WEB_ALLOW_PRIVATE").is_ok_and(|v| v == "1" || v == "true");
    Some(config)
}

/// Every built-in tool (plus the web tools when configured), judged by `engine`.
pub fn builtin_tools(engine: &Arc<PolicyEngine>) -> anyhow::Result<verity_tools::ToolRegistry> {
    Ok(verity_runtime::web::builtin_tools(engine, web_config())?)
}

/// A tokio runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
