//! `verity run "prompt"`: one agent run, headless. The answer goes to stdout; what the
//! agent does goes to stderr (or, with `--json`, every event as JSONL on stdout).

use std::{
    io::{IsTerminal, Read, Write},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
};

use clap::Args;
use tokio_util::sync::CancellationToken;
use verity_runtime::{
    agent::{Agent, AgentEvent, StopReason},
    model::{Message, Role},
    trajectory::{chain::ChainWriter, record_run, Record, TaskInfo, TrajectoryBuilder},
    Approver, AutoApprove, Caller, DenyAsk,
};

use super::agent_opts::AgentOpts;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The task. `-` reads it from stdin.
    prompt: String,
    /// Print every event as a JSON line on stdout (the answer is in the last one).
    #[arg(long)]
    json: bool,
    /// Append the run as a `verity.traj/1` record to this JSONL file (hash-chained).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Sign the record with this key (`verity key new`): `verify --key KEY.pub` then
    /// proves who recorded it.
    #[arg(long, requires = "record")]
    sign: Option<PathBuf>,
    #[command(flatten)]
    opts: AgentOpts,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let prompt = if args.prompt == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        args.prompt
    };
    anyhow::ensure!(!prompt.trim().is_empty(), "the prompt is empty");
    let resolved = args.opts.resolve(Caller::cli())?;
    let rt = super::runtime()?;
    rt.block_on(async move {
        // Open the record file first: a damaged file is refused before any model time.
        let mut writer = match &args.record {
            Some(p) => Some(super::key::signed(
                ChainWriter::open(p)?,
                args.sign.as_deref().or(resolved.sign.as_deref()),
            )?),
            None => None,
        };
        let model = resolved.backend(false).await?;
        let (gate, hub) = resolved.gate().await?;
        for s in hub.statuses() {
            match &s.error {
                None => eprintln!("verity: MCP server '{}': {} tools", s.name, s.tools.len()),
                Some(e) => eprintln!("verity: MCP server '{}' unavailable (skipped): {e}", s.name),
            }
        }
        let approver: Arc<dyn Approver> = if resolved.yes {
            Arc::new(AutoApprove)
        } else {
            Arc::new(DenyAsk)
        };
        let agent = Agent::new(model.clone(), gate, approver, resolved.agent.clone());
        let tools = agent.tool_defs();
        let mut messages = Vec::new();
        if let Some(system) = &resolved.system {
            messages.push(Message::new(Role::System, system.clone()));
        }
        messages.push(Message::new(Role::User, prompt.clone()));

        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.cancel();
            }
        });
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let json = args.json;
        let recording = writer.is_some();
        let printer = tokio::spawn(async move {
            let mut printer = EventPrinter::new(json);
            let mut builder = TrajectoryBuilder::new();
            while let Some(event) = rx.recv().await {
                printer.print(&event);
                if recording {
                    builder.observe(&event);
                }
            }
            builder
        });
        let outcome = agent.run(messages, tx, cancel).await;
        let builder = printer.await.unwrap_or_default();
        let outcome = outcome?;
        // A sampled run without --seed drew one: say it, so the run can be drawn again.
        if let (None, Some(seed)) = (agent.config().sampling.seed, outcome.seed) {
            if !json {
                eprintln!("verity: sampled with seed {seed} (--seed {seed} draws this run again)");
            }
        }
        if let (Some(w), Some(path)) = (writer.as_mut(), &args.record) {
            let task = TaskInfo::Prompt { prompt };
            let record = record_run(builder, &*model, agent.config(), &tools, &outcome, task).await;
            let digest = w.append_record(&mut Record::Traj(record))?;
            eprintln!("verity: recorded to {} ({digest})", path.display());
        }
        Ok(match outcome.stop {
            StopReason::Answer | StopReason::Truncated => {
                if outcome.stop == StopReason::Truncated {
                    eprintln!("verity: {}", outcome.stop.explain());
                }
                if !json {
                    let answer = outcome.answer.unwrap_or_default();
                    let answer = crate::term::for_output(&answer, std::io::stdout().is_terminal());
                    writeln!(std::io::stdout().lock(), "{answer}")?;
                }
                ExitCode::SUCCESS
            }
            StopReason::Calls => {
                // Call-only functions: the calls are the answer.
                if !json {
                    let calls = outcome
                        .messages
                        .last()
                        .map(|m| serde_json::to_string(&m.tool_calls))
                        .transpose()?
                        .unwrap_or_default();
                    writeln!(std::io::stdout().lock(), "{calls}")?;
                }
                ExitCode::SUCCESS
            }
            StopReason::Cancelled => {
                eprintln!("verity: cancelled");
                ExitCode::from(130)
            }
            stop => {
                eprintln!(
                    "verity: no answer: {} after {} turns ({} tokens generated)",
                    stop.explain(),
                    outcome.turns,
                    outcome.usage.completion_tokens
                );
                ExitCode::from(3)
            }
        })
    })
}

/// Renders events: JSONL, or short human lines on stderr.
struct EventPrinter {
    json: bool,
    color: bool,
}

impl EventPrinter {
    fn new(json: bool) -> Self {
        Self {
            json,
            color: std::io::stderr().is_terminal(),
        }
    }

    fn print(&mut self, event: &AgentEvent) {
        if self.json {
            let mut out = std::io::stdout().lock();
            if let Ok(line) = serde_json::to_string(event) {
                let _ = writeln!(out, "{line}");
            }
            return;
        }
        let dim = |s: String| {
            if self.color {
                format!("\x1b[2m{s}\x1b[0m")
            } else {
                s
            }
        };
        // What tools and the model wrote reaches a terminal with its control characters
        // escaped (our own styling is added around it).
        let esc = |s: &str| crate::term::for_output(s, self.color).into_owned();
        let line = match event {
            AgentEvent::TurnStarted { turn } => Some(dim(format!("── turn {turn}"))),
            AgentEvent::ToolCallProposed { call, .. } => Some(format!(
                "→ {} {}",
                esc(&call.name),
                truncate(&esc(&call.arguments.to_string()), 200)
            )),
            AgentEvent::PolicyDecision {
                verdict,
                rule_id,
                reason,
                ..
            } => Some(dim(format!("  policy: {verdict:?} ({rule_id}: {reason})"))),
            AgentEvent::ApprovalResolved { approval, .. } => {
                Some(dim(format!("  approval: {approval:?}")))
            }
            AgentEvent::ToolProgress {
                progress,
                total,
                message,
                ..
            } => Some(dim(format!(
                "  progress: {progress}{} {}",
                total.map(|t| format!("/{t}")).unwrap_or_default(),
                esc(message.as_deref().unwrap_or(""))
            ))),
            AgentEvent::ToolResult { result, tool, .. } => {
                let status = result.outcome.failure.map_or("ok", |k| k.as_str());
                Some(format!(
                    "← {tool} {status} ({} ms): {}",
                    result.duration.as_millis(),
                    truncate(&esc(&result.outcome.text), 300)
                ))
            }
            AgentEvent::ParseFailure { failure, .. } => Some(format!(
                "✗ unusable tool call: {}",
                truncate(&esc(&failure.error), 300)
            )),
            AgentEvent::ModelOutput {
                output,
                duration_ms,
                ..
            } => Some(dim(format!(
                "  model: {} tokens in {duration_ms} ms, finish {:?}",
                output.usage.completion_tokens,
                output
                    .finish
                    .clone()
                    .unwrap_or(verity_runtime::model::Finish::Other("?".into()))
            ))),
            // The run then ends with this error, which `main` prints once.
            AgentEvent::Error { .. } => None,
            _ => None,
        };
        if let Some(line) = line {
            eprintln!("{line}");
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    let one_line = s.replace('\n', "⏎");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max).collect();
        format!("{cut}…")
    }
}
