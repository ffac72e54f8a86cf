use std::sync::Arc;

use serde_json::json;
use tokio::sync::mpsc::unbounded_channel;
use verity_policies::{Policy, PolicyEngine};
use verity_tools::ToolRegistry;

use super::*;
use crate::{model::ScriptedModel, DenyAsk};

fn call(id: &str, name: &str, args: Value) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: args,
    }
}

fn calls(list: Vec<ToolCall>) -> ModelOutput {
    ModelOutput {
        tool_calls: list,
        finish: Some(Finish::ToolCalls),
        usage: Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
        },
        ..ModelOutput::default()
    }
}

fn answer(text: &str) -> ModelOutput {
    ModelOutput {
        text: text.into(),
        finish: Some(Finish::Stop),
        usage: Usage {
            prompt_tokens: 10,
            completion_tokens: 3,
        },
        ..ModelOutput::default()
    }
}

fn gate(policy: &str) -> ToolGate {
    let p = Policy::from_toml_str(policy, "test.toml").unwrap();
    ToolGate::new(
        ToolRegistry::with_builtins(),
        Arc::new(PolicyEngine::new(p, None)),
    )
}

async fn run(
    model: Arc<ScriptedModel>,
    policy: &str,
    config: AgentConfig,
) -> (RunOutcome, Vec<AgentEvent>) {
    run_with(model, gate(policy), Arc::new(DenyAsk), config).await
}

/// A test tool that waits `ms`, reporting progress before and after, and logs when it ran
/// (so a test can see overlap rather than infer it).
struct Sleep {
    log: Arc<std::sync::Mutex<Vec<(String, Instant, Instant)>>>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct SleepParams {
    /// Label.
    id: String,
    /// Milliseconds to wait.
    ms: u64,
}

impl verity_tools::Tool for Sleep {
    type Params = SleepParams;
    type Output = String;
    fn name(&self) -> &str {
        "sleep"
    }
    fn description(&self) -> &str {
        "waits"
    }
    fn annotations(&self) -> verity_tools::Annotations {
        verity_tools::Annotations::PURE
    }
    fn reports_progress(&self) -> bool {
        true
    }
    async fn call(
        &self,
        p: SleepParams,
        ctx: CallContext,
    ) -> Result<String, verity_tools::ToolFailure> {
        let start = Instant::now();
        ctx.report(verity_tools::Progress {
            progress: 0.0,
            total: Some(2.0),
            message: Some("started".into()),
        });
        tokio::time::sleep(Duration::from_millis(p.ms)).await;
        ctx.report(verity_tools::Progress {
            progress: 2.0,
            total: Some(2.0),
            message: None,
        });
        if let Ok(mut log) = self.log.lock() {
            log.push((p.id.clone(), start, Instant::now()));
        }
        Ok(p.id)
    }
    fn render(&self, output: &String) -> String {
        output.clone()
    }
}

type SleepLog = Arc<std::sync::Mutex<Vec<(String, Instant, Instant)>>>;

fn sleepy_gate(policy: &str) -> (ToolGate, SleepLog) {
    let log = SleepLog::default();
    let mut registry = ToolRegistry::with_builtins();
    registry.register(Sleep { log: log.clone() });
    let p = Policy::from_toml_str(policy, "test.toml").unwrap();
    (
        ToolGate::new(registry, Arc::new(PolicyEngine::new(p, None))),
        log,
    )
}

async fn run_with(
    model: Arc<ScriptedModel>,
    gate: ToolGate,
    approver: Arc<dyn Approver>,
    config: AgentConfig,
) -> (RunOutcome, Vec<AgentEvent>) {
    let agent = Agent::new(model, gate, approver, config);
    let (tx, mut rx) = unbounded_channel();
    let outcome = agent
        .run(
            vec![Message::new(Role::User, "q")],
            tx,
            CancellationToken::new(),
        )
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (outcome, events)
}

/// The life of one call as the event stream tells it, in order.
fn life(events: &[AgentEvent], id: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolCallProposed { call, .. } if call.id == id => Some("proposed".into()),
            AgentEvent::PolicyDecision {
                call_id, verdict, ..
            } if call_id == id => Some(format!("decision:{verdict}")),
            AgentEvent::ApprovalRequested { call_id, .. } if call_id == id => {
                Some("approval-requested".into())
            }
            AgentEvent::ApprovalResolved { call_id, approval } if call_id == id => {
                Some(match approval {
                    Approval::Approved { .. } => "approved".into(),
                    Approval::Denied { .. } => "not-approved".into(),
                })
            }
            AgentEvent::ToolStarted { call_id, .. } if call_id == id => Some("started".into()),
            AgentEvent::ToolProgress {
                call_id, progress, ..
            } if call_id == id => Some(format!("progress:{progress}")),
            AgentEvent::ToolResult {
                call_id, result, ..
            } if call_id == id => Some(match result.outcome.failure {
                None => "result:ok".into(),
                Some(k) => format!("result:{k}"),
            }),
            _ => None,
        })
        .collect()
}

/// Every verdict's call reports its whole life in order: the decision before the tool
/// runs, approval around the ask, start and progress only when it runs, the result last.
#[tokio::test]
async fn each_verdict_reports_the_calls_life_in_order() {
    let one_call = || {
        Arc::new(ScriptedModel::new(
            vec![
                calls(vec![call("x", "sleep", json!({"id": "x", "ms": 20}))]),
                answer("ok"),
            ],
            false,
        ))
    };
    let cases: [(&str, Arc<dyn Approver>, &[&str]); 4] = [
        (
            "default = \"allow\"\n",
            Arc::new(DenyAsk),
            &[
                "proposed",
                "decision:allow",
                "started",
                "progress:0",
                "progress:2",
                "result:ok",
            ],
        ),
        (
            "default = \"deny\"\n",
            Arc::new(DenyAsk),
            &["proposed", "decision:deny", "result:denied"],
        ),
        (
            "default = \"ask\"\n",
            Arc::new(crate::AutoApprove),
            &[
                "proposed",
                "decision:ask",
                "approval-requested",
                "approved",
                "started",
                "progress:0",
                "progress:2",
                "result:ok",
            ],
        ),
        (
            "default = \"ask\"\n",
            Arc::new(DenyAsk),
            &[
                "proposed",
                "decision:ask",
                "approval-requested",
                "not-approved",
                "result:denied",
            ],
        ),
    ];
    for (policy, approver, want) in cases {
        let (gate, _) = sleepy_gate(policy);
        let (out, events) = run_with(one_call(), gate, approver, AgentConfig::default()).await;
        assert_eq!(out.stop, StopReason::Answer);
        assert_eq!(life(&events, "x"), want, "policy {policy:?}");
    }
}

#[tokio::test]
async fn parallel_calls_overlap_and_results_come_back_in_call_order() {
    // The first call is the slowest: finished in call order only if run one by one.
    let model = Arc::new(ScriptedModel::new(
        vec![
            calls(vec![
                call("a", "sleep", json!({"id": "a", "ms": 400})),
                call("b", "sleep", json!({"id": "b", "ms": 100})),
                call("c", "sleep", json!({"id": "c", "ms": 250})),
                call("d", "calculator", json!({"expression": "1/0"})),
            ]),
            answer("done"),
        ],
        false,
    ));
    let (gate, log) = sleepy_gate("default = \"allow\"\n");
    let started = Instant::now();
    let (out, events) = run_with(
        model.clone(),
        gate,
        Arc::new(DenyAsk),
        AgentConfig::default(),
    )
    .await;
    let wall = started.elapsed();
    assert_eq!(out.stop, StopReason::Answer);
    assert_eq!(out.answer.as_deref(), Some("done"));
    // They ran at the same time: every pair of the sleeps overlapped, and the whole turn
    // took about the slowest call, not the sum (750 ms).
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 3);
    for (i, x) in log.iter().enumerate() {
        for y in &log[i + 1..] {
            assert!(
                x.1 < y.2 && y.1 < x.2,
                "{} and {} did not overlap",
                x.0,
                y.0
            );
        }
    }
    assert!(wall < Duration::from_millis(700), "took {wall:?}");
    // Results reach the model in call order, whatever order they finished in.
    let tool_msgs: Vec<&Message> = out
        .messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .collect();
    let ids: Vec<&str> = tool_msgs
        .iter()
        .filter_map(|m| m.tool_call_id.as_deref())
        .collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    assert_eq!(tool_msgs[0].content, "a");
    assert!(
        tool_msgs[3].content.starts_with("error (execution)"),
        "{}",
        tool_msgs[3].content
    );
    // ... while each result event came when its call finished.
    let finished: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolResult { call_id, .. } => Some(call_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(finished, ["d", "b", "c", "a"]);
    // The second model call saw all four results.
    let second = &model.requests()[1];
    assert_eq!(
        second
            .messages
            .iter()
            .filter(|m| m.role == Role::Tool)
            .count(),
        4
    );
    assert_eq!(second.tool_choice, ToolChoice::Auto);
    assert!(matches!(
        events.last(),
        Some(AgentEvent::Finished {
            stop: StopReason::Answer,
            ..
        })
    ));
}

#[tokio::test]
async fn a_denied_call_is_not_run_and_the_model_reads_the_rule() {
    let policy = "default = \"allow\"\n[[rule]]\nid = \"no-code\"\ntool = \"code\"\ndecision = \"deny\"\nreason = \"no code here\"\n";
    let model = Arc::new(ScriptedModel::new(
        vec![
            calls(vec![call("x", "code", json!({"code": "print(1)"}))]),
            answer("ok"),
        ],
        false,
    ));
    let (out, events) = run(model, policy, AgentConfig::default()).await;
    let tool = out.messages.iter().find(|m| m.role == Role::Tool).unwrap();
    assert!(
        tool.content.contains("no-code") && tool.content.contains("no code here"),
        "{}",
        tool.content
    );
    assert!(events.iter().any(|e| matches!(
        e,
        AgentEvent::PolicyDecision { verdict: Verdict::Deny, rule_id, .. } if rule_id == "no-code"
    )));
}

#[tokio::test]
async fn ask_without_a_person_is_denied_with_the_reason_and_events_say_so() {
    let policy = "default = \"ask\"\n";
    let model = Arc::new(ScriptedModel::new(
        vec![
            calls(vec![call("x", "calculator", json!({"expression": "1+1"}))]),
            answer("ok"),
        ],
        false,
    ));
    let (out, events) = run(model, policy, AgentConfig::default()).await;
    let tool = out.messages.iter().find(|m| m.role == Role::Tool).unwrap();
    assert!(tool.content.contains("needs approval"), "{}", tool.content);
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::PolicyDecision { .. } => Some("decision"),
            AgentEvent::ApprovalRequested { .. } => Some("requested"),
            AgentEvent::ApprovalResolved { .. } => Some("resolved"),
            AgentEvent::ToolStarted { .. } => Some("started"),
            AgentEvent::ToolResult { .. } => Some("result"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["decision", "requested", "resolved", "result"]);
}

#[tokio::test]
async fn parse_failures_go_back_to_the_model_and_nothing_runs() {
    let bad = ModelOutput {
        text: "<tool_call>{oops".into(),
        parse_failures: vec![ParseFailure {
            raw: "<tool_call>{oops".into(),
            error: "not valid JSON".into(),
        }],
        finish: Some(Finish::Stop),
        ..ModelOutput::default()
    };
    let model = Arc::new(ScriptedModel::new(vec![bad, answer("fine")], false));
    let (out, events) = run(
        model.clone(),
        "default = \"allow\"\n",
        AgentConfig::default(),
    )
    .await;
    assert_eq!(out.answer.as_deref(), Some("fine"));
    assert!(events
        .iter()
        .any(|e| matches!(e, AgentEvent::ParseFailure { .. })));
    assert!(!events
        .iter()
        .any(|e| matches!(e, AgentEvent::ToolResult { .. })));
    let feedback = &model.requests()[1].messages;
    assert!(feedback.last().unwrap().content.contains("not valid JSON"));
}

/// A reply whose call failed goes back into the conversation as it was written (the
/// backend's `raw`: prose after the call stays after it), so a template re-renders the
/// history to the ids the model sampled; a backend without `raw` gets the prose with the
/// failed calls appended.
#[tokio::test]
async fn a_failed_reply_goes_back_as_it_was_written() {
    let call = "<tool_call>{\"name\": 3}</tool_call>";
    let raw = format!("{call} so the answer is 5.");
    let failed = |raw: Option<String>| ModelOutput {
        text: "so the answer is 5.".into(),
        raw,
        parse_failures: vec![ParseFailure {
            raw: call.into(),
            error: "the name is not a string".into(),
        }],
        finish: Some(Finish::Stop),
        ..ModelOutput::default()
    };
    for (given, want) in [
        (Some(raw.clone()), raw.clone()),
        (None, format!("so the answer is 5.\n{call}")),
    ] {
        let model = Arc::new(ScriptedModel::new(vec![failed(given), answer("5")], false));
        run(
            model.clone(),
            "default = \"allow\"\n",
            AgentConfig::default(),
        )
        .await;
        let sent = &model.requests()[1].messages;
        let reply = &sent[sent.len() - 2];
        assert_eq!(reply.role, Role::Assistant);
        assert_eq!(reply.content, want);
    }
}

#[tokio::test]
async fn budgets_stop_the_run() {
    let forever = calls(vec![call("a", "calculator", json!({"expression": "1"}))]);
    let model = Arc::new(ScriptedModel::new(vec![forever.clone()], true));
    let config = AgentConfig {
        max_turns: 3,
        ..AgentConfig::default()
    };
    let (out, _) = run(model, "default = \"allow\"\n", config).await;
    assert_eq!(
        (out.stop, out.turns, out.answer),
        (StopReason::MaxTurns, 3, None)
    );

    let model = Arc::new(ScriptedModel::new(vec![forever], true));
    let config = AgentConfig {
        max_tokens: 12,
        ..AgentConfig::default()
    };
    let (out, _) = run(model.clone(), "default = \"allow\"\n", config).await;
    assert_eq!(out.stop, StopReason::MaxTokens);
    // Each call's max_tokens is capped by what is left of the run's budget.
    let caps: Vec<usize> = model
        .requests()
        .iter()
        .map(|r| r.sampling.max_tokens)
        .collect();
    assert_eq!(caps, [12, 7, 2]);
}

#[tokio::test]
async fn first_turn_choice_then_auto_and_truncation_is_flagged() {
    let cut = ModelOutput {
        finish: Some(Finish::Length),
        ..answer("partial")
    };
    let model = Arc::new(ScriptedModel::new(
        vec![
            calls(vec![call("a", "calculator", json!({"expression": "1"}))]),
            cut,
        ],
        false,
    ));
    let config = AgentConfig {
        tool_choice: ToolChoice::Required,
        ..AgentConfig::default()
    };
    let (out, _) = run(model.clone(), "default = \"allow\"\n", config).await;
    assert_eq!(out.stop, StopReason::Truncated);
    let choices: Vec<ToolChoice> = model
        .requests()
        .iter()
        .map(|r| r.tool_choice.clone())
        .collect();
    assert_eq!(choices, [ToolChoice::Required, ToolChoice::Auto]);
}

#[tokio::test]
async fn cancellation_stops_before_the_next_model_call() {
    let model = Arc::new(ScriptedModel::new(vec![answer("x")], true));
    let agent = Agent::new(
        model,
        gate("default = \"allow\"\n"),
        Arc::new(DenyAsk),
        AgentConfig::default(),
    );
    let cancel = CancellationToken::new();
    cancel.cancel();
    let (tx, _rx) = unbounded_channel();
    let out = agent
        .run(vec![Message::new(Role::User, "q")], tx, cancel)
        .await
        .unwrap();
    assert_eq!(out.stop, StopReason::Cancelled);
}

#[tokio::test]
async fn call_only_functions_end_the_run_with_the_calls_and_run_nothing() {
    let model = Arc::new(ScriptedModel::new(
        vec![
            calls(vec![
                call(
                    "a",
                    "spotify.play",
                    json!({"artist": "Taylor Swift", "duration": 20}),
                ),
                call(
                    "b",
                    "spotify.play",
                    json!({"artist": "Maroon 5", "duration": 15}),
                ),
            ]),
            answer("never reached"),
        ],
        false,
    ));
    let config = AgentConfig {
        tool_allow_list: Some(Vec::new()),
        call_only: vec![ToolDef {
            name: "spotify.play".into(),
            description: "Play tracks".into(),
            parameters: json!({"type": "object", "properties": {"artist": {"type": "string"}, "duration": {"type": "integer"}}}),
        }],
        ..AgentConfig::default()
    };
    let agent = Agent::new(
        model.clone(),
        gate("default = \"allow\"\n"),
        Arc::new(DenyAsk),
        config.clone(),
    );
    // Offered: only the call-only function (the allow-list hides the built-ins).
    let names: Vec<String> = agent.tool_defs().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["spotify.play"]);
    let (out, events) = run(model, "default = \"allow\"\n", config).await;
    assert_eq!(out.stop, StopReason::Calls);
    assert_eq!(out.turns, 1);
    assert_eq!(out.messages.last().unwrap().tool_calls.len(), 2);
    assert!(!out.messages.iter().any(|m| m.role == Role::Tool));
    assert!(!events.iter().any(|e| matches!(
        e,
        AgentEvent::ToolCallProposed { .. } | AgentEvent::ToolResult { .. }
    )));
}
