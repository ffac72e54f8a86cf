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
    let agent = Agent::new(model, gate(policy), Arc::new(DenyAsk), config);
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

#[tokio::test]
async fn parallel_calls_run_and_results_come_back_in_call_order() {
    let model = Arc::new(ScriptedModel::new(
        vec![
            calls(vec![
                call("a", "calculator", json!({"expression": "2^10"})),
                call("b", "calculator", json!({"expression": "1/0"})),
                call("c", "calculator", json!({"expression": "7*6"})),
            ]),
            answer("done"),
        ],
        false,
    ));
    let (out, events) = run(
        model.clone(),
        "default = \"allow\"\n",
        AgentConfig::default(),
    )
    .await;
    assert_eq!(out.stop, StopReason::Answer);
    assert_eq!(out.answer.as_deref(), Some("done"));
    let tool_msgs: Vec<&Message> = out
        .messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .collect();
    assert_eq!(tool_msgs.len(), 3);
    assert_eq!(tool_msgs[0].tool_call_id.as_deref(), Some("a"));
    assert!(tool_msgs[0].content.contains("1024"));
    assert!(
        tool_msgs[1].content.starts_with("error (execution)"),
        "{}",
        tool_msgs[1].content
    );
    assert!(tool_msgs[2].content.contains("42"));
    // The second model call saw all three results.
    let second = &model.requests()[1];
    assert_eq!(
        second
            .messages
            .iter()
            .filter(|m| m.role == Role::Tool)
            .count(),
        3
    );
    assert_eq!(second.tool_choice, ToolChoice::Auto);
    let results = events
        .iter()
        .filter(|e| matches!(e, AgentEvent::ToolResult { .. }))
        .count();
    assert_eq!(results, 3);
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
