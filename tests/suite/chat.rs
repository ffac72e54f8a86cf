//! `verity chat` end to end under tmux: the real binary in a real pseudo-terminal with the
//! generated tiny model (real mistral.rs, strict decoding), driven by `tmux send-keys` and
//! checked with `tmux capture-pane`. tmux comes from `scripts/install-test-deps.sh`.
//!
//! The tiny model's prose is nonsense, so the assertions are about the screen's structure:
//! the tool card, the policy rule, the approval card, the cancelled turn, the commands.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use super::common::{stderr, tiny_model, verity, write_file};

/// One tmux server on a private socket, one session running one command.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn start(dir: &Path, command: &str) -> Tmux {
        let socket = dir.join("tmux.sock");
        let t = Tmux { socket };
        // The pane keeps the exit status on screen after the program ends.
        let script = format!("{command}; echo \"EXIT=$?\"; sleep 600");
        let out = t
            .tmux()
            .args([
                "new-session",
                "-d",
                "-s",
                "chat",
                "-x",
                "110",
                "-y",
                "40",
                &script,
            ])
            .output()
            .expect("tmux must be installed (scripts/install-test-deps.sh installs it)");
        assert!(out.status.success(), "tmux: {}", stderr(&out));
        t
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket).arg("-f").arg("/dev/null");
        c
    }

    /// Types text literally.
    fn type_text(&self, text: &str) {
        let ok = self
            .tmux()
            .args(["send-keys", "-t", "chat", "-l", text])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Sends key names (`Enter`, `C-c`, `y`).
    fn keys(&self, keys: &[&str]) {
        let ok = self
            .tmux()
            .args(["send-keys", "-t", "chat"])
            .args(keys)
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn capture(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "chat"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows every one of `needles`; returns the screen.
    fn wait_for(&self, needles: &[&str], timeout_s: u64) -> String {
        self.wait_until(needles, true, timeout_s)
    }

    /// Waits until the screen shows any of `needles`.
    fn wait_for_any(&self, needles: &[&str], timeout_s: u64) -> String {
        self.wait_until(needles, false, timeout_s)
    }

    fn wait_until(&self, needles: &[&str], all: bool, timeout_s: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(timeout_s);
        loop {
            let screen = self.capture();
            let found = |n: &&str| screen.contains(*n);
            if (all && needles.iter().all(found)) || (!all && needles.iter().any(found)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout_s} s waiting for {} of {needles:?}; screen:\n{screen}",
                if all { "all" } else { "one" }
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").output();
    }
}

fn chat_command(dir: &Path, model: &Path, extra: &str) -> String {
    // An empty config keeps the developer's own ~/.config/verity out of the test.
    let config = write_file(dir, "config.toml", "");
    format!(
        "{} chat --config {} --model {} --strict --max-turns 2 --max-tokens-per-call 128 --policy strict {extra}",
        verity().display(),
        config.display(),
        model.display(),
    )
}

const IDLE: &str = "Enter send";
const TURN_ENDED: [&str; 2] = ["cut at the per-call token limit", "turn budget ran out"];

/// Calculator, chatting on a task: the task's prompt is pre-filled; the call is allowed by
/// the strict preset's `calculator` rule and shown as a card with the rule; the turn
/// finishes and is recorded; `/reward` scores it with the task's verifier; `/tools` lists
/// the tools; `/quit` restores the terminal and exits 0.
#[test]
fn chat_calculator_card_tools_and_quit() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let record = dir.path().join("chat.jsonl");
    let tasks = write_file(
        dir.path(),
        "tasks.jsonl",
        r#"{"id": "t1", "prompt": "What is 12*(3+4)?", "ground_truth": "84", "verifier": {"type": "math"}}"#,
    );
    let cmd = chat_command(
        dir.path(),
        &model,
        &format!(
            "--tool-choice calculator --record {} --task {}",
            record.display(),
            tasks.display()
        ),
    );
    let tmux = Tmux::start(dir.path(), &cmd);
    let screen = tmux.wait_for(&[IDLE, "policy strict", "● rec"], 120);
    assert!(
        screen.contains("tiny") && screen.contains("cpu"),
        "{screen}"
    );

    // The task's prompt waits in the input box.
    tmux.wait_for(&["What is 12*(3+4)?"], 10);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for(
        &["› What is 12*(3+4)?", "╭─ calculator", "rule calculator"],
        120,
    );
    assert!(!screen.contains("awaiting approval"), "{screen}");
    // Finished and recorded.
    tmux.wait_for(&[".jsonl (1)", IDLE], 180);
    tmux.wait_for_any(&TURN_ENDED, 5);

    tmux.type_text("/reward");
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["Reward for task t1: 0", "failed", "verifier math"], 30);

    tmux.type_text("/tools");
    tmux.keys(&["Enter"]);
    tmux.wait_for(
        &["tools offered to the model", "calculator —", "code —"],
        30,
    );

    tmux.type_text("/quit");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for(&["EXIT=0"], 30);
    // Back on the normal screen: the chat is gone.
    assert!(!screen.contains("policy strict"), "{screen}");

    let out = Command::new(verity())
        .arg("verify")
        .arg(&record)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&record).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let rec: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(rec["tool_calls"][0]["name"], "calculator", "{rec}");
    assert!(rec["task"]["chat"]["session"].is_string(), "{rec}");
    assert_eq!(rec["task"]["task"]["id"], "t1", "{rec}");
}

/// Code under the strict preset asks: the approval card shows the arguments and rule; `y`
/// approves once; `s` approves and adds a session rule, which `/policy` lists and
/// `/policy revoke` removes; the next ask is cancelled with Ctrl-C (the pending call is
/// refused, the turn ends); `/save` writes the conversation; `/quit` exits.
#[test]
fn chat_approval_session_rule_and_ctrl_c_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let cmd = chat_command(dir.path(), &model, "--tool-choice code");
    let tmux = Tmux::start(dir.path(), &cmd);
    tmux.wait_for(&[IDLE, "policy strict", "rec off"], 120);

    tmux.type_text("Compute 2+2 in Python");
    tmux.keys(&["Enter"]);
    tmux.wait_for(
        &[
            "approve  run code?",
            "rule code-limits",
            "y allow once",
            "awaiting approval",
        ],
        120,
    );
    tmux.keys(&["y"]);
    tmux.wait_for(&["approved by user"], 60);
    tmux.wait_for_any(&TURN_ENDED, 180);
    tmux.wait_for(&[IDLE], 30);

    tmux.type_text("And 3+3?");
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["approve  run code?"], 120);
    tmux.keys(&["s"]);
    tmux.wait_for(
        &[
            "Session rule session-1 added",
            "approved by user (session-1)",
        ],
        60,
    );
    tmux.wait_for(&[IDLE], 180);
    tmux.type_text("/policy");
    tmux.keys(&["Enter"]);
    tmux.wait_for(
        &["session-1: allow code", "/policy revoke ID removes one"],
        30,
    );
    tmux.type_text("/policy revoke session-1");
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["Revoked session-1: code asks again."], 30);

    tmux.type_text("Again, please");
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["approve  run code?"], 120);
    tmux.keys(&["C-c"]);
    let screen = tmux.wait_for(&["Turn cancelled.", "the turn was cancelled"], 60);
    assert!(!screen.contains("approve  run code?"), "{screen}");

    let saved = dir.path().join("conversation.json");
    tmux.type_text(&format!("/save {}", saved.display()));
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["Saved"], 30);
    let conv: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let roles: Vec<&str> = conv["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert!(
        roles.iter().filter(|r| **r == "user").count() >= 3,
        "{roles:?}"
    );
    assert!(roles.contains(&"tool"), "{roles:?}");

    tmux.type_text("/quit");
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["EXIT=0"], 30);
}

/// Not a terminal: a clear error instead of a broken screen.
#[test]
fn chat_without_a_terminal_says_so() {
    let out = Command::new(verity())
        .args(["chat", "--model", "tiny"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("needs a terminal"),
        "{}",
        stderr(&out)
    );
}
