//! The session loop: one `tokio::select!` over terminal input, agent events, approval
//! requests and a tick (only while something animates); redraws only after a change. It
//! owns the conversation, the running turn and the recorder, and carries out the
//! [`Effect`]s the [`App`] returns.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crossterm::event::EventStream;
use futures::{future::BoxFuture, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_util::sync::CancellationToken;
use verity_runtime::{
    agent::{Agent, AgentConfig, AgentEvent, RunOutcome},
    hub::McpHub,
    model::{Message, ModelBackend, ModelError, ModelInfo, Role},
    reward::{self, Attempt, VerifierSpec},
    trajectory::{
        chain::ChainWriter, record::ChatRef, record_run, Record, TaskInfo, TrajectoryBuilder,
    },
    Approver, AutoApprove, ToolGate,
};

use crate::{
    app::{App, Effect, Phase, SessionInfo},
    approver::{PendingApproval, SessionRules, TuiApprover},
    components::status::StatusInfo,
    error::{Result, TuiError},
    terminal::TerminalGuard,
    transcript::NoticeKind,
};

/// A task to chat on: its prompt is put in the input box, `/reward` scores answers.
#[derive(Debug, Clone)]
pub struct ChatTask {
    /// Task id.
    pub id: String,
    /// The conversation the task starts with (system/user messages); the last user
    /// message goes into the input box instead of being sent.
    pub messages: Vec<Message>,
    /// Gold answer.
    pub ground_truth: Value,
    /// How answers are scored.
    pub verifier: VerifierSpec,
    /// The task as read (stored in recorded trajectories).
    pub raw: Value,
}

/// How the chat is set up (everything but the model, which loads behind the UI).
#[derive(Debug, Clone)]
pub struct ChatOptions {
    /// Budgets, sampling, strictness, tool allow-list.
    pub agent: AgentConfig,
    /// System prompt.
    pub system: Option<String>,
    /// Append one `verity.traj/1` record per turn to this file.
    pub record: Option<PathBuf>,
    /// Sign each record with this key (`--sign`).
    pub signer: Option<std::sync::Arc<verity_runtime::trajectory::sign::Signer>>,
    /// Policy preset or file (shown).
    pub policy: String,
    /// `/policy` text (markdown).
    pub policy_text: String,
    /// Model as given (shown).
    pub model: String,
    /// `--yes`: approve every ask without a card.
    pub auto_approve: bool,
    /// Optional task.
    pub task: Option<ChatTask>,
}

/// What loading produces.
pub struct Loaded {
    /// The model.
    pub model: Arc<dyn ModelBackend>,
    /// Tools behind the policy.
    pub gate: ToolGate,
    /// External MCP servers (kept alive for the session).
    pub hub: McpHub,
}

/// Loads the model and starts the tools; runs while the UI already shows.
pub type Loader = BoxFuture<'static, std::result::Result<Loaded, String>>;

enum Input {
    Terminal(std::io::Result<crossterm::event::Event>),
    Agent(AgentEvent),
    Approval(PendingApproval),
    RunDone(std::result::Result<RunOutcome, ModelError>),
    Loaded(std::result::Result<Loaded, String>),
    Reward(String),
    Tick,
    TerminalClosed,
}

struct Session {
    options: ChatOptions,
    app: App,
    agent: Option<Agent>,
    /// The model (for tokenizing tool results in records).
    model: Option<Arc<dyn ModelBackend>>,
    _hub: Option<McpHub>,
    conversation: Vec<Message>,
    running: Option<CancellationToken>,
    builder: TrajectoryBuilder,
    writer: Option<ChainWriter>,
    /// The last finished turn (for `/reward`).
    last: Option<RunOutcome>,
    session_id: String,
    exchanges: usize,
    approvals_tx: UnboundedSender<PendingApproval>,
    events_tx: UnboundedSender<Input>,
}

/// Runs `verity chat` until the person quits.
pub async fn run_chat(options: ChatOptions, loader: Loader) -> Result<()> {
    // A damaged record file is refused before the screen switches.
    let writer = match &options.record {
        Some(p) => {
            let w = ChainWriter::open(p)
                .map_err(|e| TuiError::Record(format!("{}: {e}", p.display())))?;
            Some(match &options.signer {
                Some(s) => w.with_signer(std::sync::Arc::clone(s)),
                None => w,
            })
        }
        None => None,
    };
    let mut guard = TerminalGuard::enter()?;
    let (approvals_tx, mut approvals_rx) = unbounded_channel();
    let (events_tx, mut events_rx) = unbounded_channel::<Input>();
    let rules = SessionRules::default();
    let status = StatusInfo {
        model: options.model.clone(),
        policy: options.policy.clone(),
        record: options.record.clone().map(|p| (p, 0)),
        ..StatusInfo::default()
    };
    let now = Instant::now();
    let mut app = App::new(status, rules, now);
    app.info = SessionInfo {
        tools: Vec::new(),
        policy: options.policy_text.clone(),
        model: format!("Model `{}` is loading.", options.model),
        task: options.task.is_some(),
    };
    let mut session = Session {
        conversation: Vec::new(),
        options,
        app,
        agent: None,
        model: None,
        _hub: None,
        running: None,
        builder: TrajectoryBuilder::new(),
        writer,
        last: None,
        session_id: format!(
            "chat-{}",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        ),
        exchanges: 0,
        approvals_tx,
        events_tx: events_tx.clone(),
    };
    session.reset_conversation();

    let loaded_tx = events_tx.clone();
    tokio::spawn(async move {
        let _ = loaded_tx.send(Input::Loaded(loader.await));
    });

    let mut terminal_events = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    loop {
        if dirty {
            let now = Instant::now();
            guard.terminal.draw(|f| session.app.draw(f, now))?;
        }
        let animating = session.app.animating();
        let input = tokio::select! {
            ev = terminal_events.next() => match ev {
                Some(ev) => Input::Terminal(ev),
                None => Input::TerminalClosed,
            },
            Some(ev) = events_rx.recv() => ev,
            Some(p) = approvals_rx.recv() => Input::Approval(p),
            _ = tick.tick(), if animating => Input::Tick,
        };
        dirty = true;
        match input {
            Input::Terminal(Ok(ev)) => {
                if let Some(effect) = session.app.on_terminal(ev, Instant::now()) {
                    if session.apply(effect).await {
                        break;
                    }
                }
            }
            Input::Terminal(Err(e)) => return Err(TuiError::Io(e)),
            Input::TerminalClosed => break,
            Input::Agent(ev) => session.on_agent(ev),
            Input::Approval(p) => {
                let cancelling = session.running.as_ref().is_some_and(|c| c.is_cancelled());
                if cancelling {
                    // Calls of a cancelled turn that reach the approver afterwards.
                    let _ = p.reply.send(verity_runtime::Approval::Denied {
                        by: "user".into(),
                        reason: "the turn was cancelled before the call was approved".into(),
                    });
                } else if session.options.auto_approve {
                    let _ = p
                        .reply
                        .send(verity_runtime::Approval::Approved { by: "--yes".into() });
                } else {
                    session.app.on_approval(p);
                }
            }
            Input::RunDone(result) => {
                // Events sent before the run returned are all in the channel already.
                while let Ok(Input::Agent(ev)) = events_rx.try_recv() {
                    session.on_agent(ev);
                }
                session.finish_turn(result).await;
            }
            Input::Loaded(result) => session.on_loaded(result),
            Input::Reward(text) => session.app.transcript.notice(NoticeKind::Info, text),
            Input::Tick => {}
        }
    }
    if let Some(c) = &session.running {
        c.cancel();
    }
    drop(guard);
    Ok(())
}

impl Session {
    fn reset_conversation(&mut self) {
        self.conversation.clear();
        if let Some(s) = &self.options.system {
            self.conversation
                .push(Message::new(Role::System, s.clone()));
        }
        if let Some(task) = &self.options.task {
            let mut msgs = task.messages.clone();
            // The task's last user message waits in the input box.
            if let Some(pos) = msgs.iter().rposition(|m| m.role == Role::User) {
                let m = msgs.remove(pos);
                self.app.input.set_text(&m.content);
            }
            if self.options.system.is_some() {
                msgs.retain(|m| m.role != Role::System);
            }
            self.conversation.extend(msgs);
        }
    }

    fn on_loaded(&mut self, result: std::result::Result<Loaded, String>) {
        match result {
            Ok(loaded) => {
                let info = loaded.model.info().clone();
                self.app.status.device = info.device.clone();
                self.app.status.context_window = info.context_window;
                self.app.status.mcp = loaded.hub.statuses().to_vec();
                for s in loaded.hub.statuses() {
                    if let Some(e) = &s.error {
                        self.app.transcript.notice(
                            NoticeKind::Warn,
                            format!("MCP server `{}` is unavailable (skipped): {e}", s.name),
                        );
                    }
                }
                let approver: Arc<dyn Approver> = if self.options.auto_approve {
                    Arc::new(AutoApprove)
                } else {
                    Arc::new(TuiApprover::new(
                        self.approvals_tx.clone(),
                        self.app.rules.clone(),
                    ))
                };
                self.model = Some(loaded.model.clone());
                let agent = Agent::new(
                    loaded.model,
                    loaded.gate,
                    approver,
                    self.options.agent.clone(),
                );
                self.app.info.tools = agent.tool_defs();
                self.app.info.model = model_text(&info, &self.options.agent);
                self.agent = Some(agent);
                self._hub = Some(loaded.hub);
                self.app.phase = Phase::Idle;
            }
            Err(e) => {
                self.app.phase = Phase::LoadFailed;
                self.app
                    .transcript
                    .notice(NoticeKind::Error, format!("Loading the model failed: {e}"));
            }
        }
    }

    fn on_agent(&mut self, ev: AgentEvent) {
        if self.writer.is_some() {
            self.builder.observe(&ev);
        }
        self.app.on_agent(&ev, Instant::now());
    }

    /// Carries out an effect; `true` = quit.
    async fn apply(&mut self, effect: Effect) -> bool {
        match effect {
            Effect::Quit => return true,
            Effect::Submit(text) => self.start_turn(text),
            Effect::Cancel => {
                if let Some(c) = &self.running {
                    c.cancel();
                }
            }
            Effect::Clear => {
                if self.running.is_some() {
                    self.app.transcript.notice(
                        NoticeKind::Warn,
                        "A turn is running; Ctrl-C cancels it before /clear.",
                    );
                } else {
                    self.app.transcript.clear();
                    self.last = None;
                    self.reset_conversation();
                    self.app
                        .transcript
                        .notice(NoticeKind::Info, "New conversation.");
                }
            }
            Effect::Save(path) => self.save(path),
            Effect::Reward => self.reward(),
        }
        false
    }

    fn start_turn(&mut self, text: String) {
        let Some(agent) = self.agent.clone() else {
            return;
        };
        let mut messages = self.conversation.clone();
        messages.push(Message::new(Role::User, text));
        let cancel = CancellationToken::new();
        self.running = Some(cancel.clone());
        self.builder = TrajectoryBuilder::new();
        self.app.phase = Phase::Running {
            since: Instant::now(),
        };
        let out = self.events_tx.clone();
        tokio::spawn(async move {
            let (tx, mut rx) = unbounded_channel();
            let run = agent.run(messages, tx, cancel);
            tokio::pin!(run);
            let result = loop {
                tokio::select! {
                    biased;
                    Some(ev) = rx.recv() => { let _ = out.send(Input::Agent(ev)); }
                    r = &mut run => {
                        while let Ok(ev) = rx.try_recv() {
                            let _ = out.send(Input::Agent(ev));
                        }
                        break r;
                    }
                }
            };
            let _ = out.send(Input::RunDone(result));
        });
    }

    async fn finish_turn(&mut self, result: std::result::Result<RunOutcome, ModelError>) {
        self.running = None;
        self.app.turn_finished();
        match result {
            Ok(outcome) => {
                self.conversation = outcome.messages.clone();
                self.exchanges += 1;
                self.record(&outcome).await;
                self.last = Some(outcome);
            }
            Err(e) => {
                // The conversation stays as it was; the message is in the history (Up).
                if !matches!(e, ModelError::Cancelled) {
                    self.app.transcript.notice(
                        NoticeKind::Error,
                        format!("The turn failed: {e}. The conversation is unchanged; Up recalls your message."),
                    );
                }
            }
        }
    }

    async fn record(&mut self, outcome: &RunOutcome) {
        let (Some(writer), Some(agent), Some(model)) =
            (self.writer.as_mut(), &self.agent, &self.model)
        else {
            return;
        };
        let task = TaskInfo::Chat {
            chat: ChatRef {
                session: self.session_id.clone(),
                exchange: self.exchanges,
            },
            task: self.options.task.as_ref().map(|t| t.raw.clone()),
        };
        let record = record_run(
            std::mem::take(&mut self.builder),
            &**model,
            agent.config(),
            &agent.tool_defs(),
            outcome,
            task,
        )
        .await;
        match writer.append_record(&mut Record::Traj(record)) {
            Ok(_) => {
                if let Some((_, n)) = &mut self.app.status.record {
                    *n += 1;
                }
            }
            Err(e) => self
                .app
                .transcript
                .notice(NoticeKind::Error, format!("Recording failed: {e}")),
        }
    }

    fn save(&mut self, path: Option<PathBuf>) {
        let path = path.unwrap_or_else(|| PathBuf::from(format!("{}.json", self.session_id)));
        let body = json!({
            "session": self.session_id,
            "model": self.options.model,
            "tools": self.app.info.tools.iter().map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}})).collect::<Vec<_>>(),
            "messages": self.conversation,
        });
        let text = serde_json::to_string_pretty(&body).unwrap_or_default();
        match std::fs::write(&path, text) {
            Ok(()) => self.app.transcript.notice(
                NoticeKind::Info,
                format!(
                    "Saved {} messages to `{}`.",
                    self.conversation.len(),
                    path.display()
                ),
            ),
            Err(e) => self.app.transcript.notice(
                NoticeKind::Error,
                format!("Could not save to `{}`: {e}", path.display()),
            ),
        }
    }

    fn reward(&mut self) {
        let (Some(task), Some(last)) = (&self.options.task, &self.last) else {
            self.app.transcript.notice(
                NoticeKind::Warn,
                "Nothing to score yet: send the task's prompt first.",
            );
            return;
        };
        let attempt = Attempt {
            answer: last.answer.clone(),
            calls: last
                .messages
                .iter()
                .flat_map(|m| m.tool_calls.iter().cloned())
                .collect(),
            truncated: last.stop == verity_runtime::agent::StopReason::Truncated,
        };
        let (spec, gold, id, out) = (
            task.verifier.clone(),
            task.ground_truth.clone(),
            task.id.clone(),
            self.events_tx.clone(),
        );
        self.app.transcript.notice(
            NoticeKind::Info,
            format!("Scoring the last answer on task `{id}`…"),
        );
        tokio::spawn(async move {
            let r = reward::score(&spec, &gold, &attempt).await;
            let text = format!(
                "Reward for task `{id}`: **{}** — {} (verifier `{}` v{}{}; extracted {}; gold {})",
                r.score,
                if r.passed { "passed" } else { "failed" },
                r.name,
                r.version,
                if r.timed_out { ", timed out" } else { "" },
                r.extracted
                    .as_deref()
                    .map(|e| format!("`{e}`"))
                    .unwrap_or_else(|| "nothing".into()),
                r.gold,
            ) + &format!("\n\n{}", r.detail);
            let _ = out.send(Input::Reward(text));
        });
    }
}

fn model_text(info: &ModelInfo, cfg: &AgentConfig) -> String {
    let s = &cfg.sampling;
    format!(
        "Model `{}` on `{}` ({} {}{}{}).\n\nSampling: {}, top_p {}, max {} tokens per call; budgets: {} turns, {} tokens{}; strict decoding {}.",
        info.model,
        info.device,
        info.engine,
        info.engine_version,
        info.context_window.map(|w| format!(", context {w}")).unwrap_or_default(),
        info.dtype.as_deref().map(|d| format!(", {d}")).unwrap_or_default(),
        match s.temperature {
            Some(t) if !s.greedy => format!("temperature {t}"),
            _ => "greedy".into(),
        },
        s.top_p.map(|p| p.to_string()).unwrap_or_else(|| "–".into()),
        s.max_tokens,
        cfg.max_turns,
        cfg.max_tokens,
        cfg.wall_time.map(|w| format!(", {:.0} s", w.as_secs_f64())).unwrap_or_default(),
        if cfg.strict { "on" } else { "off" },
    )
}
