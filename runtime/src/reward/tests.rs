use serde_json::json;

use super::*;

#[test]
fn math_verify_style_cases() {
    for (a, b, eq) in [
        ("\\frac12", "0.5", true),
        ("\\frac{1}{2}", "1/2", true),
        ("\\dfrac{3}{4}", "0.75", true),
        ("1,234", "1234", true),
        ("1,234,567.5", "1234567.5", true),
        ("\\{1, 2\\}", "\\{2,1\\}", true),
        // Ordered pairs and intervals are not sets.
        ("(1, 2)", "(2, 1)", false),
        ("(1, 2)", "[1, 2]", false),
        ("17", "18", false),
        ("\\sqrt{2}", "1.4142135623730951", true),
        ("2\\pi", "6.283185307179586", true),
        ("50\\%", "50", true),
        ("x", "x", true),
        ("\\{1, 2\\}", "\\{1, 3\\}", false),
    ] {
        assert_eq!(math_equal(a, b), eq, "{a} vs {b}");
    }
}

#[test]
fn answers_come_out_of_prose() {
    assert_eq!(
        extract_answer("So we add them.\nThus \\boxed{18} is it, not 17.").as_deref(),
        Some("18")
    );
    assert_eq!(
        extract_answer("Nested: \\boxed{\\frac{1}{2}} done").as_deref(),
        Some("\\frac{1}{2}")
    );
    assert_eq!(extract_answer("The answer is 42.").as_deref(), Some("42"));
    assert_eq!(
        extract_answer("I got 3 apples and 1,200 pears").as_deref(),
        Some("1,200")
    );
    assert_eq!(extract_answer("no digits here"), None);
}

fn attempt(answer: &str) -> Attempt {
    Attempt {
        answer: Some(answer.into()),
        ..Attempt::default()
    }
}

#[tokio::test]
async fn verifiers_score_and_say_why() {
    let r = score(
        &VerifierSpec::MATH,
        &json!("18"),
        &attempt("so \\boxed{18}"),
    )
    .await;
    assert!(r.passed && r.score == 1.0 && r.extracted.as_deref() == Some("18"));
    let r = score(&VerifierSpec::MATH, &json!(18), &attempt("it is 17")).await;
    assert!(!r.passed);
    assert_eq!((r.name.as_str(), r.version), ("math", 3));

    let r = score(
        &VerifierSpec::Normalized,
        &json!("The Eiffel Tower"),
        &attempt("eiffel tower!"),
    )
    .await;
    assert!(r.passed);
    let r = score(&VerifierSpec::Exact, &json!("Paris"), &attempt("paris")).await;
    assert!(!r.passed);
    let r = score(
        &VerifierSpec::Regex {
            pattern: "^\\d{4}$".into(),
        },
        &json!(null),
        &attempt("2024"),
    )
    .await;
    assert!(r.passed);
    let r = score(
        &VerifierSpec::JsonField {
            field: "a.b".into(),
        },
        &json!(3),
        &attempt("```json\n{\"a\": {\"b\": 3}}\n```"),
    )
    .await;
    assert!(r.passed, "{r:?}");
    let r = score(&VerifierSpec::MATH, &json!("1"), &Attempt::default()).await;
    assert!(!r.passed && r.detail == "no answer");
}

#[tokio::test]
async fn tool_call_matching_is_bfcl_style() {
    let call = |name: &str, args: serde_json::Value| ToolCall {
        id: "x".into(),
        name: name.into(),
        arguments: args,
    };
    let gold = json!([
        {"name": "get_weather", "arguments": {"city": ["Paris", "paris"], "unit": ["c", ""]}},
        {"name": "calculator", "arguments": {"expression": ["2+2"]}},
    ]);
    let run = |calls: Vec<ToolCall>| Attempt {
        answer: None,
        calls,
        truncated: false,
    };
    // Order-insensitive; an optional argument may be omitted.
    let ok = run(vec![
        call("calculator", json!({"expression": "2+2"})),
        call("get_weather", json!({"city": "paris"})),
    ]);
    assert!(score(&VerifierSpec::ToolCall, &gold, &ok).await.passed);
    for bad in [
        vec![call("get_weather", json!({"city": "Paris"}))],
        vec![
            call("get_weather", json!({"city": "Rome"})),
            call("calculator", json!({"expression": "2+2"})),
        ],
        vec![
            call("get_weather", json!({"city": "Paris", "x": 1})),
            call("calculator", json!({"expression": "2+2"})),
        ],
    ] {
        assert!(
            !score(&VerifierSpec::ToolCall, &gold, &run(bad))
                .await
                .passed
        );
    }
    // Irrelevance: no call expected.
    assert!(
        score(&VerifierSpec::ToolCall, &json!([]), &run(vec![]))
            .await
            .passed
    );
    assert!(
        !score(
            &VerifierSpec::ToolCall,
            &json!([]),
            &run(vec![call("calculator", json!({}))])
        )
        .await
        .passed
    );
}

#[test]
fn specs_read_from_task_files() {
    let s: VerifierSpec = serde_json::from_value(json!({"type": "regex", "pattern": "a"})).unwrap();
    assert_eq!(
        s,
        VerifierSpec::Regex {
            pattern: "a".into()
        }
    );
    assert!(serde_json::from_value::<VerifierSpec>(json!({"type": "nope"})).is_err());
    let c: VerifierSpec =
        serde_json::from_value(json!({"type": "code", "entry_point": "f"})).unwrap();
    assert_eq!(c.id(), ("code", 2));
}
