//! The application state and what keys, mouse and agent events do to it. Pure: no terminal,
//! no tasks. What needs the outside world (start a turn, cancel, save, score, quit) comes
//! back as an [`Effect`] for the session loop to carry out, which keeps every screen state
//! reachable from tests.

use std::{path::PathBuf, time::Instant};

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind};
use ratatui::{
    layout::{Constraint, Layout},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Clear, Paragraph, Wrap},
    Frame,
};
use verity_runtime::{agent::AgentEvent, model::ToolDef};

use crate::{
    approver::{PendingApproval, SessionRules},
    commands::{self, Command, COMMANDS},
    components::{
        approval::{Answered, ApprovalPanel},
        chat::{ChatView, Toggles},
        input::{Editor, InputOutcome},
        status::StatusInfo,
        tool_card::spinner,
    },
    transcript::{Entry, NoticeKind, Transcript},
};

/// Smallest usable terminal.
pub const MIN_WIDTH: u16 = 40;
/// Smallest usable terminal.
pub const MIN_HEIGHT: u16 = 10;

/// Where the session is.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// The model is loading.
    Loading {
        /// Since when.
        since: Instant,
    },
    /// Loading failed; only commands work.
    LoadFailed,
    /// Waiting for the person.
    Idle,
    /// A turn runs.
    Running {
        /// Since when.
        since: Instant,
    },
}

/// Something the session loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Start a turn with this user message.
    Submit(String),
    /// Cancel the running turn (model call and tool calls).
    Cancel,
    /// Start a new conversation.
    Clear,
    /// Save the conversation.
    Save(Option<PathBuf>),
    /// Score the last answer with the task's verifier.
    Reward,
    /// Leave.
    Quit,
}

/// Facts for `/tools`, `/policy`, `/model`.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    /// Tools offered.
    pub tools: Vec<ToolDef>,
    /// `/policy` text (markdown).
    pub policy: String,
    /// `/model` text (markdown).
    pub model: String,
    /// Whether a task (and so `/reward`) is loaded.
    pub task: bool,
}

/// The whole UI state.
#[derive(Debug)]
pub struct App {
    /// The chat pane's content.
    pub transcript: Transcript,
    chat: ChatView,
    /// The input box.
    pub input: Editor,
    /// Pending approvals.
    pub approvals: ApprovalPanel,
    /// The status line.
    pub status: StatusInfo,
    /// Where the session is.
    pub phase: Phase,
    /// Facts for the info commands.
    pub info: SessionInfo,
    /// Session approval rules (shared with the approver).
    pub rules: SessionRules,
    toggles: Toggles,
    last_ctrl_c: Option<Instant>,
    hint: Option<String>,
    /// Animation origin.
    epoch: Instant,
    /// The streaming model call: when it started and pieces received (live tok/s).
    stream: Option<(Instant, u64)>,
}

impl App {
    /// A fresh UI, loading.
    pub fn new(status: StatusInfo, rules: SessionRules, now: Instant) -> Self {
        Self {
            transcript: Transcript::default(),
            chat: ChatView::default(),
            input: Editor::default(),
            approvals: ApprovalPanel::default(),
            status,
            phase: Phase::Loading { since: now },
            info: SessionInfo::default(),
            rules,
            toggles: Toggles::default(),
            last_ctrl_c: None,
            hint: None,
            epoch: now,
            stream: None,
        }
    }

    /// Whether the screen changes by itself (spinners, elapsed times).
    pub fn animating(&self) -> bool {
        matches!(self.phase, Phase::Loading { .. } | Phase::Running { .. })
            || self.transcript.animating()
    }

    /// The running turn ended (answer, budget, cancel or error).
    pub fn turn_finished(&mut self) {
        self.phase = Phase::Idle;
        self.hint = None;
        self.approvals.cancel_all();
        self.transcript.cancel_open_cards();
    }

    /// A pending approval arrived.
    pub fn on_approval(&mut self, p: PendingApproval) {
        self.approvals.push(p);
        self.chat.to_bottom();
    }

    /// An agent event arrived.
    pub fn on_agent(&mut self, event: &AgentEvent, now: Instant) {
        match event {
            AgentEvent::TurnStarted { .. } => self.stream = Some((now, 0)),
            AgentEvent::Token { .. } => {
                // Live speed while streaming (a piece is a token for the embedded engine,
                // a chunk for HTTP backends); the model output below sets the exact one.
                if let Some((since, n)) = &mut self.stream {
                    *n += 1;
                    let secs = now.saturating_duration_since(*since).as_secs_f64();
                    if secs > 0.25 {
                        self.status.tokens_per_s = Some(*n as f64 / secs);
                    }
                }
            }
            _ => {}
        }
        if let AgentEvent::ModelOutput {
            output,
            duration_ms,
            ..
        } = event
        {
            if *duration_ms > 0 && output.usage.completion_tokens > 0 {
                self.status.tokens_per_s =
                    Some(output.usage.completion_tokens as f64 * 1000.0 / *duration_ms as f64);
            }
            self.status.context_used =
                Some(output.usage.prompt_tokens + output.usage.completion_tokens);
        }
        self.transcript.apply(event, now);
    }

    /// Handles terminal input.
    pub fn on_terminal(&mut self, event: Event, now: Instant) -> Option<Effect> {
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.on_key(key, now),
            Event::Mouse(m) => {
                match m.kind {
                    MouseEventKind::ScrollUp => self.chat.scroll_by(3),
                    MouseEventKind::ScrollDown => self.chat.scroll_by(-3),
                    _ => {}
                }
                None
            }
            Event::Paste(text) => {
                if !self.approvals.is_active() {
                    self.input.insert(&text);
                }
                None
            }
            _ => None,
        }
    }

    fn on_key(&mut self, key: KeyEvent, now: Instant) -> Option<Effect> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        self.hint = None;
        if ctrl && key.code == KeyCode::Char('c') {
            return self.on_ctrl_c(now);
        }
        self.last_ctrl_c = None;
        match key.code {
            KeyCode::Char('d') if ctrl && self.input.is_empty() => return Some(Effect::Quit),
            KeyCode::Char('t') if ctrl => {
                self.toggles.reasoning = !self.toggles.reasoning;
                return None;
            }
            KeyCode::Char('o') if ctrl => {
                self.toggles.cards = !self.toggles.cards;
                return None;
            }
            KeyCode::PageUp => {
                self.chat.page(true);
                return None;
            }
            KeyCode::PageDown => {
                self.chat.page(false);
                return None;
            }
            KeyCode::End if ctrl => {
                self.chat.to_bottom();
                return None;
            }
            KeyCode::Up if key.modifiers.contains(KeyModifiers::SHIFT) => {
                self.chat.scroll_by(1);
                return None;
            }
            KeyCode::Down if key.modifiers.contains(KeyModifiers::SHIFT) => {
                self.chat.scroll_by(-1);
                return None;
            }
            _ => {}
        }
        if self.approvals.is_active() {
            if let Some(Answered::Session(rule)) = self.approvals.handle_key(key, &self.rules) {
                self.transcript.notice(
                    NoticeKind::Info,
                    format!(
                        "Session rule `{}` added: `{}` runs without asking for the rest of this session. `/policy revoke {}` removes it.",
                        rule.id, rule.tool, rule.id
                    ),
                );
            }
            return None;
        }
        match self.input.handle_key(key) {
            InputOutcome::Submit(text) => self.submit(text),
            InputOutcome::Edited | InputOutcome::Ignored => None,
        }
    }

    fn on_ctrl_c(&mut self, now: Instant) -> Option<Effect> {
        if matches!(self.phase, Phase::Running { .. }) || self.approvals.is_active() {
            self.approvals.cancel_all();
            self.last_ctrl_c = Some(now);
            self.hint = Some("cancelling… (Ctrl-C again quits)".into());
            return Some(Effect::Cancel);
        }
        if !self.input.is_empty() {
            self.input.set_text("");
            return None;
        }
        if self
            .last_ctrl_c
            .is_some_and(|t| now.saturating_duration_since(t).as_secs_f64() < 2.0)
        {
            return Some(Effect::Quit);
        }
        self.last_ctrl_c = Some(now);
        self.hint = Some("press Ctrl-C again to quit".into());
        None
    }

    fn submit(&mut self, text: String) -> Option<Effect> {
        self.chat.to_bottom();
        if text.trim_start().starts_with('/') {
            return match commands::parse(&text) {
                Ok(c) => self.command(c),
                Err(e) => {
                    self.transcript.notice(NoticeKind::Error, e.to_string());
                    None
                }
            };
        }
        match self.phase {
            Phase::Idle => {
                self.transcript.push(Entry::User(text.clone()));
                Some(Effect::Submit(text))
            }
            Phase::Running { .. } => {
                self.input.set_text(&text);
                self.hint = Some("a turn is running: wait, or Ctrl-C cancels it".into());
                None
            }
            Phase::Loading { .. } => {
                self.input.set_text(&text);
                self.hint = Some("the model is still loading".into());
                None
            }
            Phase::LoadFailed => {
                self.transcript.notice(
                    NoticeKind::Error,
                    "No model is loaded (see the error above); /quit and start again.",
                );
                None
            }
        }
    }

    fn command(&mut self, c: Command) -> Option<Effect> {
        let text = match c {
            Command::Help => help_text(),
            Command::Tools => tools_text(&self.info.tools),
            Command::Policy => {
                let mut s = self.info.policy.clone();
                let rules = self.rules.list();
                if rules.is_empty() {
                    s.push_str("\n\nNo session rules (answer `s` on an approval card to add one).");
                } else {
                    s.push_str("\n\nSession rules (ask → allow for the rest of this session):");
                    for r in rules {
                        s.push_str(&format!("\n- `{}`: allow `{}`", r.id, r.tool));
                    }
                    s.push_str("\n\n`/policy revoke ID` removes one.");
                }
                s
            }
            Command::Revoke(id) => match self.rules.revoke(&id) {
                Some(r) => format!("Revoked `{}`: `{}` asks again.", r.id, r.tool),
                None => {
                    let ids: Vec<String> = self.rules.list().into_iter().map(|r| r.id).collect();
                    self.transcript.notice(
                        NoticeKind::Error,
                        format!(
                            "No session rule `{id}`; there are: {}",
                            if ids.is_empty() { "none".into() } else { ids.join(", ") }
                        ),
                    );
                    return None;
                }
            },
            Command::Model => self.info.model.clone(),
            Command::Mcp => mcp_text(&self.status),
            Command::Reward if !self.info.task => {
                "No task: start with `verity chat --task TASKS.jsonl [--task-id ID]` to chat on a task and score answers with its verifier.".into()
            }
            Command::Clear => return Some(Effect::Clear),
            Command::Save(p) => return Some(Effect::Save(p)),
            Command::Reward => return Some(Effect::Reward),
            Command::Quit => return Some(Effect::Quit),
        };
        self.transcript.notice(NoticeKind::Info, text);
        None
    }

    /// Draws everything.
    pub fn draw(&mut self, frame: &mut Frame<'_>, now: Instant) {
        let area = frame.area();
        if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
            let msg = format!(
                "Terminal too small ({}×{}). Verity needs at least {MIN_WIDTH}×{MIN_HEIGHT}.",
                area.width, area.height
            );
            frame.render_widget(
                Paragraph::new(msg)
                    .style(Style::new().fg(Color::Yellow))
                    .wrap(Wrap { trim: true }),
                area,
            );
            return;
        }
        let bottom_h = if self.approvals.is_active() {
            self.approvals.height(area.width)
        } else {
            self.input.height(area.width)
        };
        let popup = self.completion_rows();
        let [chat, popup_area, bottom, status] = Layout::vertical([
            Constraint::Min(1),
            Constraint::Length(popup.len() as u16),
            Constraint::Length(bottom_h.min(area.height / 2)),
            Constraint::Length(1),
        ])
        .areas(area);
        let placeholder = self.placeholder(now);
        self.chat.draw(
            frame,
            chat,
            &self.transcript,
            self.toggles,
            now,
            self.epoch,
            placeholder,
        );
        if !popup.is_empty() {
            frame.render_widget(Clear, popup_area);
            frame.render_widget(Paragraph::new(popup), popup_area);
        }
        if self.approvals.is_active() {
            self.approvals.draw(frame, bottom);
        } else {
            let title = self.input_title(now);
            self.input.draw(frame, bottom, title, true);
        }
        self.status.draw(frame, status);
    }

    fn completion_rows(&self) -> Vec<Line<'static>> {
        if self.approvals.is_active() {
            return Vec::new();
        }
        let Some(prefix) = self.input.command_prefix() else {
            return Vec::new();
        };
        commands::matching(&prefix)
            .into_iter()
            .map(|c| {
                Line::from(vec![
                    Span::styled(
                        format!("  /{:<8}", c.name),
                        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
                    ),
                    Span::styled(format!("{:<12}", c.args), Style::new().fg(Color::DarkGray)),
                    Span::raw(c.help),
                ])
            })
            .collect()
    }

    fn input_title(&self, now: Instant) -> Line<'static> {
        let dim = Style::new().fg(Color::DarkGray);
        if let Some(h) = &self.hint {
            return Line::styled(format!(" {h} "), Style::new().fg(Color::Yellow));
        }
        match &self.phase {
            Phase::Loading { since } => {
                let el = now.saturating_duration_since(*since);
                Line::styled(
                    format!(
                        " {} loading the model… {:.1}s ",
                        spinner(el.as_millis()),
                        el.as_secs_f64()
                    ),
                    Style::new().fg(Color::Cyan),
                )
            }
            Phase::Running { since } => {
                let el = now.saturating_duration_since(*since);
                Line::from(vec![
                    Span::styled(
                        format!(
                            " {} working {:.1}s",
                            spinner(el.as_millis()),
                            el.as_secs_f64()
                        ),
                        Style::new().fg(Color::Cyan),
                    ),
                    Span::styled(" · Ctrl-C cancels ", dim),
                ])
            }
            Phase::Idle | Phase::LoadFailed => Line::styled(
                " Enter send · Alt-Enter newline · Tab completes /commands · PgUp/PgDn scroll ",
                dim,
            ),
        }
    }

    fn placeholder(&self, now: Instant) -> Vec<Line<'static>> {
        let mut lines = vec![
            Line::styled(
                "Verity",
                Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            ),
            Line::styled(
                "A local agent: calculator, search and a Python sandbox, every call gated by policy.",
                Style::new().fg(Color::DarkGray),
            ),
            Line::default(),
        ];
        match &self.phase {
            Phase::Loading { since } => {
                let el = now.saturating_duration_since(*since);
                lines.push(Line::styled(
                    format!(
                        "{} loading {} … {:.1}s",
                        spinner(el.as_millis()),
                        self.status.model,
                        el.as_secs_f64()
                    ),
                    Style::new().fg(Color::Cyan),
                ));
            }
            _ => lines.push(Line::raw(
                "Type a message and press Enter. /help lists commands and keys.",
            )),
        }
        lines
    }
}

fn help_text() -> String {
    let mut s = String::from("Commands:\n");
    for c in COMMANDS {
        s.push_str(&format!(
            "- `/{}{}{}` — {}\n",
            c.name,
            if c.args.is_empty() { "" } else { " " },
            c.args,
            c.help
        ));
    }
    s.push_str(
        "\nKeys: Enter sends · Alt-Enter (or Shift-Enter, Ctrl-J) newline · Up/Down history · \
         Tab completes commands · PgUp/PgDn, Shift-Up/Down, mouse wheel scroll · Ctrl-End to the bottom · \
         Ctrl-T shows reasoning · Ctrl-O expands tool cards · Ctrl-C cancels the turn (twice: quit) · Ctrl-D quits.\n\
         Approval cards: y allow once · s allow for this session · n deny · r deny with a reason.",
    );
    s
}

fn tools_text(tools: &[ToolDef]) -> String {
    if tools.is_empty() {
        return "No tools are offered to the model.".into();
    }
    let mut s = format!("{} tools offered to the model:\n", tools.len());
    for t in tools {
        // The first sentence: enough to tell tools apart.
        let first = t.description.lines().next().unwrap_or("");
        let first = match first.find(". ") {
            Some(i) => &first[..=i],
            None => first,
        };
        s.push_str(&format!("- `{}` — {}\n", t.name, first));
    }
    s
}

fn mcp_text(status: &StatusInfo) -> String {
    if status.mcp.is_empty() {
        return "No external MCP servers (pass `--mcp FILE` or `[mcp_servers.NAME]` in the config).".into();
    }
    let mut s = String::from("External MCP servers:\n");
    for m in &status.mcp {
        match &m.error {
            None => s.push_str(&format!(
                "- `{}`: {} tools ({})\n",
                m.name,
                m.tools.len(),
                m.tools.join(", ")
            )),
            Some(e) => s.push_str(&format!("- `{}`: unavailable — {e}\n", m.name)),
        }
    }
    s
}
