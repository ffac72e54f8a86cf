//! The official Python MCP SDK against `verity serve`, over stdio and streamable HTTP.

use serde_json::{json, Value};

use super::common::{python_client, verity, write_file, HttpServer};

fn calls(v: &Value) -> &Vec<Value> {
    v["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no calls in client report: {v}"))
}

fn stdio_client(extra_client: &[&str], calls_json: &Value, serve_args: &[&str]) -> Value {
    let calls_arg = calls_json.to_string();
    let verity = verity();
    let verity = verity.to_str().unwrap_or_default();
    let mut args: Vec<&str> = vec!["--calls", &calls_arg];
    args.extend_from_slice(extra_client);
    args.push("--stdio");
    args.push(verity);
    args.push("serve");
    args.extend_from_slice(serve_args);
    python_client(&args)
}

fn assert_calculator_listed(report: &Value) {
    let tools = report["tools"].as_array().cloned().unwrap_or_default();
    let calc = tools
        .iter()
        .find(|t| t["name"] == "calculator")
        .unwrap_or_else(|| panic!("calculator not listed: {report}"));
    assert_eq!(calc["annotations"]["readOnlyHint"], true);
    assert_eq!(calc["annotations"]["openWorldHint"], false);
    assert_eq!(calc["inputSchema"]["required"], json!(["expression"]));
    assert_eq!(
        calc["outputSchema"]["properties"]["exact"]["type"],
        json!(["string", "null"])
    );
}

fn standard_calls() -> Value {
    json!([
        ["calculator", {"expression": "17/3"}],
        ["calculator", {"expression": "0.1 + 0.2"}],
        ["calculator", {"expression": "(1 + 2))"}],
        ["calculator", {"expression": 42}],
        ["calculator", {}],
        ["no_such_tool", {"x": 1}],
        ["calculator", {"expression": "2^200"}]
    ])
}

fn assert_standard_results(report: &Value) {
    let c = calls(report);
    assert_eq!(c.len(), 7, "{report}");
    assert_eq!(c[0]["is_error"], false);
    assert_eq!(
        c[0]["structured"],
        json!({"expression": "17/3", "value": "17/3", "exact": "17/3",
               "decimal": "5.66666666666667", "is_exact": true, "precision": 15})
    );
    assert_eq!(c[1]["structured"]["decimal"], "0.3");
    // Errors a model can act on, as tool results — not protocol errors.
    assert_eq!(c[2]["is_error"], true);
    assert_eq!(c[2]["text"], "unexpected ')' at column 8");
    assert_eq!(c[3]["is_error"], true);
    assert!(
        c[3]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("expected a string"),
        "{}",
        c[3]
    );
    assert_eq!(c[4]["is_error"], true);
    assert!(
        c[4]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("missing field `expression`"),
        "{}",
        c[4]
    );
    // Unknown tool: a JSON-RPC error, and the server keeps serving.
    assert!(
        c[5]["protocol_error"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown tool 'no_such_tool'"),
        "{}",
        c[5]
    );
    assert_eq!(
        c[6]["structured"]["exact"],
        "1606938044258990275541962092341162602522202993782792835301376"
    );
}

#[test]
fn python_sdk_over_stdio() {
    let report = stdio_client(&[], &standard_calls(), &[]);
    assert_calculator_listed(&report);
    assert_standard_results(&report);
}

#[test]
fn python_sdk_over_stdio_legacy_handshake() {
    let report = stdio_client(&["--mode", "legacy"], &standard_calls(), &[]);
    assert_calculator_listed(&report);
    assert_standard_results(&report);
}

#[test]
fn python_sdk_over_http() {
    let server = HttpServer::start(&[]);
    let calls = standard_calls().to_string();
    let report = python_client(&["--url", &server.url, "--calls", &calls]);
    assert_calculator_listed(&report);
    assert_standard_results(&report);
    let report = python_client(&["--url", &server.url, "--mode", "legacy", "--calls", &calls]);
    assert_standard_results(&report);
}

/// A slow or pathological call never delays another client's call: while one client sends
/// the calculator inputs that used to take 43 s (`round(2/3, 9999)`) and the heaviest
/// in-limit ones, plus sandboxed busy loops, a second client's `1 + 1` answers within
/// 50 ms each (median). The slowest gets 1 s: a call queued behind the 2 s busy loop or
/// the old 43 s calculator input would exceed it, while scheduler noise on a loaded
/// two-core CI machine (one run measured 254 ms) stays well below it.
#[test]
fn a_pathological_call_does_not_delay_another_clients_call() {
    let server = HttpServer::start(&["--policy", "trusted"]);
    let mut heavy = Vec::new();
    for _ in 0..3 {
        heavy.push(json!(["code", {"code": "while True: pass", "timeout_ms": 2000}]));
        for e in [
            "round(2/3, 9999)",
            "factorial(3248) / factorial(3247)",
            "(10**9999 + 1) * (10**9999 - 1) / 7",
            "sqrt(2) ** 33000",
            "2 ** 33000 / 3 ** 20000",
        ] {
            for _ in 0..4 {
                heavy.push(json!(["calculator", {"expression": e}]));
            }
        }
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let heavy_file = write_file(dir.path(), "heavy.json", &Value::Array(heavy).to_string());
    let mut a = std::process::Command::new(super::common::python())
        .arg(super::common::repo().join("tests/clients/mcp_client.py"))
        .args([
            "--url",
            &server.url,
            "--client-name",
            "heavy",
            "--calls-file",
        ])
        .arg(&heavy_file)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the heavy client: {e}"));
    let light: Vec<Value> = (0..20)
        .map(|_| json!(["calculator", {"expression": "1 + 1"}]))
        .collect();
    let light = python_client(&[
        "--url",
        &server.url,
        "--client-name",
        "light",
        "--start-after",
        "0.5",
        "--calls",
        &Value::Array(light).to_string(),
    ]);
    // The heavy client (6 s of busy loops alone) is still at work: the two overlapped.
    let overlapped = matches!(a.try_wait(), Ok(None));
    let _ = a.kill();
    let _ = a.wait();
    assert!(overlapped, "the heavy client finished before the light one");
    let mut ms: Vec<f64> = calls(&light)
        .iter()
        .map(|c| {
            assert_eq!(c["structured"]["exact"], "2", "{c}");
            c["elapsed_ms"].as_f64().unwrap_or(f64::MAX)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    let worst = ms[ms.len() - 1];
    assert!(median < 50.0, "median {median:.1} ms: {ms:?}");
    assert!(worst < 1000.0, "slowest {worst:.1} ms: {ms:?}");
    eprintln!("light calls beside the heavy client: median {median:.1} ms, slowest {worst:.1} ms");
}

const ASK_POLICY: &str = r#"
default = "deny"
[[rule]]
id = "calc-ask"
tool = "calculator"
decision = "ask"
[[rule]]
id = "no-666"
tool = "calculator"
decision = "deny"
reason = "the number of the beast is not computed here"
when = { "args.expression" = { contains = "666" } }
"#;

#[test]
fn denied_call_carries_the_rules_reason() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let policy = write_file(dir.path(), "p.toml", ASK_POLICY);
    let policy = policy.to_str().unwrap_or_default();
    let report = stdio_client(
        &["--elicit", "accept"],
        &json!([["calculator", {"expression": "666 + 1"}], ["calculator", {"expression": "1+1"}]]),
        &["--policy", policy],
    );
    let c = calls(&report);
    assert_eq!(c[0]["is_error"], true);
    assert_eq!(
        c[0]["text"],
        "permission denied by policy rule 'no-666': the number of the beast is not computed here"
    );
    // The `ask` rule went to the client's user through elicitation, who approved.
    assert_eq!(c[1]["is_error"], false, "{report}");
    assert_eq!(c[1]["structured"]["exact"], "2");
    let elicited = report["elicited"].as_array().cloned().unwrap_or_default();
    assert_eq!(elicited.len(), 1, "{report}");
    assert!(elicited[0]
        .as_str()
        .unwrap_or_default()
        .contains("calc-ask"));
}

#[test]
fn ask_without_elicitation_support_is_denied_with_a_reason() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let policy = write_file(dir.path(), "p.toml", ASK_POLICY);
    let policy = policy.to_str().unwrap_or_default();
    let report = stdio_client(
        &[],
        &json!([["calculator", {"expression": "1+1"}]]),
        &["--policy", policy],
    );
    let c = calls(&report);
    assert_eq!(c[0]["is_error"], true);
    let text = c[0]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("calc-ask") && text.contains("does not support elicitation"),
        "{text}"
    );

    let report = stdio_client(
        &["--elicit", "decline"],
        &json!([["calculator", {"expression": "1+1"}]]),
        &["--policy", policy],
    );
    let c = calls(&report);
    assert_eq!(c[0]["is_error"], true);
    assert!(
        c[0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("did not approve"),
        "{report}"
    );
}

#[test]
fn budgets_run_out_per_client() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let policy = write_file(
        dir.path(),
        "p.toml",
        "default = \"allow\"\n[budget]\ncalls_per_minute = 2\n",
    );
    let policy = policy.to_str().unwrap_or_default();
    let report = stdio_client(
        &[],
        &json!([["calculator", {"expression": "1"}], ["calculator", {"expression": "2"}], ["calculator", {"expression": "3"}]]),
        &["--policy", policy],
    );
    let c = calls(&report);
    assert_eq!(c[0]["is_error"], false);
    assert_eq!(c[1]["is_error"], false);
    assert_eq!(c[2]["is_error"], true);
    let text = c[2]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("budget.calls_per_minute") && text.contains("mcp-client"),
        "{text}"
    );
    assert!(
        !text.contains("python-sdk-test"),
        "the client's own name is not its identity: {text}"
    );
}

/// Without tokens, the name a client gives itself is a label, not an identity: naming itself
/// "ops" does not match an `mcp-client:ops` rule, and a fresh name per session does not
/// get a fresh budget.
#[test]
fn a_clients_claimed_name_is_not_its_identity() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let policy = write_file(
        dir.path(),
        "p.toml",
        r#"
default = "deny"
[budget]
calls_per_minute = 2
[[rule]]
id = "ops-code"
tool = "calculator"
caller = "mcp-client:ops"
decision = "allow"
[[rule]]
id = "anyone-calc"
tool = "calculator"
when = { "args.expression" = { glob = "1*" } }
decision = "allow"
"#,
    );
    let server = HttpServer::start(&["--policy", policy.to_str().unwrap_or_default()]);
    let one = |name: &str, expr: &str| {
        let calls_json = json!([["calculator", {"expression": expr}]]).to_string();
        let r = python_client(&[
            "--url",
            &server.url,
            "--client-name",
            name,
            "--calls",
            &calls_json,
        ]);
        calls(&r)[0].clone()
    };
    let c = one("ops", "2+2");
    assert_eq!(c["is_error"], true, "a claimed name matched a rule: {c}");
    // Two calls allowed for `mcp-client` in this minute, whatever the names.
    assert_eq!(one("a", "1+1")["is_error"], false);
    assert_eq!(one("b", "1+2")["is_error"], false);
    let c = one("c", "1+3");
    assert_eq!(c["is_error"], true, "a fresh name reset the budget: {c}");
    assert!(
        c["text"]
            .as_str()
            .unwrap_or_default()
            .contains("calls_per_minute"),
        "{c}"
    );
}

#[test]
fn http_token_name_is_the_caller_policies_see() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let policy = write_file(
        dir.path(),
        "p.toml",
        r#"
default = "deny"
[[rule]]
id = "alice-only"
tool = "calculator"
caller = "mcp-client:alice"
decision = "allow"
"#,
    );
    let policy = policy.to_str().unwrap_or_default();
    let server = HttpServer::start(&[
        "--policy",
        policy,
        "--token",
        "alice:alice-secret-0123456789",
        "--token",
        "bob:bob-secret-0123456789ab",
    ]);
    let calls_json = json!([["calculator", {"expression": "6*7"}]]).to_string();
    let alice = python_client(&[
        "--url",
        &server.url,
        "--token",
        "alice-secret-0123456789",
        "--calls",
        &calls_json,
    ]);
    assert_eq!(calls(&alice)[0]["structured"]["exact"], "42", "{alice}");
    let bob = python_client(&[
        "--url",
        &server.url,
        "--token",
        "bob-secret-0123456789ab",
        "--calls",
        &calls_json,
    ]);
    assert_eq!(calls(&bob)[0]["is_error"], true);
    assert!(
        calls(&bob)[0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("mcp-client:bob")
            || calls(&bob)[0]["text"]
                .as_str()
                .unwrap_or_default()
                .contains("default"),
        "{bob}"
    );
}

#[test]
fn policy_reloads_on_edit_or_sighup_and_a_broken_edit_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let allow = "default = \"deny\"\n[[rule]]\nid = \"calc\"\ntool = \"calculator\"\ndecision = \"allow\"\n";
    let policy = write_file(dir.path(), "p.toml", allow);
    let server = HttpServer::start(&["--policy", policy.to_str().unwrap_or_default()]);
    let calls_json = json!([["calculator", {"expression": "1+1"}]]).to_string();
    let call = || python_client(&["--url", &server.url, "--calls", &calls_json]);
    assert_eq!(calls(&call())[0]["is_error"], false);

    // A broken edit: reported, and the previous policy stays in force.
    write_file(dir.path(), "p.toml", "default = \"perhaps\"\n");
    server.signal("HUP");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(calls(&call())[0]["is_error"], false);

    // A valid edit takes effect on SIGHUP.
    write_file(dir.path(), "p.toml", "default = \"deny\"\n");
    server.signal("HUP");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let after = call();
    assert_eq!(calls(&after)[0]["is_error"], true, "{after}");
    assert!(
        calls(&after)[0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("rule 'default'"),
        "{after}"
    );
}

/// Code sessions belong to their caller: over HTTP with two tokens, B naming A's session
/// gets a session of its own (not A's variables); each caller may hold only its share of
/// live sessions; a session started with 256 MiB cannot be asked to run under 16. A server
/// stopped with SIGTERM removes every live session's scratch directory.
#[test]
fn code_sessions_belong_to_their_caller() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = HttpServer::start_with_env(
        "127.0.0.1:0",
        &[
            "--policy",
            "trusted",
            "--token",
            "alice:alice-secret-0123456789",
            "--token",
            "bob:bob-secret-0123456789ab",
        ],
        &[("TMPDIR", tmp.path())],
    );
    let as_ = |token: &str, calls_json: Value| {
        let r = python_client(&[
            "--url",
            &server.url,
            "--token",
            token,
            "--calls",
            &calls_json.to_string(),
        ]);
        calls(&r).clone()
    };
    let alice = "alice-secret-0123456789";
    let bob = "bob-secret-0123456789ab";
    let c = as_(
        alice,
        json!([["code", {"code": "secret = 41", "session_id": "s"}], ["code", {"code": "secret + 1", "session_id": "s"}]]),
    );
    assert_eq!(c[1]["structured"]["value"], "42", "{c:?}");
    let c = as_(
        bob,
        json!([["code", {"code": "print(secret)", "session_id": "s"}]]),
    );
    let text = c[0]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("NameError"),
        "bob saw alice's session: {text}"
    );
    // Alice's session is untouched by Bob's.
    let c = as_(
        alice,
        json!([["code", {"code": "secret", "session_id": "s"}]]),
    );
    assert_eq!(c[0]["structured"]["value"], "41", "{c:?}");

    // Alice may hold 4 live sessions (she has "s"): three more, then a refusal …
    let more: Vec<Value> = (1..=4)
        .map(|i| json!(["code", {"code": "1", "session_id": format!("t{i}")}]))
        .collect();
    let c = as_(alice, Value::Array(more));
    assert!(c[..3].iter().all(|x| x["is_error"] == false), "{c:?}");
    assert_eq!(c[3]["is_error"], true, "{c:?}");
    assert!(
        c[3]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("most one caller may hold"),
        "{c:?}"
    );
    // … while Bob still gets sessions.
    let c = as_(bob, json!([["code", {"code": "2", "session_id": "b2"}]]));
    assert_eq!(c[0]["is_error"], false, "{c:?}");

    // Limits: the session's memory cap is fixed at its start; asking for less is refused.
    let c = as_(
        alice,
        json!([["code", {"code": "x = bytearray(100 * 2**20)", "session_id": "s", "memory_mb": 16}]]),
    );
    assert_eq!(c[0]["is_error"], true, "{c:?}");
    assert!(
        c[0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("use a new session_id"),
        "{c:?}"
    );

    // Six live sessions (alice s, t1–t3; bob s, b2), each with its scratch directory …
    let scratch = || -> Vec<String> {
        std::fs::read_dir(tmp.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("verity-session-"))
            .collect()
    };
    assert_eq!(scratch().len(), 6, "{:?}", scratch());
    // … and none left once the server has shut down.
    server
        .terminate()
        .unwrap_or_else(|e| panic!("verity serve: {e}"));
    assert_eq!(scratch(), Vec::<String>::new());
}
