//! `verity tools list|call` through the binary.

use serde_json::Value;

use super::common::{run, stderr, stdout, write_file};

#[test]
fn tools_list_shows_the_calculator() {
    let out = run(&["tools", "list"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).starts_with("calculator  [read-only, idempotent]"),
        "{}",
        stdout(&out)
    );
    let out = run(&["tools", "list", "--json"]);
    let specs: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(specs[0]["name"], "calculator");
    assert_eq!(specs[0]["annotations"]["read_only"], true);
    assert!(specs[0]["input_schema"]["properties"]["expression"].is_object());
}

#[test]
fn tools_call_prints_exact_and_decimal_forms() {
    let out = run(&["tools", "call", "calculator", r#"{"expression":"17/3*3"}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "exact: 17\n");
    let out = run(&["tools", "call", "calculator", r#"{"expression":"17/3"}"#]);
    assert_eq!(stdout(&out), "exact: 17/3\ndecimal: 5.66666666666667\n");
    let out = run(&[
        "tools",
        "call",
        "calculator",
        r#"{"expression":"sqrt(2)", "precision": 30}"#,
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(v["result"]["decimal"], "1.41421356237309504880168872421");
    assert_eq!(v["result"]["exact"], Value::Null);
    assert_eq!(v["decision"]["verdict"], "allow");
    assert_eq!(v["decision"]["rule_id"], "calculator");
}

#[test]
fn tools_call_errors_have_exit_codes_and_messages() {
    let out = run(&["tools", "call", "calculator", r#"{"expression":"sine(1)"}"#]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "verity: calculator: unknown function 'sine' at column 1 — did you mean 'sin'?\n"
    );
    let out = run(&["tools", "call", "calculator", "{not json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("arguments must be a JSON object"));
    let out = run(&["tools", "call", "nope", "{}"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown tool 'nope'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn ask_without_a_tty_is_denied_unless_yes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let p = write_file(dir.path(), "ask.toml", "default = \"ask\"\n");
    let p = p.to_str().unwrap_or_default();
    let out = run(&[
        "tools",
        "call",
        "calculator",
        r#"{"expression":"1+1"}"#,
        "--policy",
        p,
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("needs approval") && stderr(&out).contains("--yes"),
        "{}",
        stderr(&out)
    );
    let out = run(&[
        "tools",
        "call",
        "calculator",
        r#"{"expression":"1+1"}"#,
        "--policy",
        p,
        "--yes",
    ]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "exact: 2\n");
}

#[test]
fn audit_log_records_every_decision() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let audit = dir.path().join("audit.jsonl");
    let audit_s = audit.to_str().unwrap_or_default();
    for expr in ["1+1", "api_key"] {
        let args = format!(r#"{{"expression":"{expr}"}}"#);
        let _ = run(&["tools", "call", "calculator", &args, "--audit", audit_s]);
    }
    let text = std::fs::read_to_string(&audit).unwrap_or_default();
    let records: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(records.len(), 2, "{text}");
    assert_eq!(records[0]["decision"], "allow");
    assert_eq!(records[0]["caller"]["kind"], "cli");
    assert_eq!(records[1]["decision"], "deny");
    assert_eq!(records[1]["rule_id"], "no-secrets");
    assert_eq!(records[1]["args_digest"].as_str().map(str::len), Some(64));
    assert!(
        !text.contains("api_key"),
        "audit log must not contain raw arguments"
    );
}

/// The subcommands a help text lists under `Commands:` (clap's own `help` left out).
fn listed_subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A command's line starts with two spaces; wrapped descriptions with more.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// Every subcommand's help renders — found by walking the real command tree from
/// `verity --help` down, not from a list kept by hand (clap checks argument definitions
/// only when a command is built, so a clash would otherwise surface as a panic for a
/// user; `Command::debug_assert` in main.rs checks the whole tree too).
#[test]
fn every_subcommand_has_working_help() {
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    let mut seen = Vec::new();
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = run(&args);
        assert!(out.status.success(), "{path:?}: {}", stderr(&out));
        let help = stdout(&out);
        assert!(help.contains("Usage"), "{path:?}");
        for sub in listed_subcommands(&help) {
            let mut next = path.clone();
            next.push(sub);
            todo.push(next);
        }
        seen.push(path.join(" "));
    }
    // The tree was walked, not just the top: nested commands are there too.
    for expected in [
        "run",
        "rollout",
        "tools call",
        "index build",
        "policy explain",
    ] {
        assert!(seen.iter().any(|s| s == expected), "{expected}: {seen:?}");
    }
}

/// Bad `--extra-body` / `--dtype` values are one clear line each, before any model loads:
/// a field Verity sets itself, a non-object, extra fields for the embedded engine, an
/// unknown dtype.
#[test]
fn bad_model_options_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(dir.path(), "config.toml", "");
    let config = config.to_str().unwrap();
    let http = [
        "run",
        "--config",
        config,
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--model",
        "x",
    ];
    let embedded = ["run", "--config", config, "--model", "tiny"];
    for (args, extra, expected) in [
        (
            &http[..],
            ["--extra-body", r#"{"messages": []}"#],
            "extra body field 'messages' is set by Verity itself",
        ),
        (
            &http[..],
            ["--extra-body", "[1]"],
            "--extra-body: expected a JSON object",
        ),
        (
            &embedded[..],
            ["--extra-body", r#"{"top_k": 5}"#],
            "--extra-body / extra_body is for HTTP servers",
        ),
        (
            &embedded[..],
            ["--dtype", "f8"],
            "--dtype: unknown dtype 'f8'; choose auto, f32, bf16 or f16",
        ),
    ] {
        let mut all = args.to_vec();
        all.extend(extra);
        all.push("hi");
        let out = run(&all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(expected), "{extra:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{extra:?}: {err}");
    }
}
