//! The MCP Inspector CLI (`@modelcontextprotocol/inspector --cli`) against `verity serve`
//! over stdio and HTTP.

use std::process::Command;

use serde_json::Value;

use super::common::{node_modules, verity, HttpServer};

fn inspector(args: &[&str]) -> Value {
    let home = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(node_modules().join(".bin/inspector"))
        .args(args)
        .env("HOME", home.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the inspector: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "inspector failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("inspector output is not JSON ({e}): {text}"))
}

#[test]
fn inspector_cli_over_stdio() {
    let v = verity();
    let v = v.to_str().unwrap_or_default();
    let listed = inspector(&["--cli", v, "serve", "--method", "tools/list"]);
    assert_eq!(listed["tools"][0]["name"], "calculator", "{listed}");
    let called = inspector(&[
        "--cli",
        v,
        "serve",
        "--method",
        "tools/call",
        "--tool-name",
        "calculator",
        "--tool-arg",
        "expression=1/3 + 1/6",
    ]);
    assert_eq!(called["structuredContent"]["exact"], "1/2", "{called}");
}

#[test]
fn inspector_cli_over_http() {
    let server = HttpServer::start(&[]);
    let listed = inspector(&[
        "--cli",
        &server.url,
        "--transport",
        "http",
        "--method",
        "tools/list",
    ]);
    assert_eq!(listed["tools"][0]["name"], "calculator", "{listed}");
    let called = inspector(&[
        "--cli",
        &server.url,
        "--transport",
        "http",
        "--method",
        "tools/call",
        "--tool-name",
        "calculator",
        "--tool-arg",
        "expression=2^64",
    ]);
    assert_eq!(
        called["structuredContent"]["exact"], "18446744073709551616",
        "{called}"
    );
}
