//! `verity run --record` and `verity verify`: records of real runs with the tiny model,
//! checked end to end, then damaged in the ways files get damaged.

use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::common::{python, repo, stderr, stdout, verity, write_file};

fn record(dir: &std::path::Path, file: &std::path::Path, prompt: &str) {
    let model = dir.join("tiny");
    if !model.exists() {
        let out = Command::new(verity())
            .args(["model", "tiny", "--out"])
            .arg(&model)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let config = write_file(dir, "config.toml", "");
    let out = Command::new(verity())
        .args(["run", "--config"])
        .arg(&config)
        .arg("--model")
        .arg(&model)
        .args([
            "--strict",
            "--tool-choice",
            "required",
            "--calls-per-turn",
            "2",
            "--tools",
            "calculator",
            "--max-tokens-per-call",
            "200",
            "--max-turns",
            "2",
            "--record",
        ])
        .arg(file)
        .arg(prompt)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("verity: recorded to"),
        "{}",
        stderr(&out)
    );
}

fn verify(file: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(verity())
        .arg("verify")
        .arg(file)
        .output()
        .unwrap();
    (out.status.code(), stdout(&out))
}

#[test]
fn recorded_runs_carry_exact_tokens_and_a_verifiable_chain() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runs.jsonl");
    for p in ["first", "second", "third"] {
        record(dir.path(), &file, p);
    }
    let (code, out) = verify(&file);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("3 records, hash chain intact"), "{out}");

    let text = std::fs::read_to_string(&file).unwrap();
    let r: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(r["schema"], "verity.traj/1");
    assert_eq!(r["policy"]["engine"], "mistral.rs");
    assert!(r["policy"]["digests"]["weights"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(
        r["policy"]["digests"]["tokenizer_config"].is_string(),
        "chat template digest"
    );
    // Two parallel calls, each with its decision and an io digest.
    let calls = r["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    for c in calls {
        assert_eq!(c["decision"]["rule_id"], "calculator");
        assert!(c["io_digest"].as_str().unwrap().starts_with("sha256:"));
    }
    // The turns join token for token, so the flat trainer view exists, and its loss mask
    // covers exactly the sampled tokens (each turn's, stop token included).
    let t0 = &r["turns"][0];
    assert_eq!(t0["next"]["prefix_consistent"], true, "{t0:#}");
    let tokens = &r["tokens"];
    assert_eq!(tokens["available"], true, "{tokens:#}");
    let sampled: usize = r["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["gen_ids"].as_array().unwrap().len())
        .sum();
    let mask = tokens["loss_mask"].as_array().unwrap();
    assert_eq!(
        mask.iter().filter(|m| m.as_u64() == Some(1)).count(),
        sampled
    );
    assert_eq!(mask.len(), tokens["response_ids"].as_array().unwrap().len());
    assert_eq!(
        mask.len(),
        tokens["rollout_logprobs"].as_array().unwrap().len()
    );
    for (m, lp) in mask
        .iter()
        .zip(tokens["rollout_logprobs"].as_array().unwrap())
    {
        if m.as_u64() == Some(0) {
            assert_eq!(lp.as_f64(), Some(0.0));
        }
    }
    let completion = r["outcome"]["completion_tokens"].as_u64().unwrap() as usize;
    assert_eq!(sampled, completion);
    // Per-token source: sampled exactly where the mask is 1; the two tool results are
    // found among the inserted tokens (the tiny tokenizer maps byte b to id b, so their
    // ids decode to the result text) and the rest is template scaffold.
    let source: Vec<&str> = tokens["source"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for (m, s) in mask.iter().zip(&source) {
        assert_eq!(m.as_u64() == Some(1), *s == "sampled", "{source:?}");
    }
    let ids = tokens["response_ids"].as_array().unwrap();
    let tool_bytes: Vec<u8> = ids
        .iter()
        .zip(&source)
        .filter(|(_, s)| **s == "tool")
        .map(|(id, _)| id.as_u64().unwrap() as u8)
        .collect();
    let tool_text = String::from_utf8(tool_bytes).unwrap();
    let results: String = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert!(!results.is_empty());
    assert_eq!(tool_text, results, "{source:?}");
    assert!(source.contains(&"template") && !source.contains(&"inserted"));

    // Every record, and the documented example, validate against the published schema
    // (checked by the `jsonschema` package, not by us).
    let check = "import json, sys, jsonschema\n\
                 schema = json.load(open(sys.argv[1]))\n\
                 docs = [json.load(open(sys.argv[2]))] + [json.loads(l) for l in open(sys.argv[3])]\n\
                 [jsonschema.validate(d, schema) for d in docs]\n\
                 print('valid', len(docs))";
    let out = Command::new(python())
        .args(["-c", check])
        .arg(repo().join("docs/trajectory.schema.json"))
        .arg(repo().join("docs/trajectory.example.json"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("valid 4"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn verify_names_the_first_damaged_record() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runs.jsonl");
    for p in ["a", "b", "c"] {
        record(dir.path(), &file, p);
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let damaged = dir.path().join("damaged.jsonl");
    let edited = lines[1].replacen("\"stop\":", "\"stop\" :", 1).replacen(
        "\"calculator\"",
        "\"calculatorX\"",
        1,
    );
    for (content, line, needle) in [
        (
            format!("{}\n{edited}\n{}\n", lines[0], lines[2]),
            2,
            "edited",
        ),
        (format!("{}\n{}\n", lines[0], lines[2]), 2, "dropped"),
        (
            format!("{}\n{}\n{}\n", lines[0], lines[2], lines[1]),
            2,
            "reordered",
        ),
        (
            format!(
                "{}\n{}\n{}",
                lines[0],
                lines[1],
                &lines[2][..lines[2].len() / 2]
            ),
            3,
            "torn",
        ),
    ] {
        std::fs::write(&damaged, content).unwrap();
        let (code, out) = verify(&damaged);
        assert_eq!(code, Some(1), "{out}");
        assert!(
            out.contains(&format!("FAILED at line {line}")) && out.contains(needle),
            "{needle}: {out}"
        );
    }
    // A torn file is not appended to: the damage would be buried under a valid record.
    let append = |f: &std::path::Path| {
        Command::new(verity())
            .args(["run", "--model", "tiny", "--record"])
            .arg(f)
            .arg("x")
            .env("VERITY_DATA_DIR", dir.path())
            .output()
            .unwrap()
    };
    let out = append(&damaged);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("line 3 is not a complete record"),
        "{}",
        stderr(&out)
    );

    // The last record cut off: a valid chain, but not where its head file says it ends.
    let (code, out) = verify(&file);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ends where its head file says"), "{out}");
    let head: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("runs.jsonl.head")).unwrap())
            .unwrap();
    let head = head["head"].as_str().unwrap().to_owned();
    std::fs::write(&file, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
    let (code, out) = verify(&file);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cut off the end"), "{out}");
    // … and it is not appended to, which would rewrite the head over the evidence.
    let out = append(&file);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("cut off the end"), "{}", stderr(&out));
    // Head file removed too: only a head kept elsewhere shows it.
    std::fs::remove_file(dir.path().join("runs.jsonl.head")).unwrap();
    let (code, out) = verify(&file);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("no head file"), "{out}");
    let expect = |digest: &str| {
        let o = Command::new(verity())
            .args(["verify", "--expect-head", digest])
            .arg(&file)
            .output()
            .unwrap();
        (o.status.code(), stdout(&o))
    };
    let (code, out) = expect(&head);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("--expect-head"), "{out}");
    let last: Value = serde_json::from_str(lines[1]).unwrap();
    let (code, out) = expect(last["integrity"]["digest"].as_str().unwrap());
    assert_eq!(code, Some(0), "{out}");
}

/// `verify --replay` decodes each model call's recorded token ids with the model's own
/// tokenizer (found beside it, its digest the recorded one): a record re-sealed with a new
/// answer — a valid chain, a consistent reward — fails because its ids say otherwise.
#[test]
fn replay_checks_recorded_text_against_its_token_ids() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    let out = Command::new(verity())
        .args(["model", "tiny", "--out"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(out.status.success());
    let file = dir.path().join("r.jsonl");
    let config = write_file(dir.path(), "config.toml", "");
    let out = Command::new(verity())
        .args(["run", "--config"])
        .arg(&config)
        .arg("--model")
        .arg(&model)
        .args([
            "--max-tokens-per-call",
            "24",
            "--max-turns",
            "1",
            "--record",
        ])
        .arg(&file)
        .arg("Say something.")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(stderr(&out).contains("recorded to"), "{}", stderr(&out));
    let replay = |f: &std::path::Path| {
        let o = Command::new(verity())
            .args(["verify", "--replay"])
            .arg(f)
            .output()
            .unwrap();
        (o.status.code(), stdout(&o))
    };
    let (code, text) = replay(&file);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("1 model calls' token ids decoded (1 match their text)"),
        "{text}"
    );

    // Re-sealed with another answer: the chain is valid, the ids are not that text.
    let mut r: Value = serde_json::from_str(
        std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let forged = "The answer is 42.";
    r["turns"][0]["text"] = json!(forged);
    r["outcome"]["answer"] = json!(forged);
    if let Some(m) = r["messages"].as_array_mut().and_then(|m| m.last_mut()) {
        m["content"] = json!(forged);
    }
    let resealed = dir.path().join("resealed.jsonl");
    verity_runtime::trajectory::chain::ChainWriter::open(&resealed)
        .unwrap()
        .append(&mut r)
        .unwrap();
    let (code, _) = verify(&resealed);
    assert_eq!(code, Some(0), "the chain alone cannot tell");
    let (code, text) = replay(&resealed);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("is not what its") && text.contains("token ids decode to"),
        "{text}"
    );
}

/// Signed records: `verity key new`, `run --record --sign`, `verify --key`. A file re-sealed
/// without the key (a valid chain, unsigned or signed by another key) fails.
#[test]
fn signed_records_fail_verification_when_resealed_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("keys").join("me.key");
    let out = Command::new(verity())
        .args(["key", "new", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let key_id = stdout(&out).trim().to_owned();
    assert!(key_id.starts_with("ed25519:"), "{key_id}");
    let public = dir.path().join("keys").join("me.key.pub");
    // Never overwritten.
    let again = Command::new(verity())
        .args(["key", "new", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));

    let model = dir.path().join("tiny");
    assert!(Command::new(verity())
        .args(["model", "tiny", "--out"])
        .arg(&model)
        .output()
        .unwrap()
        .status
        .success());
    let file = dir.path().join("signed.jsonl");
    // The first record signed by `--sign`, the second by `sign` in the config file.
    let plain = write_file(dir.path(), "config.toml", "");
    let signing = write_file(
        dir.path(),
        "signing.toml",
        &format!("sign = {}\n", json!(key.to_str().unwrap())),
    );
    for (prompt, config, flag) in [("one", &plain, true), ("two", &signing, false)] {
        let mut cmd = Command::new(verity());
        cmd.args(["run", "--config"])
            .arg(config)
            .arg("--model")
            .arg(&model)
            .args(["--max-tokens-per-call", "8", "--max-turns", "1", "--record"])
            .arg(&file);
        if flag {
            cmd.arg("--sign").arg(&key);
        }
        let out = cmd.arg(prompt).stdin(Stdio::null()).output().unwrap();
        assert!(stderr(&out).contains("recorded to"), "{}", stderr(&out));
    }
    let verify_key = |f: &std::path::Path, k: &str| {
        let o = Command::new(verity())
            .args(["verify", "--key", k])
            .arg(f)
            .output()
            .unwrap();
        (o.status.code(), stdout(&o), stderr(&o))
    };
    let (code, out, err) = verify_key(&file, public.to_str().unwrap());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("every record signed by"), "{out}");
    let (code, out, _) = verify_key(&file, &key_id);
    assert_eq!(code, Some(0), "{out}");

    // Re-sealed (a valid chain) without the key: unsigned, then signed by another key.
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reseal = |name: &str, other: Option<&std::path::Path>| {
        let path = dir.path().join(name);
        let mut w = verity_runtime::trajectory::chain::ChainWriter::open(&path).unwrap();
        if let Some(k) = other {
            w = w.with_signer(std::sync::Arc::new(
                verity_runtime::trajectory::sign::Signer::load(k).unwrap(),
            ));
        }
        for (i, l) in lines.iter().enumerate() {
            let mut l = l.clone();
            if i == 1 {
                l["outcome"]["answer"] = json!("forged");
            }
            w.append(&mut l).unwrap();
        }
        path
    };
    let unsigned = reseal("unsigned.jsonl", None);
    assert_eq!(
        verify(&unsigned).0,
        Some(0),
        "without --key the chain is all there is"
    );
    let (code, out, _) = verify_key(&unsigned, public.to_str().unwrap());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("line 1") && out.contains("not signed"),
        "{out}"
    );
    let mallory = dir.path().join("mallory.key");
    verity_runtime::trajectory::sign::Signer::generate(&mallory).unwrap();
    let other = reseal("other.jsonl", Some(&mallory));
    let (code, out, _) = verify_key(&other, public.to_str().unwrap());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("is signed by ed25519:") && out.contains("not by --key"),
        "{out}"
    );
    // A signed record edited in place: its digest no longer matches.
    let edited = dir.path().join("edited.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &edited,
        text.replacen("\"stop\":", "\"stop\" :", 1).replacen(
            "\"max_turns\":1",
            "\"max_turns\":2",
            1,
        ),
    )
    .unwrap();
    let (code, out, _) = verify_key(&edited, public.to_str().unwrap());
    assert_eq!(code, Some(1), "{out}");
}
