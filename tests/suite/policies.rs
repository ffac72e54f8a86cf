//! `verity policy check|explain` and broken policy files.

use serde_json::Value;

use super::common::{run, stderr, stdout, write_file};

#[test]
fn presets_check_clean() {
    for preset in ["default", "strict", "trusted"] {
        let out = run(&["policy", "check", preset]);
        assert!(out.status.success(), "{preset}: {}", stdout(&out));
        assert!(
            stdout(&out).contains(" passed, 0 failed"),
            "{}",
            stdout(&out)
        );
    }
    let out = run(&[
        "policy",
        "check",
        &format!(
            "{}/examples/policies/research.toml",
            env!("CARGO_MANIFEST_DIR")
        ),
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn failing_inline_test_fails_the_check() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let p = write_file(
        dir.path(),
        "p.toml",
        "default = \"deny\"\n[[test]]\ntool = \"calculator\"\nexpect = \"allow\"\n",
    );
    let out = run(&["policy", "check", p.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("FAIL  line   2"), "{}", stdout(&out));
    assert!(stdout(&out).contains("0 passed, 1 failed"));
}

#[test]
fn broken_policies_are_refused_with_file_line_column() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cases = [
        ("syntax.toml", "default = \"ask\"\n[[rule]\nid = 1\n", ":2:", "unclosed"),
        ("unknown-key.toml", "default = \"ask\"\n[[rule]]\nid = \"a\"\ntool = \"x\"\ndecision = \"allow\"\nwhn = {}\n", ":6:1", "unknown field `whn`"),
        ("wrong-type.toml", "default = \"ask\"\n[[rule]]\nid = \"a\"\ntool = \"x\"\ndecision = 3\n", ":5:", "invalid type"),
        ("bad-regex.toml", "default = \"ask\"\n[[rule]]\nid = \"a\"\ntool = \"x\"\ndecision = \"deny\"\nwhen = { \"args.q\" = { regex = \"(unclosed\" } }\n", ":6:", "invalid regex"),
        ("bad-decision.toml", "default = \"maybe\"\n", ":1:11", "expected \"allow\", \"ask\" or \"deny\""),
        ("bad-path.toml", "default = \"ask\"\n[[rule]]\nid = \"a\"\ntool = \"x\"\ndecision = \"deny\"\nwhen = { \"argz.q\" = 1 }\n", ":6:", "must start with 'args'"),
        ("dup.toml", "default = \"ask\"\n[[rule]]\nid = \"a\"\ntool = \"x\"\ndecision = \"deny\"\n[[rule]]\nid = \"a\"\ntool = \"y\"\ndecision = \"deny\"\n", ":7:6", "duplicate rule id 'a'"),
        ("bad-op.toml", "default = \"ask\"\n[[rule]]\nid = \"a\"\ntool = \"x\"\ndecision = \"deny\"\nwhen = { \"args.n\" = { lte = 3, le = 2 } }\n", ":6:", "unknown operator 'lte'"),
        ("missing-default.toml", "[[rule]]\nid = \"a\"\ntool = \"x\"\ndecision = \"deny\"\n", ":1:1", "missing field `default`"),
    ];
    for (name, text, position, expected) in cases {
        let p = write_file(dir.path(), name, text);
        let out = run(&["policy", "check", p.to_str().unwrap_or_default()]);
        assert_eq!(out.status.code(), Some(1), "{name} was accepted");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{name}{position}")),
            "{name}: no position {position} in: {err}"
        );
        assert!(
            err.contains(expected),
            "{name}: expected {expected:?} in: {err}"
        );
        // The server refuses to start with it too: never a fallback to allow.
        let out = run(&[
            "tools",
            "call",
            "calculator",
            r#"{"expression":"1"}"#,
            "--policy",
            p.to_str().unwrap_or_default(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: tools call ran under a broken policy"
        );
    }
}

#[test]
fn explain_shows_winner_losers_and_limits() {
    let out = run(&[
        "policy",
        "explain",
        "default",
        "--tool",
        "code",
        "--args",
        r#"{"code": "token = 'sk-abcdefghijklmnopqrstuvwxyz'"}"#,
    ]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("decision: deny"), "{text}");
    assert!(text.contains("rule:     no-secrets"), "{text}");
    assert!(text.contains("wins  no-secrets (deny"), "{text}");
    assert!(text.contains("lost  code-modest (allow"), "{text}");
    let out = run(&[
        "policy",
        "explain",
        "default",
        "--tool",
        "CODE",
        "--args",
        r#"{"code":"print(1)"}"#,
        "--json",
    ]);
    let d: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(d["verdict"], "allow");
    assert_eq!(d["tool"], "code");
    assert_eq!(d["limits"]["wall_ms"], 10000);
    let out = run(&[
        "policy",
        "explain",
        "default",
        "--tool",
        "calcu\u{200b}lator",
        "--args",
        "{}",
    ]);
    assert!(
        stdout(&out).contains("decision: deny") && stdout(&out).contains("name.invalid"),
        "{}",
        stdout(&out)
    );
}
