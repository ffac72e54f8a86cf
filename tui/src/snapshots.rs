//! Rendering snapshots: synthetic agent events fed into the [`App`], drawn on ratatui's
//! `TestBackend`, compared with `insta` (`tui/src/snapshots/*.snap`). The clock is fixed so
//! spinners and elapsed times are stable. Review changes with `cargo insta review`, or
//! regenerate with `INSTA_UPDATE=always cargo test -p verity-tui`.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::{backend::TestBackend, Terminal};
use serde_json::json;
use verity_runtime::{
    agent::{AgentEvent, StopReason},
    hub::ServerStatus,
    model::{Finish, ModelOutput, ToolCall, Usage},
    Approval, ApprovalRequest, GatedCall,
};
use verity_runtime::{Caller, Decision, FailureKind, Limits, ToolOutcome, Verdict};

use crate::{
    app::{App, Effect, Phase},
    approver::{PendingApproval, SessionRules},
    components::status::StatusInfo,
};

fn status() -> StatusInfo {
    StatusInfo {
        model: "tiny".into(),
        device: "cpu".into(),
        tokens_per_s: None,
        context_used: None,
        context_window: Some(4096),
        policy: "strict".into(),
        mcp: Vec::new(),
        record: None,
    }
}

struct Fixture {
    app: App,
    t0: Instant,
}

impl Fixture {
    fn idle() -> Self {
        let t0 = Instant::now();
        let mut app = App::new(status(), SessionRules::default(), t0);
        app.phase = Phase::Idle;
        Self { app, t0 }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn render(&mut self, w: u16, h: u16, at_ms: u64) -> String {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        let now = self.at(at_ms);
        terminal.draw(|f| self.app.draw(f, now)).unwrap();
        terminal.backend().to_string()
    }

    fn ev(&mut self, e: AgentEvent) {
        let now = self.t0;
        self.app.on_agent(&e, now);
    }

    fn key(&mut self, code: KeyCode, mods: KeyModifiers) -> Option<Effect> {
        let now = self.at(0);
        self.app
            .on_terminal(Event::Key(KeyEvent::new(code, mods)), now)
    }

    fn type_str(&mut self, s: &str) {
        for c in s.chars() {
            self.key(KeyCode::Char(c), KeyModifiers::NONE);
        }
    }
}

fn call(id: &str, name: &str, args: serde_json::Value) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: args,
    }
}

fn decision(verdict: Verdict, rule: &str, reason: &str) -> Decision {
    Decision {
        verdict,
        rule_id: rule.into(),
        reason: reason.into(),
        limits: Default::default(),
        tool: String::new(),
        matched: Vec::new(),
    }
}

fn gated(d: Decision, text: &str, failure: Option<FailureKind>, ms: u64) -> Box<GatedCall> {
    Box::new(GatedCall {
        decision: d,
        approval: None,
        outcome: ToolOutcome {
            text: text.into(),
            structured: None,
            failure,
        },
        limits: Limits::default(),
        duration: Duration::from_millis(ms),
    })
}

fn output(text: &str, reasoning: Option<&str>, prompt: u64, completion: u64) -> Box<ModelOutput> {
    Box::new(ModelOutput {
        text: text.into(),
        reasoning: reasoning.map(str::to_owned),
        finish: Some(Finish::Stop),
        usage: Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
        },
        ..ModelOutput::default()
    })
}

#[test]
fn empty_chat() {
    let mut f = Fixture::idle();
    insta::assert_snapshot!(f.render(80, 16, 0));
}

#[test]
fn loading_model() {
    let t0 = Instant::now();
    let mut f = Fixture {
        app: App::new(status(), SessionRules::default(), t0),
        t0,
    };
    insta::assert_snapshot!(f.render(80, 14, 2300));
}

#[test]
fn streamed_answer() {
    let mut f = Fixture::idle();
    f.type_str("Explain briefly");
    assert_eq!(
        f.key(KeyCode::Enter, KeyModifiers::NONE),
        Some(Effect::Submit("Explain briefly".into()))
    );
    f.app.phase = Phase::Running { since: f.at(0) };
    f.ev(AgentEvent::TurnStarted { turn: 1 });
    for piece in [
        "<think>The user wants a short",
        " answer.</think>",
        "Here is **the** gist:\n\n",
        "- first point\n- second ",
        "point\n\n```python\nprint(2 + 2)\n",
    ] {
        f.ev(AgentEvent::Token {
            turn: 1,
            text: piece.into(),
        });
    }
    insta::assert_snapshot!("streamed_answer_mid_stream", f.render(60, 20, 1500));
    // The parsed output replaces the stream; Ctrl-T expands the reasoning.
    f.ev(AgentEvent::ModelOutput {
        turn: 1,
        output: output(
            "Here is **the** gist:\n\n- first point\n- second point\n\n```python\nprint(2 + 2)\n```",
            Some("The user wants a short answer."),
            120,
            40,
        ),
        duration_ms: 800,
    });
    f.key(KeyCode::Char('t'), KeyModifiers::CONTROL);
    f.app.phase = Phase::Idle;
    insta::assert_snapshot!("streamed_answer_done", f.render(60, 22, 2000));
}

/// A call the policy allowed and the tool started.
fn allowed_and_started() -> Vec<AgentEvent> {
    vec![
        AgentEvent::PolicyDecision {
            call_id: "c1".into(),
            verdict: Verdict::Allow,
            rule_id: "calculator".into(),
            reason: String::new(),
        },
        AgentEvent::ToolStarted {
            call_id: "c1".into(),
            limits: Limits::default(),
        },
    ]
}

/// One card per state, each drawn alone.
#[test]
fn tool_card_states() {
    let args = json!({"expression": "12 * (3 + 4)"});
    let allow = decision(Verdict::Allow, "calculator", "");
    let ask = decision(Verdict::Ask, "code-limits", "running code needs approval");
    let cases: Vec<(&str, Vec<AgentEvent>)> = vec![
        ("proposed", vec![]),
        ("running", allowed_and_started()),
        (
            "running_with_progress",
            [
                allowed_and_started(),
                vec![AgentEvent::ToolProgress {
                    call_id: "c1".into(),
                    progress: 1.0,
                    total: Some(10.0),
                    message: Some("running for 1.0 s".into()),
                }],
            ]
            .concat(),
        ),
        (
            "awaiting_approval",
            vec![
                AgentEvent::PolicyDecision {
                    call_id: "c1".into(),
                    verdict: Verdict::Ask,
                    rule_id: "code-limits".into(),
                    reason: "running code needs approval".into(),
                },
                AgentEvent::ApprovalRequested {
                    call_id: "c1".into(),
                    tool: "calculator".into(),
                    arguments: args.clone(),
                },
            ],
        ),
        (
            "ok",
            vec![AgentEvent::ToolResult {
                call_id: "c1".into(),
                tool: "calculator".into(),
                result: gated(allow.clone(), "84", None, 3),
            }],
        ),
        (
            "error",
            vec![AgentEvent::ToolResult {
                call_id: "c1".into(),
                tool: "calculator".into(),
                result: gated(
                    allow.clone(),
                    "division by zero at column 4\nexpected a non-zero divisor",
                    Some(FailureKind::Execution),
                    1,
                ),
            }],
        ),
        (
            "denied",
            vec![
                AgentEvent::PolicyDecision {
                    call_id: "c1".into(),
                    verdict: Verdict::Ask,
                    rule_id: "code-limits".into(),
                    reason: "running code needs approval".into(),
                },
                AgentEvent::ApprovalResolved {
                    call_id: "c1".into(),
                    approval: Approval::Denied {
                        by: "user".into(),
                        reason: "no".into(),
                    },
                },
                AgentEvent::ToolResult {
                    call_id: "c1".into(),
                    tool: "calculator".into(),
                    result: gated(
                        ask.clone(),
                        "the user denied this call",
                        Some(FailureKind::Denied),
                        0,
                    ),
                },
            ],
        ),
        (
            "timed_out",
            vec![AgentEvent::ToolResult {
                call_id: "c1".into(),
                tool: "calculator".into(),
                result: gated(
                    allow.clone(),
                    "the call ran past its 10000 ms limit",
                    Some(FailureKind::Timeout),
                    10_000,
                ),
            }],
        ),
    ];
    for (name, events) in cases {
        let mut f = Fixture::idle();
        f.ev(AgentEvent::ToolCallProposed {
            turn: 1,
            call: call("c1", "calculator", args.clone()),
        });
        for e in events {
            f.ev(e);
        }
        // The running card started "now": drawn 1.2 s later.
        insta::assert_snapshot!(format!("tool_card_{name}"), f.render(64, 12, 1200));
    }
    // Cancelled: a card left open when the turn is cancelled.
    let mut f = Fixture::idle();
    f.ev(AgentEvent::ToolCallProposed {
        turn: 1,
        call: call("c1", "code", json!({"code": "while True: pass"})),
    });
    f.app.transcript.cancel_open_cards();
    f.ev(AgentEvent::Finished {
        stop: StopReason::Cancelled,
        answer: None,
        turns: 1,
        usage: Usage::default(),
    });
    insta::assert_snapshot!("tool_card_cancelled", f.render(64, 12, 0));
}

#[test]
fn approval_card() {
    let mut f = Fixture::idle();
    f.app.phase = Phase::Running { since: f.at(0) };
    let args = json!({"code": "import math\nprint(math.factorial(20))", "timeout_ms": 2000});
    f.ev(AgentEvent::ToolCallProposed {
        turn: 1,
        call: call("c9", "code", args.clone()),
    });
    f.ev(AgentEvent::PolicyDecision {
        call_id: "c9".into(),
        verdict: Verdict::Ask,
        rule_id: "code-limits".into(),
        reason: "running code needs approval under the strict policy".into(),
    });
    f.ev(AgentEvent::ApprovalRequested {
        call_id: "c9".into(),
        tool: "code".into(),
        arguments: args.clone(),
    });
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    f.app.on_approval(PendingApproval {
        request: ApprovalRequest {
            caller: Caller::cli(),
            tool: "code".into(),
            args,
            decision: decision(
                Verdict::Ask,
                "code-limits",
                "running code needs approval under the strict policy",
            ),
        },
        reply: tx,
    });
    insta::assert_snapshot!(f.render(80, 24, 500));
    // `s`: approved, and a session rule is added and announced.
    f.key(KeyCode::Char('s'), KeyModifiers::NONE);
    assert_eq!(
        rx.try_recv().unwrap(),
        Approval::Approved {
            by: "user (session-1)".into()
        }
    );
    assert_eq!(f.app.rules.list().len(), 1);
    assert!(!f.app.approvals.is_active());
}

#[test]
fn status_line() {
    let mut f = Fixture::idle();
    f.app.status = StatusInfo {
        tokens_per_s: Some(42.5),
        context_used: Some(1234),
        mcp: vec![
            ServerStatus {
                name: "fs".into(),
                tools: vec!["fs.read".into()],
                error: None,
            },
            ServerStatus {
                name: "git".into(),
                tools: Vec::new(),
                error: Some("exited at start".into()),
            },
        ],
        record: Some((PathBuf::from("chat.jsonl"), 3)),
        ..status()
    };
    let out = f.render(110, 10, 0);
    let last = out.lines().last().unwrap_or_default().to_owned();
    insta::assert_snapshot!(last);
}

#[test]
fn narrow_terminal() {
    let mut f = Fixture::idle();
    insta::assert_snapshot!("too_small", f.render(30, 8, 0));
    // Narrow but usable: everything wraps.
    f.type_str("What is 12 * (3 + 4)? Use the calculator please.");
    f.key(KeyCode::Enter, KeyModifiers::NONE);
    f.ev(AgentEvent::ToolCallProposed {
        turn: 1,
        call: call("c1", "calculator", json!({"expression": "12 * (3 + 4)"})),
    });
    f.ev(AgentEvent::ToolResult {
        call_id: "c1".into(),
        tool: "calculator".into(),
        result: gated(decision(Verdict::Allow, "calculator", ""), "84", None, 2),
    });
    insta::assert_snapshot!("narrow", f.render(40, 20, 0));
}

#[test]
fn slash_completion_popup_and_help() {
    let mut f = Fixture::idle();
    f.type_str("/");
    insta::assert_snapshot!("completion_popup", f.render(80, 20, 0));
    f.type_str("too");
    f.key(KeyCode::Tab, KeyModifiers::NONE);
    assert_eq!(f.app.input.text(), "/tools");
    assert_eq!(f.key(KeyCode::Enter, KeyModifiers::NONE), None);
    f.type_str("/quit");
    assert_eq!(
        f.key(KeyCode::Enter, KeyModifiers::NONE),
        Some(Effect::Quit)
    );
}

#[test]
fn ctrl_c_cancels_a_running_turn_then_quits_on_second_press() {
    let mut f = Fixture::idle();
    f.app.phase = Phase::Running { since: f.at(0) };
    assert_eq!(
        f.key(KeyCode::Char('c'), KeyModifiers::CONTROL),
        Some(Effect::Cancel)
    );
    f.app.phase = Phase::Idle;
    assert_eq!(
        f.key(KeyCode::Char('c'), KeyModifiers::CONTROL),
        Some(Effect::Quit)
    );
    // Idle, first press: only a hint.
    let mut f = Fixture::idle();
    assert_eq!(f.key(KeyCode::Char('c'), KeyModifiers::CONTROL), None);
    assert!(f.render(80, 12, 0).contains("press Ctrl-C again to quit"));
}

#[test]
fn scrollback_keeps_position_while_output_arrives() {
    let mut f = Fixture::idle();
    for i in 0..40 {
        f.app
            .transcript
            .notice(crate::transcript::NoticeKind::Info, format!("line {i}"));
    }
    f.render(60, 12, 0);
    f.key(KeyCode::PageUp, KeyModifiers::NONE);
    let before = f.render(60, 12, 0);
    assert!(before.contains("more rows below"), "{before}");
    f.app
        .transcript
        .notice(crate::transcript::NoticeKind::Info, "new output");
    let after = f.render(60, 12, 0);
    let first_row = |s: &str| s.lines().next().unwrap_or_default().to_owned();
    assert_eq!(first_row(&before), first_row(&after));
    f.key(KeyCode::End, KeyModifiers::CONTROL);
    assert!(f.render(60, 12, 0).contains("new output"));
}

#[test]
fn tokens_per_second_is_live_while_streaming() {
    let mut f = Fixture::idle();
    f.app
        .on_agent(&AgentEvent::TurnStarted { turn: 1 }, f.at(0));
    for _ in 0..10 {
        let now = f.at(500);
        f.app.on_agent(
            &AgentEvent::Token {
                turn: 1,
                text: "a".into(),
            },
            now,
        );
    }
    assert_eq!(f.app.status.tokens_per_s, Some(20.0));
    assert!(f.render(80, 12, 500).contains("20.0 tok/s"));
}
