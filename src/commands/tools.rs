//! `verity tools list|call`.

use std::{
    io::{BufRead, IsTerminal, Write},
    process::ExitCode,
    sync::Arc,
};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use verity_runtime::{
    Approval, ApprovalRequest, Approver, AutoApprove, CallEvent, CallObserver, CallRequest, Caller,
    DenyAsk, ToolGate, Unobserved,
};
use verity_tools::{CallContext, FailureKind, ToolRegistry};

use super::PolicyOpts;

#[derive(Debug, Args)]
pub struct ToolsArgs {
    #[command(subcommand)]
    command: ToolsCommand,
}

#[derive(Debug, Subcommand)]
enum ToolsCommand {
    /// List the tools with their descriptions (and schemas with --json).
    List {
        /// Print the full tool specs as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Call a tool: `verity tools call calculator '{"expression":"17/3*3"}'`.
    Call {
        /// Tool name.
        name: String,
        /// Arguments as a JSON object.
        #[arg(default_value = "{}")]
        args: String,
        /// Print the decision and the structured result as JSON.
        #[arg(long)]
        json: bool,
        /// Approve calls the policy would ask about.
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        policy: PolicyOpts,
    },
}

pub fn run(args: ToolsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ToolsCommand::List { json } => list(json),
        ToolsCommand::Call {
            name,
            args,
            json,
            yes,
            policy,
        } => call(&name, &args, json, yes, &policy),
    }
}

fn list(json: bool) -> anyhow::Result<ExitCode> {
    let registry = match super::web_config() {
        Some(web) => {
            let engine = std::sync::Arc::new(verity_policies::PolicyEngine::load("default")?);
            verity_runtime::web::builtin_tools(&engine, Some(web))?
        }
        None => ToolRegistry::with_builtins(),
    };
    let mut out = std::io::stdout().lock();
    if json {
        let specs: Vec<_> = registry.specs().collect();
        serde_json::to_writer_pretty(&mut out, &specs)?;
        writeln!(out)?;
    } else {
        for spec in registry.specs() {
            let a = spec.annotations;
            let mut hints = Vec::new();
            if a.read_only {
                hints.push("read-only");
            }
            if a.idempotent {
                hints.push("idempotent");
            }
            if a.open_world {
                hints.push("open-world");
            }
            writeln!(out, "{}  [{}]", spec.name, hints.join(", "))?;
            let first = spec.description.split(". ").next().unwrap_or_default();
            writeln!(out, "    {first}.")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal; anything but y/yes denies.
struct TtyApprover;

impl Approver for TtyApprover {
    fn approve<'a>(&'a self, r: &'a ApprovalRequest) -> BoxFuture<'a, Approval> {
        Box::pin(async move {
            let args = serde_json::to_string_pretty(&r.args).unwrap_or_default();
            let prompt = format!(
                "verity: policy rule '{}' asks before running '{}' with\n{args}\n{}\nAllow? [y/N] ",
                r.decision.rule_id, r.tool, r.decision.reason
            );
            let answer = tokio::task::spawn_blocking(move || {
                let mut err = std::io::stderr();
                let _ = err.write_all(prompt.as_bytes());
                let _ = err.flush();
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
                line
            })
            .await
            .unwrap_or_default();
            match answer.trim().to_lowercase().as_str() {
                "y" | "yes" => Approval::Approved { by: "user".into() },
                _ => Approval::Denied {
                    by: "user".into(),
                    reason: "the user declined".into(),
                },
            }
        })
    }
}

fn call(
    name: &str,
    raw: &str,
    json: bool,
    yes: bool,
    policy: &PolicyOpts,
) -> anyhow::Result<ExitCode> {
    let args: Value = serde_json::from_str(raw).with_context(|| {
        format!("arguments must be a JSON object, e.g. '{{\"expression\": \"2+2\"}}'; got {raw:?}")
    })?;
    anyhow::ensure!(
        args.is_object(),
        "arguments must be a JSON object, got {raw}"
    );
    let engine = policy.engine()?;
    let gate = ToolGate::new(super::builtin_tools(&engine)?, engine);
    let approver: Box<dyn Approver> = if yes {
        Box::new(AutoApprove)
    } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        Box::new(TtyApprover)
    } else {
        Box::new(DenyAsk)
    };
    let caller = Caller::cli();
    let rt = super::runtime()?;
    // On a terminal, a long call (code) shows its progress on stderr as it runs.
    let observer: Arc<dyn CallObserver> = if std::io::stderr().is_terminal() {
        Arc::new(|_call_id: &str, event: CallEvent<'_>| {
            if let CallEvent::Progress(p) = event {
                let total = p.total.map(|t| format!("/{t}")).unwrap_or_default();
                let message = p.message.as_deref().unwrap_or("");
                let message = crate::term::escape_controls(message);
                eprintln!("verity: … {}{total} {message}", p.progress);
            }
        })
    } else {
        Arc::new(Unobserved)
    };
    let request = CallRequest {
        id: "cli",
        caller: &caller,
        name,
        args,
    };
    let call = rt.block_on(gate.call(
        request,
        approver.as_ref(),
        CallContext::default(),
        &observer,
    ));
    let mut out = std::io::stdout().lock();
    if json {
        let v = json!({
            "tool": call.decision.tool,
            "decision": {
                "verdict": call.decision.verdict,
                "rule_id": call.decision.rule_id,
                "reason": call.decision.reason,
            },
            "approval": call.approval,
            "is_error": call.outcome.is_error(),
            "error_kind": call.outcome.failure,
            "text": call.outcome.text,
            "result": call.outcome.structured,
            "duration_ms": call.duration.as_secs_f64() * 1000.0,
        });
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else if call.outcome.is_error() {
        let text = crate::term::for_output(&call.outcome.text, std::io::stderr().is_terminal());
        eprintln!("verity: {}: {text}", call.decision.tool);
    } else {
        let text = crate::term::for_output(&call.outcome.text, std::io::stdout().is_terminal());
        writeln!(out, "{text}")?;
    }
    Ok(match call.outcome.failure {
        None => ExitCode::SUCCESS,
        Some(FailureKind::Denied) => ExitCode::from(3),
        Some(_) => ExitCode::from(1),
    })
}
