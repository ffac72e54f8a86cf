//! `verity serve`: the gated tools over MCP (stdio or streamable HTTP).

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use clap::Args;
use tokio_util::sync::CancellationToken;
use verity_policies::PolicyEngine;
use verity_runtime::{
    mcp::{serve_http, serve_stdio, HttpOptions, McpServer, Token},
    ToolGate,
};

use super::PolicyOpts;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Serve over stdin/stdout (the default when --http is not given).
    #[arg(long, conflicts_with = "http")]
    stdio: bool,
    /// Serve streamable HTTP at ADDR (e.g. 127.0.0.1:8765); the endpoint is /mcp.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Accepted bearer token, `NAME:SECRET` (repeatable). Required beyond loopback. The
    /// NAME identifies the client to policies.
    #[arg(long = "token", env = "VERITY_TOKEN", value_delimiter = ',')]
    tokens: Vec<Token>,
    /// Browser Origin allowed to call (repeatable), e.g. http://localhost:6274. Requests
    /// with any other Origin get 403.
    #[arg(long = "allow-origin")]
    allowed_origins: Vec<String>,
    /// Host header value to accept when bound beyond loopback (repeatable).
    #[arg(long = "allow-host")]
    allowed_hosts: Vec<String>,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    #[command(flatten)]
    policy: PolicyOpts,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let engine = args.policy.engine()?;
    let server = McpServer::new(ToolGate::new(
        super::builtin_tools(&engine)?,
        Arc::clone(&engine),
    ));
    let http = args.http.map(|addr| HttpOptions {
        tokens: args.tokens.clone(),
        allowed_origins: args.allowed_origins.clone(),
        allowed_hosts: args.allowed_hosts.clone(),
        max_body_bytes: args.max_body_bytes,
        ..HttpOptions::new(addr)
    });
    if let Some(opts) = &http {
        // Refuse before starting anything.
        opts.validate()?;
    }
    let rt = super::runtime()?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        // Handlers are installed before the server announces itself: a SIGTERM sent right
        // after "serving on …" must shut down gracefully, not kill the process.
        let signals = Signals::install()?;
        tokio::spawn(watch_signals(
            signals,
            shutdown.clone(),
            Arc::clone(&engine),
        ));
        if let Some(path) = engine.path().map(ToOwned::to_owned) {
            tokio::spawn(watch_policy_file(
                path,
                Arc::clone(&engine),
                shutdown.clone(),
            ));
        }
        match http {
            Some(opts) => serve_http(server, opts, shutdown).await?,
            None => serve_stdio(server, shutdown).await?,
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn reload(engine: &PolicyEngine, why: &str) {
    match engine.reload() {
        Ok(p) => tracing::warn!(policy = %p.name, digest = %p.digest, "policy reloaded ({why})"),
        Err(e) => tracing::error!("policy reload failed ({why}); keeping the previous policy: {e}"),
    }
}

/// The signals `serve` reacts to.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// SIGINT/SIGTERM: graceful shutdown. SIGHUP: reload the policy.
async fn watch_signals(mut s: Signals, shutdown: CancellationToken, engine: Arc<PolicyEngine>) {
    loop {
        tokio::select! {
            _ = s.term.recv() => break,
            _ = s.int.recv() => break,
            _ = s.hup.recv() => reload(&engine, "SIGHUP"),
        }
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}

/// Reloads the policy when its file changes (checked every second).
async fn watch_policy_file(
    path: std::path::PathBuf,
    engine: Arc<PolicyEngine>,
    shutdown: CancellationToken,
) {
    let stamp = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last = stamp(&path);
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => return,
        }
        let now = stamp(&path);
        if now != last {
            last = now;
            reload(&engine, "file changed");
        }
    }
}
