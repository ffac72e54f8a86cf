//! The OpenAI-compatible backend: against a real OpenAI-compatible server
//! (`mistralrs-server-core` serving the tiny model, in this test process), and against a
//! fault-injecting stand-in server for the failures a real one produces only by accident
//! (429, 500, stalls, malformed SSE).

use std::{
    net::SocketAddr,
    process::{Command, Output, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::post, Router};
use serde_json::Value;

use super::common::{stderr, stdout, verity, write_file};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn serve(rt: &tokio::runtime::Runtime, app: Router) -> SocketAddr {
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    })
}

fn run(base_url: &str, extra: &[&str]) -> (Output, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(dir.path(), "config.toml", "");
    let out = Command::new(verity())
        .arg("run")
        .arg("--config")
        .arg(&config)
        .args(["--json", "--base-url", base_url])
        .args(extra)
        .arg("What is 2+2?")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let events = stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (out, events)
}

#[test]
fn talks_to_a_real_openai_compatible_server() {
    use mistralrs::core::{AutoDeviceMapParams, ModelDType, ModelSelected};
    use mistralrs_server_core::{
        mistralrs_for_server_builder::MistralRsForServerBuilder,
        mistralrs_server_router_builder::MistralRsServerRouterBuilder,
    };

    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("tiny");
    let out = Command::new(verity())
        .args(["model", "tiny", "--out"])
        .arg(&model_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let model_id = model_dir.display().to_string();
    let rt = runtime();
    let app = rt.block_on(async {
        let model = ModelSelected::Plain {
            model_id: model_id.clone(),
            tokenizer_json: None,
            arch: None,
            dtype: ModelDType::Auto,
            topology: None,
            organization: None,
            write_uqff: None,
            from_uqff: None,
            imatrix: None,
            calibration_file: None,
            max_seq_len: AutoDeviceMapParams::DEFAULT_MAX_SEQ_LEN,
            max_batch_size: AutoDeviceMapParams::DEFAULT_MAX_BATCH_SIZE,
            hf_cache_path: None,
            matformer_config_path: None,
            matformer_slice_name: None,
        };
        let state = MistralRsForServerBuilder::new()
            .with_model(model)
            .with_cpu(true)
            .build()
            .await
            .unwrap();
        MistralRsServerRouterBuilder::new()
            .with_mistralrs(state)
            .with_include_swagger_routes(false)
            .build()
            .await
            .unwrap()
    });
    let addr = serve(&rt, app);
    let (out, events) = run(
        &format!("http://{addr}/v1"),
        &[
            "--model",
            &model_id,
            "--max-tokens-per-call",
            "24",
            "--max-turns",
            "2",
        ],
    );
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "{}",
        stderr(&out)
    );
    let output = &events
        .iter()
        .find(|e| e["type"] == "model_output")
        .unwrap_or_else(|| panic!("no model output: {events:#?}\n{}", stderr(&out)))["output"];
    assert!(
        output["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "{output:#}"
    );
    assert!(output["finish"].is_string(), "{output:#}");
    // What the server could not give is recorded, not invented.
    let missing = output["missing"].as_array().unwrap();
    assert!(
        output["token_ids"].is_array()
            || missing
                .iter()
                .any(|m| m.as_str().unwrap().starts_with("token_ids")),
        "{output:#}"
    );
    assert!(events.iter().any(|e| e["type"] == "finished"));
}

#[derive(Clone)]
struct Faults {
    hits: Arc<AtomicUsize>,
    mode: &'static str,
}

const GOOD_STREAM: &str = concat!(
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"fo\"},\"logprobs\":{\"content\":[{\"token\":\"token_id:70\",\"logprob\":-0.5}]}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ur\"},\"logprobs\":{\"content\":[{\"token\":\"token_id:71\",\"logprob\":-0.25}]},\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n",
    "data: [DONE]\n\n",
);

const CALLS_IN_TEXT: &str = concat!(
    r#"data: {"choices":[{"index":0,"delta":{"content":"Both.\n<tool_call>\n{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2+2\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"calculator\", \"arguments\": {\"expression\": \"3*3\"}}\n</tool_call>"},"finish_reason":"stop"}]}"#,
    "\n\n",
    "data: [DONE]\n\n",
);

const ANSWER_STREAM: &str = concat!(
    r#"data: {"choices":[{"index":0,"delta":{"content":"4 and 9"},"finish_reason":"stop"}]}"#,
    "\n\n",
    "data: [DONE]\n\n",
);

fn sse(body: &'static str) -> axum::response::Response {
    ([("content-type", "text/event-stream")], body).into_response()
}

/// Stand-in for a flaky remote inference server.
async fn flaky(State(f): State<Faults>) -> axum::response::Response {
    let n = f.hits.fetch_add(1, Ordering::SeqCst);
    match f.mode {
        "429-then-ok" if n < 2 => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "0")],
            "slow down",
        )
            .into_response(),
        "500" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        "400" => (StatusCode::BAD_REQUEST, "{\"error\":\"bad model\"}").into_response(),
        "malformed" => sse("data: {\"choices\": [oops\n\n"),
        "truncated" => {
            sse("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"fo\"}}]}\n\n")
        }
        // A server without a tool parser (llama.cpp without --jinja, vLLM without
        // --enable-auto-tool-choice) leaves Qwen-layout calls in the text.
        "calls-in-text" if n == 0 => sse(CALLS_IN_TEXT),
        "calls-in-text" => sse(ANSWER_STREAM),
        "stall" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            sse(GOOD_STREAM)
        }
        _ => sse(GOOD_STREAM),
    }
}

fn flaky_server(rt: &tokio::runtime::Runtime, mode: &'static str) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/v1/chat/completions", post(flaky))
        .with_state(Faults {
            hits: hits.clone(),
            mode,
        });
    (format!("http://{}/v1", serve(rt, app)), hits)
}

/// Every call a server left in the text is read (mistral.rs's parser keeps only the
/// first `<tool_call>` block): both run, and the model gets both results.
#[test]
fn every_call_left_in_the_text_is_read() {
    let rt = runtime();
    let (url, hits) = flaky_server(&rt, "calls-in-text");
    let (out, events) = run(&url, &["--model", "m", "--policy", "trusted"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let first = &events.iter().find(|e| e["type"] == "model_output").unwrap()["output"];
    assert_eq!(first["text"], "Both.", "{first}");
    let exprs: Vec<&Value> = first["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["arguments"]["expression"])
        .collect();
    assert_eq!(exprs, ["2+2", "3*3"], "{first}");
    assert!(
        first["parse_failures"].as_array().is_none_or(Vec::is_empty),
        "{first}"
    );
    let results = events.iter().filter(|e| e["type"] == "tool_result").count();
    assert_eq!(results, 2, "{events:?}");
    let last = stdout(&out).lines().last().unwrap_or_default().to_owned();
    assert!(last.contains("4 and 9"), "{last}");
}

#[test]
fn retries_429_then_reads_vllm_token_ids() {
    let rt = runtime();
    let (url, hits) = flaky_server(&rt, "429-then-ok");
    let (out, events) = run(&url, &["--model", "m", "--vllm"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(hits.load(Ordering::SeqCst), 3, "two 429s, then success");
    let output = &events.iter().find(|e| e["type"] == "model_output").unwrap()["output"];
    assert_eq!(output["text"], "four");
    assert_eq!(output["token_ids"], serde_json::json!([70, 71]));
    assert_eq!(output["logprobs"], serde_json::json!([-0.5, -0.25]));
    assert_eq!(output["usage"]["completion_tokens"], 2);
}

#[test]
fn server_faults_are_clear_errors() {
    let rt = runtime();
    for (mode, needle, hits_expected) in [
        ("500", "HTTP 500", Some(3)),
        ("400", "HTTP 400", Some(1)),
        ("malformed", "malformed reply from the server", None),
        ("truncated", "ended before the reply finished", None),
        ("stall", "no reply within", None),
    ] {
        let (url, hits) = flaky_server(&rt, mode);
        let (out, _) = run(
            &url,
            &["--model", "m", "--http-retries", "2", "--http-timeout", "1"],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{mode}: {err}");
        assert!(err.contains(needle), "{mode}: {err}");
        assert!(!err.contains("panicked"), "{mode}: {err}");
        if let Some(n) = hits_expected {
            assert_eq!(hits.load(Ordering::SeqCst), n, "{mode}");
        }
    }
}
