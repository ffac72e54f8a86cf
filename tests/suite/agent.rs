//! `verity run` end to end with the generated tiny model (real mistral.rs on the CPU): strict
//! tool calls, policy denials, parallel calls, budgets, unparseable calls, the MCP hub, and
//! the OpenAI backend against a real OpenAI-compatible server.
//!
//! The tiny model's weights are random, so nothing here asserts on its prose — only on the
//! structure of what happened. Its tokenizer maps byte `b` to token id `b` (no merges), so
//! prompt ids decode to the exact text the engine saw.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
};

use serde_json::Value;

use super::common::{python, repo, stderr, stdout, verity, write_file};

struct Fixture {
    _dir: tempfile::TempDir,
    model: PathBuf,
    config: PathBuf,
}

/// The tiny model, generated once per test binary (through the binary, like a user would).
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let model = super::common::tiny_model(dir.path());
        // An empty config keeps the developer's own ~/.config/verity out of the tests.
        let config = write_file(dir.path(), "config.toml", "");
        Fixture {
            _dir: dir,
            model,
            config,
        }
    })
}

fn agent(args: &[&str], prompt: &str) -> (Output, Vec<Value>) {
    let f = fixture();
    let out = Command::new(verity())
        .arg("run")
        .arg("--config")
        .arg(&f.config)
        .arg("--json")
        .args(if args.contains(&"--max-tokens-per-call") {
            &[][..]
        } else {
            &["--max-tokens-per-call", "128"][..]
        })
        .args(args)
        .arg(prompt)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let events = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l}\nstderr: {}", stderr(&out)))
        })
        .collect();
    (out, events)
}

fn model_arg() -> String {
    fixture().model.display().to_string()
}

fn of_type<'a>(events: &'a [Value], ty: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == ty).collect()
}

/// Decodes the tiny tokenizer's ids: bytes below 256, special tokens above.
fn decode(ids: &Value) -> String {
    const SPECIAL: [&str; 9] = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<tool_call>",
        "</tool_call>",
        "<think>",
        "</think>",
        "<tool_response>",
        "</tool_response>",
    ];
    let mut bytes = Vec::new();
    for id in ids.as_array().unwrap() {
        let id = id.as_u64().unwrap() as usize;
        if id < 256 {
            bytes.push(id as u8);
        } else {
            bytes.extend(SPECIAL.get(id - 256).unwrap_or(&"<|reserved|>").as_bytes());
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn finished(events: &[Value]) -> &Value {
    let f = of_type(events, "finished");
    assert_eq!(f.len(), 1, "{events:#?}");
    f[0]
}

#[test]
fn strict_mode_forces_a_valid_call_whose_result_reaches_the_next_prompt() {
    let m = model_arg();
    let (out, events) = agent(
        &[
            "--model",
            &m,
            "--strict",
            "--tool-choice",
            "calculator",
            "--tools",
            "calculator",
            "--max-turns",
            "2",
        ],
        "What is 2+2?",
    );
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "{}",
        stderr(&out)
    );
    let proposed = of_type(&events, "tool_call_proposed");
    assert!(!proposed.is_empty(), "{events:#?}");
    assert_eq!(proposed[0]["call"]["name"], "calculator");
    assert!(proposed[0]["call"]["arguments"]["expression"].is_string());
    let result = of_type(&events, "tool_result")[0];
    assert_eq!(result["tool"], "calculator");
    assert_eq!(result["result"]["decision"]["verdict"], "allow");
    let text = result["result"]["outcome"]["text"].as_str().unwrap();

    let outputs = of_type(&events, "model_output");
    assert_eq!(outputs.len(), 2, "two model calls within --max-turns 2");
    let first = &outputs[0]["output"];
    assert_eq!(first["finish"], "tool_calls");
    // The engine's own token ids and one logprob per generated token.
    let n = first["usage"]["completion_tokens"].as_u64().unwrap();
    assert_eq!(
        first["token_ids"].as_array().unwrap().len() as u64,
        n,
        "{first:#}"
    );
    assert_eq!(first["logprobs"].as_array().unwrap().len() as u64, n);
    assert!(decode(&first["token_ids"]).starts_with("<tool_call>"));
    let second_prompt = decode(&outputs[1]["output"]["prompt_ids"]);
    let response = second_prompt
        .rsplit("<tool_response>\n")
        .next()
        .and_then(|r| r.split("\n</tool_response>").next())
        .unwrap_or_default();
    assert!(
        response.ends_with(text),
        "tool result {text:?} not in the next prompt:\n{second_prompt}"
    );
    assert!(finished(&events)["turns"].as_u64().unwrap() <= 2);
}

/// Later prompts of the engine-rendered tiny model continue the sampled ids (token in,
/// token out), and a reply that is one whole call still ends there, as chat requests end
/// it — a model trained through the engine never learned to write the end of turn after a
/// call. The grammar forces a call and then text; only the call may be generated.
#[test]
fn later_prompts_continue_the_ids_and_a_whole_call_still_ends_the_reply() {
    let dir = tempfile::tempdir().unwrap();
    let grammar = write_file(
        dir.path(),
        "call-then-text.lark",
        concat!(
            r#"start: <tool_call> "{\"name\":\"calculator\",\"arguments\":{\"expression\":\"2+2\"}}""#,
            " </tool_call> /[a-z]{6}/\n"
        ),
    );
    let m = model_arg();
    let (out, events) = agent(
        &[
            "--model",
            &m,
            "--grammar",
            grammar.to_str().unwrap(),
            "--tools",
            "calculator",
            "--max-turns",
            "3",
        ],
        "What is 2+2?",
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let outputs = of_type(&events, "model_output");
    assert_eq!(outputs.len(), 3, "{events:#?}");
    for (i, o) in outputs.iter().enumerate() {
        let o = &o["output"];
        assert_eq!(o["finish"], "tool_calls", "turn {i}: {o:#}");
        assert_eq!(
            decode(&o["token_ids"]),
            r#"<tool_call>{"name":"calculator","arguments":{"expression":"2+2"}}</tool_call>"#,
            "turn {i}"
        );
        // The first prompt is the engine's rendering; each later one the previous prompt
        // and reply ids, then the rest — which here re-renders to the same ids.
        assert_eq!(
            o.get("prompt_view").and_then(Value::as_str),
            (i > 0).then_some("continued"),
            "turn {i}"
        );
        if i > 0 {
            let prev = &outputs[i - 1]["output"];
            let mut head: Vec<Value> = prev["prompt_ids"].as_array().unwrap().clone();
            head.extend(prev["token_ids"].as_array().unwrap().iter().cloned());
            let prompt = o["prompt_ids"].as_array().unwrap();
            assert_eq!(&prompt[..head.len()], &head[..], "turn {i}");
        }
    }
    assert_eq!(of_type(&events, "tool_result").len(), 3);
}

#[test]
fn a_policy_denial_is_reported_to_the_model_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_file(
        dir.path(),
        "p.toml",
        "default = \"allow\"\n[[rule]]\nid = \"no-calc\"\ntool = \"calculator\"\ndecision = \"deny\"\nreason = \"arithmetic is off today\"\n",
    );
    let m = model_arg();
    let (out, events) = agent(
        &[
            "--model",
            &m,
            "--strict",
            "--tool-choice",
            "calculator",
            "--tools",
            "calculator",
            "--max-turns",
            "2",
            "--policy",
            policy.to_str().unwrap(),
        ],
        "What is 2+2?",
    );
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "{}",
        stderr(&out)
    );
    let decision = of_type(&events, "policy_decision")[0];
    assert_eq!(decision["verdict"], "deny");
    assert_eq!(decision["rule_id"], "no-calc");
    let result = of_type(&events, "tool_result")[0];
    assert_eq!(result["result"]["outcome"]["failure"], "denied");
    assert_eq!(
        result["result"]["duration_ms"], 0.0,
        "a denied call does not run"
    );
    let second_prompt = decode(&of_type(&events, "model_output")[1]["output"]["prompt_ids"]);
    assert!(
        second_prompt
            .contains("permission denied by policy rule 'no-calc': arithmetic is off today"),
        "{second_prompt}"
    );
}

/// Three calls of one turn all run, and `run --json` reports each one's life in order:
/// proposed → decision → started → result. (That results reach the model in call order
/// while events come as calls finish is a unit test with slow tools: agent_tests.rs.)
#[test]
fn parallel_calls_all_run_and_report_their_life_in_order() {
    let m = model_arg();
    let (_, events) = agent(
        &[
            "--model",
            &m,
            "--strict",
            "--tool-choice",
            "required",
            "--calls-per-turn",
            "3",
            "--tools",
            "calculator",
            "--max-turns",
            "1",
            "--max-tokens-per-call",
            "400",
        ],
        "Compute three things.",
    );
    let proposed: Vec<String> = of_type(&events, "tool_call_proposed")
        .iter()
        .map(|e| e["call"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(proposed.len(), 3, "{events:#?}");
    let mut results: Vec<String> = of_type(&events, "tool_result")
        .iter()
        .map(|e| e["call_id"].as_str().unwrap().to_owned())
        .collect();
    results.sort();
    let mut sorted = proposed.clone();
    sorted.sort();
    assert_eq!(results, sorted, "every call has one result");
    let unique: std::collections::HashSet<&String> = proposed.iter().collect();
    assert_eq!(unique.len(), 3, "distinct call ids");
    for id in &proposed {
        let life: Vec<&str> = events
            .iter()
            .filter(|e| e["call_id"] == id.as_str() || e["call"]["id"] == id.as_str())
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            life,
            [
                "tool_call_proposed",
                "policy_decision",
                "tool_started",
                "tool_result"
            ],
            "{id}"
        );
    }
}

#[test]
fn the_turn_budget_stops_a_run_with_exit_code_3() {
    let m = model_arg();
    let (out, events) = agent(
        &[
            "--model",
            &m,
            "--strict",
            "--tool-choice",
            "calculator",
            "--tools",
            "calculator",
            "--max-turns",
            "1",
        ],
        "What is 2+2?",
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let f = finished(&events);
    assert_eq!(f["stop"], "max_turns");
    assert_eq!(f["turns"], 1);
    assert!(f["answer"].is_null());
}

#[test]
fn an_unparseable_call_is_a_parse_failure_event_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    // Forces `<tool_call>` followed by something that is not a JSON call.
    let grammar = write_file(
        dir.path(),
        "garbage.lark",
        "start: <tool_call> /[a-z ]{4,12}/ </tool_call>\n",
    );
    let m = model_arg();
    let (out, events) = agent(
        &[
            "--model",
            &m,
            "--grammar",
            grammar.to_str().unwrap(),
            "--tools",
            "calculator",
            "--max-turns",
            "2",
        ],
        "Use a tool.",
    );
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "{}",
        stderr(&out)
    );
    let failures = of_type(&events, "parse_failure");
    assert!(!failures.is_empty(), "{events:#?}");
    assert!(of_type(&events, "tool_result").is_empty(), "nothing ran");
    // The model was told what was wrong.
    let second_prompt = decode(&of_type(&events, "model_output")[1]["output"]["prompt_ids"]);
    assert!(
        second_prompt.contains("Your tool call could not be used"),
        "{second_prompt}"
    );
}

#[test]
fn unsupported_gguf_and_missing_models_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut gguf = b"GGUF".to_vec();
    gguf.extend(3u32.to_le_bytes());
    gguf.extend(0u64.to_le_bytes());
    gguf.extend(1u64.to_le_bytes());
    let key = b"general.architecture";
    gguf.extend((key.len() as u64).to_le_bytes());
    gguf.extend(key);
    gguf.extend(8u32.to_le_bytes());
    gguf.extend(6u64.to_le_bytes());
    gguf.extend(b"gemma3");
    let path = dir.path().join("gemma.gguf");
    std::fs::write(&path, gguf).unwrap();
    let (out, _) = agent(&["--model", path.to_str().unwrap()], "hi");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("'gemma3' is not supported") && err.contains("qwen3"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let (out, _) = agent(&["--model", "./no/such/model"], "hi");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no such file or directory"),
        "{}",
        stderr(&out)
    );
}

fn hub_config(dir: &Path) -> PathBuf {
    let calc = repo().join("bench/reference/calc_server.py");
    write_file(
        dir,
        "mcp.toml",
        &format!(
            "[servers.local]\ncommand = {:?}\nargs = [\"serve\"]\n\n\
             [servers.py]\ncommand = {:?}\nargs = [{:?}, \"stdio\"]\n\n\
             [servers.broken]\ncommand = \"sh\"\nargs = [\"-c\", \"exit 1\"]\nstart_timeout_s = 5\n",
            verity().display().to_string(),
            python().display().to_string(),
            calc.display().to_string(),
        ),
    )
}

#[test]
fn mcp_hub_merges_external_tools_and_survives_a_broken_server() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_config(dir.path());
    let m = model_arg();
    let hub_arg = hub.to_str().unwrap();
    // A third-party (Python SDK) server's tool, approved.
    let (out, events) = agent(
        &[
            "--model",
            &m,
            "--mcp",
            hub_arg,
            "--strict",
            "--tool-choice",
            "py.calculator",
            "--tools",
            "py.calculator",
            "--max-turns",
            "1",
            "--yes",
        ],
        "What is 2+2?",
    );
    let err = stderr(&out);
    assert!(
        err.contains("MCP server 'broken' unavailable (skipped)"),
        "{err}"
    );
    assert!(err.contains("MCP server 'local': 3 tools"), "{err}");
    assert!(err.contains("MCP server 'py': 1 tools"), "{err}");
    let result = of_type(&events, "tool_result")[0];
    assert_eq!(result["tool"], "py.calculator");
    assert_eq!(result["result"]["approval"]["by"], "--yes");
    assert!(
        result["result"]["outcome"]["failure"].is_null()
            || result["result"]["outcome"]["failure"] == "execution",
        "{result:#}"
    );

    // `verity serve` as an external server; under the default policy external tools ask,
    // and headless without --yes that is a denial the model can read.
    let external_call = |extra: &[&str]| {
        let mut args = vec![
            "--model",
            &m,
            "--mcp",
            hub_arg,
            "--strict",
            "--tool-choice",
            "local.calculator",
            "--tools",
            "local.calculator",
            "--max-turns",
            "1",
        ];
        args.extend_from_slice(extra);
        agent(&args, "What is 2+2?").1
    };
    let events = external_call(&[]);
    let decision = of_type(&events, "policy_decision")[0];
    assert_eq!(decision["verdict"], "ask");
    assert_eq!(decision["rule_id"], "external-ask");
    let result = of_type(&events, "tool_result")[0];
    assert_eq!(result["result"]["outcome"]["failure"], "denied");

    let events = external_call(&["--yes"]);
    let result = of_type(&events, "tool_result")[0];
    assert_eq!(result["tool"], "local.calculator");
    assert_eq!(result["result"]["approval"]["approval"], "approved");
}
