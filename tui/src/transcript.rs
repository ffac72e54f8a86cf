//! What the chat pane shows: the conversation as entries (user text, assistant replies with
//! their reasoning, tool-call cards, notices), built from the agent's event stream.

use std::time::Instant;

use serde_json::Value;
use verity_runtime::{
    agent::{AgentEvent, StopReason},
    model::ModelOutput,
    Approval, FailureKind, GatedCall, Verdict,
};

/// One thing in the chat pane.
#[derive(Debug, Clone)]
pub enum Entry {
    /// What the person typed.
    User(String),
    /// One model call's visible reply.
    Assistant(Reply),
    /// A tool call.
    Tool(Box<ToolCard>),
    /// Something Verity says (command output, errors, run endings).
    Notice(Notice),
}

/// A model reply, streamed then replaced by the backend's parsed output.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// Turn of the run.
    pub turn: usize,
    /// Visible text.
    pub text: String,
    /// `<think>` reasoning.
    pub reasoning: String,
    /// Still streaming.
    pub streaming: bool,
    /// Raw streamed text (markup included) until the output arrives.
    raw: String,
}

/// Kind of notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// Neutral information.
    Info,
    /// A warning (something was skipped or refused).
    Warn,
    /// An error.
    Error,
}

/// Verity speaking.
#[derive(Debug, Clone)]
pub struct Notice {
    /// Kind.
    pub kind: NoticeKind,
    /// Text (markdown).
    pub text: String,
}

/// Where a tool call is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardStatus {
    /// Proposed, not yet decided.
    Proposed,
    /// The policy asked; waiting for the person.
    AwaitingApproval,
    /// Running.
    Running,
    /// Finished successfully.
    Ok,
    /// Ran and failed (`kind` in words).
    Error(String),
    /// Refused by the policy or the person.
    Denied,
    /// Hit its wall-clock limit.
    TimedOut,
    /// Cancelled with the turn.
    Cancelled,
}

/// A tool call as a card.
#[derive(Debug, Clone)]
pub struct ToolCard {
    /// Call id.
    pub call_id: String,
    /// Tool name.
    pub tool: String,
    /// Arguments.
    pub arguments: Value,
    /// Policy verdict, rule id and reason.
    pub decision: Option<(Verdict, String, String)>,
    /// Who approved or denied, when asked.
    pub approval: Option<Approval>,
    /// Status.
    pub status: CardStatus,
    /// When it started running (for the elapsed time).
    pub started: Instant,
    /// Result text.
    pub result: Option<String>,
    /// Tool time in ms.
    pub duration_ms: Option<f64>,
    /// The running tool's last progress report.
    pub progress: Option<CardProgress>,
}

/// A running tool's last progress report, as its card shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CardProgress {
    /// Work done so far.
    pub done: f64,
    /// Total work, when known.
    pub total: Option<f64>,
    /// A short status.
    pub message: Option<String>,
}

/// The chat pane's content.
#[derive(Debug, Default)]
pub struct Transcript {
    entries: Vec<Entry>,
    /// Bumped on every change: the render cache's key.
    revision: u64,
}

impl Transcript {
    /// The entries.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Changes whenever anything does.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Adds an entry.
    pub fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
        self.revision += 1;
    }

    /// Adds a notice.
    pub fn notice(&mut self, kind: NoticeKind, text: impl Into<String>) {
        self.push(Entry::Notice(Notice {
            kind,
            text: text.into(),
        }));
    }

    /// Empties the pane.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.revision += 1;
    }

    /// Marks every unfinished card of a cancelled turn.
    pub fn cancel_open_cards(&mut self) {
        for e in &mut self.entries {
            if let Entry::Tool(c) = e {
                if matches!(
                    c.status,
                    CardStatus::Proposed | CardStatus::AwaitingApproval | CardStatus::Running
                ) {
                    c.status = CardStatus::Cancelled;
                }
            }
            if let Entry::Assistant(r) = e {
                r.streaming = false;
            }
        }
        self.revision += 1;
    }

    /// Whether something on screen moves (a spinner, an elapsed time).
    pub fn animating(&self) -> bool {
        self.entries.iter().rev().take(16).any(|e| match e {
            Entry::Tool(c) => {
                matches!(c.status, CardStatus::Running | CardStatus::AwaitingApproval)
            }
            Entry::Assistant(r) => r.streaming,
            _ => false,
        })
    }

    fn card_mut(&mut self, call_id: &str) -> Option<&mut ToolCard> {
        self.entries.iter_mut().rev().find_map(|e| match e {
            Entry::Tool(c) if c.call_id == call_id => Some(&mut **c),
            _ => None,
        })
    }

    fn reply_mut(&mut self, turn: usize) -> Option<&mut Reply> {
        let open = matches!(self.entries.last(), Some(Entry::Assistant(r)) if r.turn == turn);
        if !open {
            self.entries.push(Entry::Assistant(Reply {
                turn,
                streaming: true,
                ..Reply::default()
            }));
        }
        match self.entries.last_mut() {
            Some(Entry::Assistant(r)) => Some(r),
            _ => None,
        }
    }

    /// Applies one agent event.
    pub fn apply(&mut self, event: &AgentEvent, now: Instant) {
        self.revision += 1;
        match event {
            AgentEvent::Token { turn, text } => {
                if let Some(r) = self.reply_mut(*turn) {
                    r.raw.push_str(text);
                    let (reasoning, visible) = split_stream(&r.raw);
                    r.reasoning = reasoning;
                    r.text = visible;
                }
            }
            AgentEvent::ModelOutput { turn, output, .. } => self.finish_reply(*turn, output),
            AgentEvent::ParseFailure { failure, .. } => self.notice(
                NoticeKind::Warn,
                format!(
                    "The model's tool call could not be used: {}. The error went back to the model.",
                    failure.error
                ),
            ),
            AgentEvent::ToolCallProposed { call, .. } => {
                self.entries.push(Entry::Tool(Box::new(ToolCard {
                    call_id: call.id.clone(),
                    tool: call.name.clone(),
                    arguments: call.arguments.clone(),
                    decision: None,
                    approval: None,
                    status: CardStatus::Proposed,
                    started: now,
                    result: None,
                    duration_ms: None,
                    progress: None,
                })));
            }
            AgentEvent::PolicyDecision {
                call_id,
                verdict,
                rule_id,
                reason,
            } => {
                if let Some(c) = self.card_mut(call_id) {
                    c.decision = Some((*verdict, rule_id.clone(), reason.clone()));
                }
            }
            AgentEvent::ApprovalRequested { call_id, .. } => {
                if let Some(c) = self.card_mut(call_id) {
                    c.status = CardStatus::AwaitingApproval;
                }
            }
            AgentEvent::ApprovalResolved { call_id, approval } => {
                if let Some(c) = self.card_mut(call_id) {
                    c.status = match approval {
                        Approval::Approved { .. } => CardStatus::Running,
                        Approval::Denied { .. } => CardStatus::Denied,
                    };
                    c.started = now;
                    c.approval = Some(approval.clone());
                }
            }
            AgentEvent::ToolStarted { call_id, .. } => {
                if let Some(c) = self.card_mut(call_id) {
                    c.status = CardStatus::Running;
                    c.started = now;
                }
            }
            AgentEvent::ToolProgress {
                call_id,
                progress,
                total,
                message,
            } => {
                if let Some(c) = self.card_mut(call_id) {
                    c.progress = Some(CardProgress {
                        done: *progress,
                        total: *total,
                        message: message.clone(),
                    });
                }
            }
            AgentEvent::ToolResult {
                call_id, result, ..
            } => {
                if let Some(c) = self.card_mut(call_id) {
                    apply_result(c, result);
                }
            }
            AgentEvent::Finished { stop, turns, .. } => {
                for e in &mut self.entries {
                    if let Entry::Assistant(r) = e {
                        r.streaming = false;
                    }
                }
                let why = match stop {
                    StopReason::Answer => None,
                    // Said as the CLI says it (`StopReason::explain`), with the turn count.
                    StopReason::Cancelled => Some("Turn cancelled.".to_owned()),
                    other => Some(format!(
                        "Stopped after {turns} model call{}: {}.",
                        if *turns == 1 { "" } else { "s" },
                        other.explain()
                    )),
                };
                if let Some(why) = why {
                    self.notice(NoticeKind::Warn, why);
                }
            }
            AgentEvent::Error { message } => {
                self.notice(NoticeKind::Error, format!("Model error: {message}"));
            }
            _ => {}
        }
    }

    fn finish_reply(&mut self, turn: usize, output: &ModelOutput) {
        let empty = output.text.trim().is_empty()
            && output
                .reasoning
                .as_deref()
                .is_none_or(|r| r.trim().is_empty());
        if empty {
            // A reply that only called tools: the cards say it all.
            if matches!(self.entries.last(), Some(Entry::Assistant(r)) if r.turn == turn) {
                self.entries.pop();
            }
            return;
        }
        if let Some(r) = self.reply_mut(turn) {
            r.text = output.text.trim().to_owned();
            r.reasoning = output
                .reasoning
                .clone()
                .unwrap_or_default()
                .trim()
                .to_owned();
            r.streaming = false;
            r.raw.clear();
        }
    }
}

fn apply_result(c: &mut ToolCard, result: &GatedCall) {
    c.duration_ms = Some(result.duration.as_secs_f64() * 1000.0);
    c.result = Some(result.outcome.text.clone());
    if c.decision.is_none() {
        let d = &result.decision;
        c.decision = Some((d.verdict, d.rule_id.clone(), d.reason.clone()));
    }
    c.status = match result.outcome.failure {
        None => CardStatus::Ok,
        Some(FailureKind::Denied) => CardStatus::Denied,
        Some(FailureKind::Timeout) => CardStatus::TimedOut,
        Some(FailureKind::Cancelled) => CardStatus::Cancelled,
        Some(k) => CardStatus::Error(k.as_str().replace('_', " ")),
    };
}

/// Splits streamed raw text into reasoning and visible text, hiding tool-call markup (the
/// parsed calls arrive as cards).
fn split_stream(raw: &str) -> (String, String) {
    let (reasoning, rest) = match raw.find("<think>") {
        Some(start) => {
            let after = &raw[start + "<think>".len()..];
            match after.find("</think>") {
                Some(end) => (
                    after[..end].trim().to_owned(),
                    format!("{}{}", &raw[..start], &after[end + "</think>".len()..]),
                ),
                None => (after.trim().to_owned(), raw[..start].to_owned()),
            }
        }
        None => (String::new(), raw.to_owned()),
    };
    let visible = match rest.find("<tool_call>") {
        Some(i) => rest[..i].to_owned(),
        None => rest,
    };
    (reasoning, visible.trim_start().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_split_hides_reasoning_and_call_markup() {
        assert_eq!(
            split_stream("<think>hmm</think>Hi <tool_call>{\"name\""),
            ("hmm".into(), "Hi ".into())
        );
        assert_eq!(
            split_stream("<think>still"),
            ("still".into(), String::new())
        );
    }
}
