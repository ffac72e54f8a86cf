//! `verity`: the command line. Parses flags and hands off to the crates; no logic here.

mod commands;
mod term;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Local agent runtime: sandboxed, policy-gated tools for open-weight models, served over
/// MCP.
#[derive(Debug, Parser)]
#[command(name = "verity", version, about, propagate_version = true)]
struct Cli {
    /// Log filter for stderr (e.g. `info`, `verity_runtime=debug`); also RUST_LOG.
    #[arg(long, global = true, env = "VERITY_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install the Python sandbox runtime (from PyPI) and precompile it.
    Setup(commands::setup::SetupArgs),
    /// List or call tools directly (the permission policy applies; caller = cli).
    Tools(commands::tools::ToolsArgs),
    /// Build, list and remove local search indexes.
    Index(commands::index::IndexArgs),
    /// Serve the tools to MCP clients over stdio (default) or streamable HTTP.
    Serve(commands::serve::ServeArgs),
    /// Validate policies and explain decisions.
    Policy(commands::policy::PolicyArgs),
    /// Chat with the agent in a terminal UI: tool cards, inline approvals, recording.
    Chat(Box<commands::chat::ChatArgs>),
    /// Run the agent on one prompt: model → policy-gated tools → answer.
    Run(Box<commands::run::RunArgs>),
    /// Manage models (generate the tiny test model).
    Model(commands::model::ModelArgs),
    /// Sample G runs per task, verify them, record trajectories and group statistics.
    Rollout(Box<commands::rollout::RolloutArgs>),
    /// Export trajectories for trainers (OpenAI messages, TRL conversational or token level).
    Export(commands::export::ExportArgs),
    /// Fine-tune tiny models on Verity's own data: SFT, GRPO, and a forward-pass check.
    #[command(subcommand)]
    Train(commands::train::TrainCommand),
    /// Check trajectory files: hash chain intact, first bad record named.
    Verify(commands::verify::VerifyArgs),
    /// Score an answer against a ground truth with any verifier (as rollouts score).
    Score(commands::score::ScoreArgs),
    /// Make a key for signing trajectory records (`--sign`; `verify --key`).
    Key(commands::key::KeyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Under the TUI, stderr is the screen: logs go to a file instead.
    let log_file = matches!(cli.command, Command::Chat(_)).then(chat_log_path);
    init_logging(&cli.log, log_file.as_deref());
    let result = match cli.command {
        Command::Setup(args) => commands::setup::run(args),
        Command::Tools(args) => commands::tools::run(args),
        Command::Index(args) => commands::index::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Policy(args) => commands::policy::run(args),
        Command::Chat(args) => commands::chat::run(*args),
        Command::Run(args) => commands::run::run(*args),
        Command::Model(args) => commands::model::run(args),
        Command::Verify(args) => commands::verify::run(args),
        Command::Rollout(args) => commands::rollout::run(*args),
        Command::Export(args) => commands::export::run(args),
        Command::Score(args) => commands::score::run(args),
        Command::Key(args) => commands::key::run(args),
        Command::Train(cmd) => commands::train::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("verity: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(filter: &str, file: Option<&std::path::Path>) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_owned());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_target(false);
    let opened = file.and_then(|p| {
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    let _ = match opened {
        Some(f) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .try_init(),
        // stderr only: in `serve --stdio`, stdout is the protocol.
        None if file.is_some() => builder.with_writer(std::io::sink).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}

/// Where `verity chat` logs (`$VERITY_DATA_DIR/logs/chat.log`).
fn chat_log_path() -> std::path::PathBuf {
    verity_runtime::model::data_dir()
        .join("logs")
        .join("chat.log")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// clap's own consistency checks over the whole command tree, and every command's
    /// help rendered (a bad definition panics here, not in a user's terminal).
    #[test]
    fn the_command_tree_is_consistent_and_every_help_renders() {
        let mut cli = Cli::command();
        cli.build();
        cli.clone().debug_assert();
        fn walk(cmd: &mut clap::Command, count: &mut usize) {
            let help = cmd.render_long_help().to_string();
            assert!(help.contains("Usage"), "{}", cmd.get_name());
            *count += 1;
            for sub in cmd.get_subcommands_mut() {
                walk(sub, count);
            }
        }
        let mut count = 0;
        walk(&mut cli, &mut count);
        assert!(count > 11, "{count} commands");
    }
}
