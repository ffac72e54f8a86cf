use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::model::CallerKind;

fn policy(src: &str) -> Policy {
    Policy::from_toml_str(src, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn decide(p: &Policy, tool: &str, args: Value) -> Decision {
    let caller = Caller::cli();
    p.decide(&Request::new(&caller, tool, &args))
}

const LAYERED: &str = r#"
default = "allow"
[[rule]]
id = "allow-calc"
tool = "calculator"
decision = "allow"
limits = { wall_ms = 500 }
[[rule]]
id = "ask-big"
tool = "calculator"
decision = "ask"
when = { "args.expression" = { min_len = 10 } }
limits = { wall_ms = 2000, memory_mb = 64 }
[[rule]]
id = "deny-secret"
tool = "*"
decision = "deny"
when = { "args.**" = { regex = "(?i)password" } }
"#;

/// A limit the tools cannot enforce is refused at load, not accepted and ignored: `fuel`
/// used to be.
#[test]
fn unenforceable_limits_are_refused_with_their_line() {
    let src = "default = \"deny\"\n[[rule]]\nid = \"c\"\ntool = \"code\"\ndecision = \"allow\"\nlimits = { wall_ms = 5, fuel = 100 }\n";
    let e = Policy::from_toml_str(src, "p.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("p.toml:6:") && e.contains("fuel") && e.contains("wall_ms"),
        "{e}"
    );
}

#[test]
fn deny_beats_ask_beats_allow() {
    let p = policy(LAYERED);
    assert_eq!(
        decide(&p, "calculator", json!({"expression": "1"})).verdict,
        Verdict::Allow
    );
    let d = decide(&p, "calculator", json!({"expression": "1+2+3+4+5+6"}));
    assert_eq!((d.verdict, d.rule_id.as_str()), (Verdict::Ask, "ask-big"));
    // Limits of every matching rule apply, tightest field by field.
    assert_eq!(
        d.limits,
        Limits {
            wall_ms: Some(500),
            memory_mb: Some(64),
            ..Limits::default()
        }
    );
    let d = decide(&p, "calculator", json!({"expression": "password+1+2+3+4"}));
    assert_eq!(
        (d.verdict, d.rule_id.as_str()),
        (Verdict::Deny, "deny-secret")
    );
    assert_eq!(d.matched.len(), 3);
}

/// The bypass corpus: every way of dressing up a forbidden call is still denied.
#[test]
fn bypass_corpus_is_denied() {
    let p = policy(
        r#"
default = "allow"
[[rule]]
id = "no-code"
tool = "code"
decision = "deny"
[[rule]]
id = "no-secrets"
tool = "*"
decision = "deny"
when = { "args.**" = { regex = "(?i)api[_-]?key|BEGIN [A-Z ]*PRIVATE KEY" } }
[[rule]]
id = "small-timeouts"
tool = "calculator"
decision = "deny"
when = { "args.timeout_ms" = { gt = 5000 } }
"#,
    );
    let tools = [
        "code",
        "CODE",
        "Code",
        "ｃｏｄｅ",
        "co\u{200b}de",
        "code\u{feff}",
        "\u{202e}code",
        "cоde", // Cyrillic о
        "c\u{0301}ode",
    ];
    for t in tools {
        let d = decide(&p, t, json!({}));
        assert_eq!(d.verdict, Verdict::Deny, "tool name {t:?} got {d:?}");
    }
    let secret_args = [
        json!({"x": "my api_key=1"}),
        json!({"x": {"y": [{"z": "API-KEY"}]}}),
        json!({"parts": ["-----BEGIN RSA PRI", "VATE KEY-----"]}),
        json!({"x": "ａｐｉ＿ｋｅｙ"}),
        json!({"x": "api\u{200b}_key"}),
        json!({"apikey": 1}),
    ];
    for args in secret_args {
        let d = decide(&p, "calculator", args.clone());
        assert_eq!(d.verdict, Verdict::Deny, "args {args} got {d:?}");
    }
    // Numbers as strings are numbers.
    for v in [
        json!(9000),
        json!("9000"),
        json!(" 9000 "),
        json!("9e3"),
        json!(9000.5),
    ] {
        let d = decide(&p, "calculator", json!({"timeout_ms": v}));
        assert_eq!(d.verdict, Verdict::Deny, "timeout {v}");
    }
    // External tools named like built-ins are not the built-ins.
    let strict = policy(
        "default = \"deny\"\n[[rule]]\nid = \"calc\"\ntool = \"calculator\"\ndecision = \"allow\"\n",
    );
    assert_eq!(
        decide(&strict, "evil.calculator", json!({})).verdict,
        Verdict::Deny
    );
    assert_eq!(
        decide(&strict, "calculator.evil", json!({})).verdict,
        Verdict::Deny
    );
    assert_eq!(
        decide(&strict, "calculator", json!({})).verdict,
        Verdict::Allow
    );
    // Oversized arguments.
    let huge = json!({"x": "a".repeat(2 << 20)});
    let d = decide(&strict, "calculator", huge);
    assert_eq!(
        (d.verdict, d.rule_id.as_str()),
        (Verdict::Deny, "args.too-large")
    );
}

#[test]
fn callers_are_distinguished() {
    let p = policy(
        r#"
default = "deny"
[[rule]]
id = "rollout-code"
tool = "code"
caller = "rollout"
decision = "allow"
[[rule]]
id = "claude"
tool = "*"
caller = { kind = "mcp-client", id = "claude-*" }
decision = "ask"
"#,
    );
    let args = json!({});
    let check = |kind, id: &str, tool: &str| {
        let c = Caller::new(kind, id);
        p.decide(&Request::new(&c, tool, &args)).verdict
    };
    assert_eq!(check(CallerKind::Rollout, "w1", "code"), Verdict::Allow);
    assert_eq!(check(CallerKind::Cli, "", "code"), Verdict::Deny);
    assert_eq!(
        check(CallerKind::McpClient, "claude-desktop", "code"),
        Verdict::Ask
    );
    assert_eq!(
        check(CallerKind::McpClient, "cursor", "code"),
        Verdict::Deny
    );
}

#[test]
fn budgets_run_out_and_refill() {
    let engine = PolicyEngine::new(
        policy("default = \"allow\"\n[budget]\ncalls_per_minute = 3\ntotal_calls = 5\ncode_seconds_per_session = 2\n"),
        None,
    );
    let caller = Caller::cli();
    let other = Caller::new(CallerKind::Rollout, "w2");
    let args = json!({});
    let t0 = Instant::now();
    let at = |c: &Caller, tool: &str, secs: u64| {
        engine
            .decide_at(
                &Request::new(c, tool, &args),
                t0 + Duration::from_secs(secs),
            )
            .rule_id
    };
    assert_eq!(at(&caller, "calculator", 0), "default");
    assert_eq!(at(&caller, "calculator", 1), "default");
    assert_eq!(at(&caller, "calculator", 2), "default");
    assert_eq!(at(&caller, "calculator", 3), "budget.calls_per_minute");
    // Another caller has its own budget.
    assert_eq!(at(&other, "calculator", 3), "default");
    // A minute after the first call, the window has room again.
    assert_eq!(at(&caller, "calculator", 61), "default");
    assert_eq!(at(&caller, "calculator", 62), "default");
    assert_eq!(at(&caller, "calculator", 200), "budget.total_calls");
    // Code seconds.
    engine.record_code_time(&other, Duration::from_secs(3));
    assert_eq!(at(&other, "code", 10), "budget.code_seconds_per_session");
    assert_eq!(at(&other, "calculator", 10), "default");
}

#[test]
fn reload_is_atomic_and_keeps_the_old_policy_on_error() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("p.toml");
    std::fs::write(&path, "default = \"allow\"\n").unwrap_or_else(|e| panic!("{e}"));
    let engine =
        PolicyEngine::load(path.to_str().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    let caller = Caller::cli();
    let args = json!({});
    let before = engine.policy();
    std::fs::write(&path, "default = \"deny\"\n").unwrap_or_else(|e| panic!("{e}"));
    assert!(engine.reload().is_ok());
    assert_eq!(
        engine.decide(&Request::new(&caller, "x", &args)).verdict,
        Verdict::Deny
    );
    // The Arc taken before the reload still decides with the old policy (in-flight calls).
    assert_eq!(
        before.decide(&Request::new(&caller, "x", &args)).verdict,
        Verdict::Allow
    );
    std::fs::write(&path, "default = \"bogus\"\n").unwrap_or_else(|e| panic!("{e}"));
    assert!(engine.reload().is_err());
    assert_eq!(
        engine.decide(&Request::new(&caller, "x", &args)).verdict,
        Verdict::Deny
    );
}

#[test]
fn presets_load_and_pass_their_examples() {
    for name in crate::PRESETS {
        let p = Policy::load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let outcomes = p.run_tests();
        assert!(!outcomes.is_empty(), "{name} has no examples");
        assert!(outcomes.iter().all(|o| o.passed), "{name}: {outcomes:?}");
    }
}

fn verdict_strategy() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        Just(Verdict::Allow),
        Just(Verdict::Ask),
        Just(Verdict::Deny)
    ]
}

fn rules_src(rules: &[(Verdict, Option<u64>)]) -> String {
    let mut s = String::from("default = \"allow\"\n");
    for (i, (v, wall)) in rules.iter().enumerate() {
        s.push_str(&format!(
            "[[rule]]\nid = \"r{i}\"\ntool = \"*\"\ndecision = \"{v}\"\n"
        ));
        if let Some(w) = wall {
            s.push_str(&format!("limits = {{ wall_ms = {w} }}\n"));
        }
    }
    s
}

proptest! {
    /// The verdict is the most severe of the matching rules, whatever their order; the
    /// limits are the tightest; and both are independent of rule order.
    #[test]
    fn precedence_and_limits_are_order_independent(
        rules in prop::collection::vec((verdict_strategy(), prop::option::of(1u64..100_000)), 1..12),
        seed in any::<u64>(),
    ) {
        let p1 = policy(&rules_src(&rules));
        let mut shuffled = rules.clone();
        // Deterministic shuffle from the seed.
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let j = (s >> 33) as usize % (i + 1);
            shuffled.swap(i, j);
        }
        let p2 = policy(&rules_src(&shuffled));
        let d1 = decide(&p1, "anything", json!({}));
        let d2 = decide(&p2, "anything", json!({}));
        let most_severe = rules.iter().map(|r| r.0).max().unwrap_or(Verdict::Allow);
        prop_assert_eq!(d1.verdict, most_severe);
        prop_assert_eq!(d2.verdict, most_severe);
        let tightest = rules.iter().filter_map(|r| r.1).min();
        prop_assert_eq!(d1.limits.wall_ms, tightest);
        prop_assert_eq!(d2.limits.wall_ms, tightest);
        // Adding a deny rule anywhere always yields deny.
        let mut with_deny = rules.clone();
        with_deny.insert((seed as usize) % (rules.len() + 1), (Verdict::Deny, None));
        prop_assert_eq!(decide(&policy(&rules_src(&with_deny)), "anything", json!({})).verdict, Verdict::Deny);
    }

    /// Limits only tighten: combining never yields a value above either input.
    #[test]
    fn limits_never_loosen(a in prop::option::of(0u64..1000), b in prop::option::of(0u64..1000)) {
        let x = Limits { wall_ms: a, ..Limits::default() };
        let y = Limits { wall_ms: b, ..Limits::default() };
        let t = x.tighten(y);
        if let Some(a) = a { prop_assert!(t.wall_ms.is_some_and(|v| v <= a)); }
        if let Some(b) = b { prop_assert!(t.wall_ms.is_some_and(|v| v <= b)); }
        prop_assert_eq!(t, y.tighten(x));
    }

    /// Garbage policy text is refused with a position, never panics, never loads.
    #[test]
    fn garbage_policies_never_panic(src in "[a-z=\\[\\]{}\"., \n0-9*]{0,80}") {
        if let Err(e) = Policy::from_toml_str(&src, "g.toml") {
            prop_assert!(e.to_string().starts_with("g.toml:"));
        }
    }
}
