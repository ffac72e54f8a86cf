//! Slash commands: the list (for `/help` and completion) and parsing.

use std::path::PathBuf;

/// A command as listed.
#[derive(Debug, Clone, Copy)]
pub struct CommandInfo {
    /// Name without the slash.
    pub name: &'static str,
    /// Argument synopsis.
    pub args: &'static str,
    /// What it does.
    pub help: &'static str,
}

/// Every command, in `/help` order.
pub const COMMANDS: &[CommandInfo] = &[
    CommandInfo {
        name: "help",
        args: "",
        help: "this list, and the keys",
    },
    CommandInfo {
        name: "tools",
        args: "",
        help: "the tools the model is offered",
    },
    CommandInfo {
        name: "policy",
        args: "[revoke ID]",
        help: "the policy, and the rules approved for this session",
    },
    CommandInfo {
        name: "model",
        args: "",
        help: "the model, engine, device and sampling",
    },
    CommandInfo {
        name: "mcp",
        args: "",
        help: "external MCP servers and their tools",
    },
    CommandInfo {
        name: "clear",
        args: "",
        help: "start a new conversation",
    },
    CommandInfo {
        name: "save",
        args: "[FILE]",
        help: "save the conversation (OpenAI messages JSON)",
    },
    CommandInfo {
        name: "reward",
        args: "",
        help: "score the last answer with the task's verifier",
    },
    CommandInfo {
        name: "quit",
        args: "",
        help: "leave (also Ctrl-D, or Ctrl-C twice)",
    },
];

/// Commands whose name starts with `prefix` (with or without the slash).
pub fn matching(prefix: &str) -> Vec<&'static CommandInfo> {
    let p = prefix.trim_start_matches('/');
    COMMANDS.iter().filter(|c| c.name.starts_with(p)).collect()
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/help`.
    Help,
    /// `/tools`.
    Tools,
    /// `/policy`.
    Policy,
    /// `/policy revoke ID`.
    Revoke(String),
    /// `/model`.
    Model,
    /// `/mcp`.
    Mcp,
    /// `/clear`.
    Clear,
    /// `/save [FILE]`.
    Save(Option<PathBuf>),
    /// `/reward`.
    Reward,
    /// `/quit`.
    Quit,
}

/// A slash command that cannot be run; the message says what was wrong and what exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadCommand(String);

/// Parses a line starting with `/`. The error says what was wrong and what exists.
pub fn parse(line: &str) -> Result<Command, BadCommand> {
    parse_line(line).map_err(BadCommand)
}

fn parse_line(line: &str) -> Result<Command, String> {
    let line = line.trim();
    let mut parts = line.trim_start_matches('/').split_whitespace();
    let name = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.collect();
    let no_args = |c: Command| {
        if rest.is_empty() {
            Ok(c)
        } else {
            Err(format!("/{name} takes no arguments"))
        }
    };
    match name {
        "help" | "?" => no_args(Command::Help),
        "tools" => no_args(Command::Tools),
        "policy" => match rest.as_slice() {
            [] => Ok(Command::Policy),
            ["revoke", id] => Ok(Command::Revoke((*id).to_owned())),
            _ => Err("usage: /policy, or /policy revoke ID".into()),
        },
        "model" => no_args(Command::Model),
        "mcp" => no_args(Command::Mcp),
        "clear" | "new" => no_args(Command::Clear),
        "save" => match rest.as_slice() {
            [] => Ok(Command::Save(None)),
            [f] => Ok(Command::Save(Some(PathBuf::from(f)))),
            _ => Err("usage: /save [FILE] (one path, no spaces)".into()),
        },
        "reward" => no_args(Command::Reward),
        "quit" | "exit" | "q" => no_args(Command::Quit),
        _ => {
            let names: Vec<String> = COMMANDS.iter().map(|c| format!("/{}", c.name)).collect();
            Err(format!(
                "unknown command /{name}; commands: {}",
                names.join(" ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!(
            parse("/save out.json"),
            Ok(Command::Save(Some("out.json".into())))
        );
        assert_eq!(
            parse("/policy revoke session-1"),
            Ok(Command::Revoke("session-1".into()))
        );
        assert!(parse("/tools x")
            .unwrap_err()
            .to_string()
            .contains("no arguments"));
        assert!(parse("/frobnicate")
            .unwrap_err()
            .to_string()
            .contains("/help"));
        assert_eq!(matching("/m").len(), 2);
    }
}
