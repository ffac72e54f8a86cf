//! `verity policy check|explain`.

use std::{io::Write, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use verity_policies::{Caller, Policy, Request};
use verity_tools::ToolRegistry;

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate a policy (file or preset) and run its inline [[test]] examples.
    Check {
        /// Policy file or preset name.
        policy: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show the decision for one call, the rule that made it, the rules that lost, and
    /// the limits applied.
    Explain {
        /// Policy file or preset name.
        policy: String,
        /// Tool name as a caller would write it.
        #[arg(long)]
        tool: String,
        /// Arguments as a JSON object.
        #[arg(long, default_value = "{}")]
        args: String,
        /// Caller: cli, tui, rollout, mcp-client:NAME, ...
        #[arg(long, default_value = "cli")]
        caller: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: PolicyArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PolicyCommand::Check { policy, json } => check(&policy, json),
        PolicyCommand::Explain {
            policy,
            tool,
            args,
            caller,
            json,
        } => explain(&policy, &tool, &args, &caller, json),
    }
}

fn check(name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let policy = match Policy::load(name) {
        Ok(p) => p,
        Err(e) => {
            if json {
                println!("{}", json!({"valid": false, "error": e.to_string()}));
            } else {
                eprintln!("verity: invalid policy: {e}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    let outcomes = policy.run_tests();
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    let mut out = std::io::stdout().lock();
    if json {
        let v = json!({
            "valid": true,
            "name": policy.name,
            "rules": policy.rule_count(),
            "default": policy.default_verdict(),
            "tests": outcomes,
            "passed": outcomes.len() - failed,
            "failed": failed,
        });
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{}: valid policy '{}' ({} rules, default {})",
            policy.source,
            policy.name,
            policy.rule_count(),
            policy.default_verdict()
        )?;
        for o in &outcomes {
            let label = o
                .case
                .name
                .clone()
                .unwrap_or_else(|| format!("{} {}", o.case.tool, o.case.args));
            if o.passed {
                writeln!(
                    out,
                    "  ok    line {:>3}  {label} → {} ({})",
                    o.case.line, o.got, o.got_rule
                )?;
            } else {
                writeln!(
                    out,
                    "  FAIL  line {:>3}  {label}: expected {}{}, got {} ({})",
                    o.case.line,
                    o.case.expect,
                    o.case
                        .rule
                        .as_ref()
                        .map(|r| format!(" by '{r}'"))
                        .unwrap_or_default(),
                    o.got,
                    o.got_rule
                )?;
            }
        }
        writeln!(out, "{} passed, {failed} failed", outcomes.len() - failed)?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn explain(
    name: &str,
    tool: &str,
    raw: &str,
    caller: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let policy = Policy::load(name)?;
    let args: Value = serde_json::from_str(raw)
        .with_context(|| format!("--args must be a JSON object; got {raw:?}"))?;
    let caller: Caller = caller.parse()?;
    // Built-in tools carry their annotations; anything else is judged as unknown.
    let registry = ToolRegistry::with_builtins();
    let annotations = verity_policies::normalize_tool_name(tool)
        .ok()
        .and_then(|n| registry.get(&n).map(|t| t.spec().annotations));
    let mut req = Request::new(&caller, tool, &args);
    req.annotations = annotations;
    let d = policy.decide(&req);
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &d)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "decision: {}", d.verdict)?;
    writeln!(out, "rule:     {}", d.rule_id)?;
    writeln!(out, "reason:   {}", d.reason)?;
    writeln!(out, "tool:     {} (normalised)", d.tool)?;
    writeln!(out, "caller:   {caller}")?;
    if d.matched.is_empty() {
        writeln!(out, "matched:  no rule (default applies)")?;
    } else {
        writeln!(out, "matched:")?;
        for m in &d.matched {
            let mark = if m.rule_id == d.rule_id {
                "wins"
            } else {
                "lost"
            };
            writeln!(
                out,
                "  {:<5} {} ({}, line {})",
                mark, m.rule_id, m.verdict, m.line
            )?;
        }
    }
    if d.limits.is_empty() {
        writeln!(out, "limits:   none beyond the tool's own")?;
    } else {
        writeln!(out, "limits:   {}", serde_json::to_string(&d.limits)?)?;
    }
    Ok(ExitCode::SUCCESS)
}
