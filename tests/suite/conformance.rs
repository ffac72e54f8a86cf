//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, Node 22)
//! against `verity serve --http`: every server scenario that applies to a tools-only
//! server. A check may only fail when the suite itself marks it untestable here (it needs
//! one of the suite's own diagnostic fixture tools, e.g. `test_logging_tool`).

use std::process::Command;

use serde_json::Value;

use super::common::{node22_path, node_modules, HttpServer};

const SCENARIOS: &[&str] = &[
    "server-initialize",
    "server-session-lifecycle",
    "server-stateless",
    "ping",
    "tools-list",
    "dns-rebinding-protection",
    "http-header-validation",
];

fn run_scenario(url: &str, scenario: &str) -> Vec<Value> {
    let out = Command::new("node")
        .arg(node_modules().join("@modelcontextprotocol/conformance/dist/index.js"))
        .args(["server", "--url", url, "--scenario", scenario, "--verbose"])
        .env("PATH", node22_path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the conformance suite: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // The verbose report is the first top-level JSON array in the output.
    let start = text
        .find("\n[")
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{scenario}: no JSON report in output:\n{text}"));
    let mut de = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Vec<Value>>();
    match de.next() {
        Some(Ok(checks)) => checks,
        other => panic!("{scenario}: unreadable report ({other:?}):\n{text}"),
    }
}

#[test]
fn conformance_suite_server_scenarios_pass() {
    let server = HttpServer::start(&[]);
    let mut failures = Vec::new();
    let mut passed = 0;
    for scenario in SCENARIOS {
        let checks = run_scenario(&server.url, scenario);
        assert!(!checks.is_empty(), "{scenario}: no checks ran");
        for c in checks {
            let status = c["status"].as_str().unwrap_or_default();
            let untestable = c["details"]["untestable"] == true;
            let not_applicable = status == "INFO" || status == "SKIPPED";
            match status {
                "SUCCESS" => passed += 1,
                _ if untestable || not_applicable => {}
                _ => failures.push(format!(
                    "{scenario}/{}: {} {}",
                    c["id"].as_str().unwrap_or_default(),
                    status,
                    c["errorMessage"].as_str().unwrap_or_default()
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "conformance failures:\n{}",
        failures.join("\n")
    );
    assert!(passed >= 40, "only {passed} checks passed");
}
