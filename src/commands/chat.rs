//! `verity chat`: the terminal UI (crate `verity-tui`) with the same model, policy, MCP and
//! budget options as `verity run`, plus `--record` and an optional task to chat on.

use std::{path::PathBuf, process::ExitCode};

use clap::Args;
use verity_policies::{Caller, CallerKind, Policy};
use verity_tui::{ChatOptions, ChatTask, Loaded};

use super::agent_opts::AgentOpts;

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Append every turn as a `verity.traj/1` record to this JSONL file (hash-chained).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Sign every record with this key (`verity key new`; `verify --key` checks).
    #[arg(long, requires = "record")]
    sign: Option<PathBuf>,
    /// Chat on a task from a rollout task file: its prompt waits in the input box and
    /// `/reward` scores answers with its verifier.
    #[arg(long)]
    task: Option<PathBuf>,
    /// Which task of --task (default: the first).
    #[arg(long, requires = "task")]
    task_id: Option<String>,
    #[command(flatten)]
    opts: AgentOpts,
}

pub fn run(args: ChatArgs) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    anyhow::ensure!(
        std::io::stdout().is_terminal() && std::io::stdin().is_terminal(),
        "verity chat needs a terminal; for scripts use `verity run` (same options)"
    );
    let resolved = args.opts.resolve(Caller::new(CallerKind::Tui, ""))?;
    let task = match &args.task {
        Some(path) => Some(load_task(path, args.task_id.as_deref())?),
        None => None,
    };
    let policy = Policy::load(&resolved.policy)
        .map_err(|e| anyhow::anyhow!("--policy {}: {e}", resolved.policy))?;
    let policy_text = format!(
        "Policy `{}`{} — from `{}`, {} rules, unmatched calls: {} (digest {}).\n\n`verity policy explain {} --tool TOOL --args 'JSON' --caller tui` shows why a call gets its decision.",
        policy.name,
        policy
            .description
            .as_deref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default(),
        policy.source,
        policy.rule_count(),
        format!("{:?}", policy.default_verdict()).to_lowercase(),
        &policy.digest[..12.min(policy.digest.len())],
        resolved.policy,
    );
    // Fail before the screen switches on what can be checked now.
    resolved.policy_engine()?;
    let options = ChatOptions {
        agent: resolved.agent.clone(),
        system: resolved.system.clone(),
        record: args.record.clone(),
        signer: match args
            .sign
            .as_ref()
            .or(resolved.sign.as_ref())
            .filter(|_| args.record.is_some())
        {
            Some(k) => Some(std::sync::Arc::new(
                verity_runtime::trajectory::sign::Signer::load(k)
                    .map_err(|e| anyhow::anyhow!("--sign {}: {e}", k.display()))?,
            )),
            None => None,
        },
        policy: resolved.policy.clone(),
        policy_text,
        model: resolved.model.clone(),
        auto_approve: resolved.yes,
        task,
    };
    let rt = super::runtime()?;
    rt.block_on(async move {
        let loader = Box::pin(async move {
            let model = resolved
                .load_backend(false, false)
                .await
                .map_err(|e| format!("{e:#}"))?;
            let (gate, hub) = resolved.gate().await.map_err(|e| format!("{e:#}"))?;
            Ok(Loaded { model, gate, hub })
        });
        verity_tui::run_chat(options, loader).await
    })?;
    Ok(ExitCode::SUCCESS)
}

fn load_task(path: &std::path::Path, id: Option<&str>) -> anyhow::Result<ChatTask> {
    let verity_runtime::rollout::LoadedTask { task, raw } =
        verity_runtime::rollout::load_task(path, id)?;
    Ok(ChatTask {
        id: task.id.clone(),
        messages: task.messages(None),
        ground_truth: task.ground_truth.clone(),
        verifier: task.verifier.clone(),
        raw,
    })
}
