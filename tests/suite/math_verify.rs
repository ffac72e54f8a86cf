//! The math verifier against `math-verify` (PyPI, the Python reference), on the hand-judged
//! pairs of tests/data/math_pairs.jsonl: every pair scored by `verity score --stdio` (the
//! binary, as trainers' reward functions call it) and by math-verify's own `parse`/`verify`.
//! Verity must give the right verdict on every pair; the report lists agreement and each
//! disagreement with which side is right and why.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use serde_json::{json, Value};

use super::common::{python, repo, verity};

fn pairs() -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("tests/data/math_pairs.jsonl"))
        .expect("tests/data/math_pairs.jsonl");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a pair"))
        .collect()
}

/// Feeds `input` lines to a command's stdin, returns its stdout lines as JSON.
fn pipe(mut cmd: Command, input: &[String]) -> Vec<Value> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let body = input.join("\n") + "\n";
    let writer = std::thread::spawn(move || stdin.write_all(body.as_bytes()));
    let out = child.wait_with_output().expect("output");
    writer.join().expect("writer").expect("write");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn math_verifier_is_right_where_math_verify_is_and_beyond() {
    let pairs = pairs();
    assert!(pairs.len() >= 200, "{} pairs", pairs.len());
    let verity_in: Vec<String> = pairs
        .iter()
        .map(|p| {
            json!({"verifier": "math", "ground_truth": p["gold"], "answer": p["reply"]}).to_string()
        })
        .collect();
    let mut cmd = Command::new(verity());
    cmd.args(["score", "--stdio"]);
    let ours = pipe(cmd, &verity_in);
    let oracle_in: Vec<String> = pairs
        .iter()
        .map(|p| json!({"gold": p["gold"], "reply": p["reply"]}).to_string())
        .collect();
    let mut cmd = Command::new(python());
    cmd.arg(repo().join("tests/clients/math_verify_oracle.py"));
    let theirs = pipe(cmd, &oracle_in);
    assert_eq!(ours.len(), pairs.len());
    assert_eq!(theirs.len(), pairs.len());

    let (mut agree, mut verity_right, mut reference_right) = (0, 0, 0);
    let mut report = Vec::new();
    let mut wrong = Vec::new();
    for ((p, v), m) in pairs.iter().zip(&ours).zip(&theirs) {
        let expected = p["expected"].as_bool().expect("expected");
        let v_ok = v["passed"].as_bool().unwrap_or(false);
        let m_ok = m["verdict"].as_bool().expect("verdict");
        agree += usize::from(v_ok == m_ok);
        verity_right += usize::from(v_ok == expected);
        reference_right += usize::from(m_ok == expected);
        if v_ok != expected {
            wrong.push(format!(
                "gold {} reply {:?}: verity says {v_ok} (extracted {}, {}), right is {expected} ({})",
                p["gold"], p["reply"], v["extracted"], v["detail"], p["why"]
            ));
        }
        if v_ok != m_ok {
            let (right, wrong_side) = if v_ok == expected {
                ("verity", "math-verify")
            } else {
                ("math-verify", "verity")
            };
            report.push(format!(
                "  gold {} | reply {:?}: verity {v_ok}, math-verify {m_ok} (parsed {} vs {}) → {right} is right, {wrong_side} is not: {}",
                p["gold"], p["reply"], m["gold_parsed"], m["reply_parsed"], p["why"]
            ));
        }
    }
    let n = pairs.len();
    eprintln!(
        "math verifier vs math-verify on {n} pairs: agreement {agree}/{n} ({:.1}%); right: verity {verity_right}/{n}, math-verify {reference_right}/{n}\ndisagreements:\n{}",
        100.0 * agree as f64 / n as f64,
        report.join("\n")
    );
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
    assert!(verity_right >= reference_right);
}

/// `verity score ARGS`, its exit code and stdout.
fn score(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(verity())
        .arg("score")
        .args(args)
        .output()
        .expect("run verity score");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn score_cli_says_what_it_extracted_and_why() {
    let (code, out, _) = score(&["--json", "--truth", "(1,2)", "so \\boxed{(2,1)}"]);
    assert_eq!(code, Some(1), "a wrong answer exits 1");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["passed"], false);
    assert_eq!(v["extracted"], "(2,1)");
    assert_eq!(
        (v["name"].as_str(), v["version"].as_u64()),
        (Some("math"), Some(3))
    );

    // A truncated run scores 0 unless the verifier opts in.
    let (code, ..) = score(&["--truth", "4", "--truncated", "The answer is 4"]);
    assert_eq!(code, Some(1));
    let opt_in = r#"{"type": "math", "allow_truncated": true}"#;
    let (code, out, _) = score(&[
        "--truth",
        "4",
        "--truncated",
        "--verifier",
        opt_in,
        "The answer is 4",
    ]);
    assert_eq!(code, Some(0), "{out}");

    // Tool-call verifier from the command line; a bad verifier is named with the choices.
    let (code, out, _) = score(&[
        "--verifier",
        "tool_call",
        "--truth",
        r#"[{"name": "calculator", "arguments": {"expression": ["2+2"]}}]"#,
        "--calls",
        r#"[{"name": "calculator", "arguments": "{\"expression\": \"2+2\"}"}]"#,
        "",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let (code, _, err) = score(&["--verifier", "fuzzy", "--truth", "1", "1"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("fuzzy") && err.contains("names: math"),
        "{err}"
    );
}
