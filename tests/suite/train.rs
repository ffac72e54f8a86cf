//! `verity train` end to end through the binary: the trainer's forward pass against the
//! engine's recorded logprobs, teacher demonstrations through the real runtime, SFT that
//! lowers the loss and makes the model use the calculator on held-out tasks, exact resume,
//! and one GRPO iteration whose records verify.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::common::{records, run, stderr, stdout, write_file};

/// `verity model tiny --compact-tools` (the training base) into `dir/NAME`.
fn base_model(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let o = run(&[
        &[
            "model",
            "tiny",
            "--compact-tools",
            "--out",
            out.to_str().unwrap(),
        ],
        extra,
    ]
    .concat());
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

/// `scripts/tasks.py arithmetic ARGS` into `dir/NAME`.
fn tasks(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let o = std::process::Command::new(super::common::python())
        .arg(super::common::repo().join("scripts/tasks.py"))
        .arg("arithmetic")
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    write_file(dir, name, &stdout(&o))
}

/// The agent flags every rollout here shares: `config`, the trusted policy (the default
/// one's rate limit is below what a fast model calls), the calculator, 4 turns, and 96
/// tokens per call (the untrained model's teacher chains need more than 48: it spells them
/// in short tokens).
fn agent_flags(config: &Path) -> Vec<String> {
    [
        "--config",
        &config.display().to_string(),
        "--policy",
        "trusted",
        "--tools",
        "calculator",
        "--max-turns",
        "4",
        "--max-tokens-per-call",
        "96",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `verity rollout` with an empty config and the trusted policy (the default one's rate
/// limit is below what a fast model calls).
fn rollout(dir: &Path, model: &Path, tasks: &Path, out: &Path, extra: &[&str]) -> Value {
    let config = write_file(dir, "config.toml", "");
    let agent = agent_flags(&config);
    let o = run(&[
        &[
            "rollout",
            tasks.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &agent.iter().map(String::as_str).collect::<Vec<_>>()[..],
        extra,
    ]
    .concat());
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

/// Teacher demonstrations of `tasks` by `model` into `dir/NAME`, with their summary.
fn teach(dir: &Path, model: &Path, tasks: &Path, name: &str) -> (PathBuf, Value) {
    let out = dir.join(name);
    let summary = rollout(dir, model, tasks, &out, &["--teacher", "--samples", "1"]);
    (out, summary)
}

fn json_out(args: &[&str]) -> Value {
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
}

/// `verity train grpo TASKS` from `model` into `out` (one iteration unless `extra` says
/// `--iterations`), with the run flags every GRPO test shares (those of [`rollout`]), then
/// `extra`.
fn train_grpo(
    dir: &Path,
    tasks: &Path,
    model: &Path,
    out: &Path,
    extra: &[&str],
) -> std::process::Output {
    let config = write_file(dir, "config.toml", "");
    let agent = agent_flags(&config);
    let once: &[&str] = if extra.contains(&"--iterations") {
        &[]
    } else {
        &["--iterations", "1"]
    };
    run(&[
        &[
            "train",
            "grpo",
            tasks.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        once,
        &agent.iter().map(String::as_str).collect::<Vec<_>>()[..],
        extra,
    ]
    .concat())
}

/// Sampled rollouts (temperature 1, several turns: tool results in between) recomputed by
/// the trainer's own forward pass give the engine's logprobs to 1e-4 — the precondition
/// of GRPO's importance ratios. Another model's weights do not, and the check says so.
#[test]
fn the_trainers_forward_pass_is_the_engines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = base_model(d, "base", &[]);
    let t = tasks(d, "t.jsonl", &["--n", "3", "--seed", "5"]);
    let runs = d.join("runs.jsonl");
    rollout(
        d,
        &base,
        &t,
        &runs,
        &["--samples", "2", "--temperature", "1"],
    );
    let report = json_out(&[
        "train",
        "check",
        runs.to_str().unwrap(),
        "--model",
        base.to_str().unwrap(),
        "--tolerance",
        "1e-4",
    ]);
    assert!(report["tokens"].as_u64().unwrap() > 100, "{report}");
    assert!(report["max_abs_diff"].as_f64().unwrap() < 1e-4, "{report}");
    let other = base_model(d, "other", &["--seed", "7"]);
    let o = run(&[
        "train",
        "check",
        runs.to_str().unwrap(),
        "--model",
        other.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("differ from the engine's"),
        "{}",
        stderr(&o)
    );
}

/// The loop, CI-sized: teacher demonstrations (real calculator, real policy, records that
/// replay), SFT on their export (the loss falls; the trained model calls the calculator
/// and scores on held-out tasks where the untrained one does not), resuming an
/// interrupted SFT gives the uninterrupted weights bit for bit, and one GRPO iteration
/// samples, verifies and writes a new checkpoint.
#[test]
fn teacher_sft_and_grpo_close_the_loop() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = base_model(d, "base", &[]);
    let train = tasks(
        d,
        "train.jsonl",
        &["--n", "64", "--seed", "1", "--kind", "one"],
    );
    let (demos, summary) = teach(d, &base, &train, "demos.jsonl");
    assert_eq!(summary["mean_reward"], 1.0, "{summary}");
    let o = run(&["verify", "--replay", demos.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let sft = d.join("sft.jsonl");
    let o = run(&[
        "export",
        demos.to_str().unwrap(),
        "--format",
        "trl-sft",
        "--min-reward",
        "1",
        "--out",
        sft.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let trained = d.join("trained");
    let sft_args = |out: &Path, steps: &str| -> Vec<String> {
        [
            "train",
            "sft",
            sft.to_str().unwrap(),
            "--model",
            base.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--steps",
            steps,
            "--batch-size",
            "8",
            "--lr",
            "5e-3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args = sft_args(&trained, "250");
    let report = json_out(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (first, last) = (
        report["first_loss"].as_f64().unwrap(),
        report["final_loss"].as_f64().unwrap(),
    );
    assert!(last < first / 3.0, "the loss did not fall: {report}");

    // Held out. The held-out split (other phrasings, numbers 100-999): the teacher's
    // demonstrations of it are far more likely under the trained model. New numbers in the
    // training phrasings: greedy runs of the trained model make calculator calls that run,
    // where the untrained model's never do. (Runs on the held-out phrasings themselves stay
    // unsolved at this size and length of training: BENCHMARKS.md.)
    let heldout = tasks(
        d,
        "heldout.jsonl",
        &[
            "--split", "heldout", "--n", "12", "--seed", "2", "--kind", "one",
        ],
    );
    let (held_demos, _) = teach(d, &base, &heldout, "held-demos.jsonl");
    let held_sft = d.join("held-sft.jsonl");
    let o = run(&[
        "export",
        held_demos.to_str().unwrap(),
        "--format",
        "trl-sft",
        "--out",
        held_sft.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let loss = |model: &Path| {
        json_out(&[
            "train",
            "loss",
            held_sft.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ])["loss"]
            .as_f64()
            .unwrap()
    };
    let (untrained_loss, trained_loss) = (loss(&base), loss(&trained));
    assert!(
        trained_loss < untrained_loss / 3.0,
        "held-out loss: untrained {untrained_loss}, trained {trained_loss}"
    );
    let new_numbers = tasks(
        d,
        "new.jsonl",
        &["--n", "12", "--seed", "2", "--kind", "one"],
    );
    let calls_that_ran = |model: &Path, name: &str| -> usize {
        let out = d.join(name);
        rollout(
            d,
            model,
            &new_numbers,
            &out,
            &["--samples", "1", "--temperature", "0"],
        );
        records(&out)
            .iter()
            .filter(|r| r["kind"] == "traj")
            .filter(|r| {
                r["tool_calls"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["status"] == "ok"))
            })
            .count()
    };
    let untrained_calls = calls_that_ran(&base, "h-base.jsonl");
    let trained_calls = calls_that_ran(&trained, "h-trained.jsonl");
    assert!(
        untrained_calls == 0 && trained_calls >= 9,
        "runs with a calculator call that ran: untrained {untrained_calls}, trained \
         {trained_calls} of 12"
    );

    // An interrupted run resumed gives the uninterrupted run's weights exactly, across
    // the switch from short-context windows (steps 0-3) to whole rows.
    let straight = d.join("straight");
    let cut = d.join("cut");
    let short: Vec<String> = ["--short-context-steps", "4", "--short-context-tokens", "64"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut straight_args = sft_args(&straight, "6");
    straight_args.extend(short.clone());
    json_out(&straight_args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut first_half = sft_args(&cut, "6");
    first_half.extend(short.clone());
    first_half.extend(["--stop-after".into(), "3".into()]);
    json_out(&first_half.iter().map(String::as_str).collect::<Vec<_>>());
    let mut second_half = sft_args(&cut, "6");
    second_half.push("--resume".into());
    // Resuming without the warm-up it started with is refused (other settings).
    let o = run(&second_half.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        !o.status.success() && stderr(&o).contains("other data or settings"),
        "{}",
        stderr(&o)
    );
    second_half.extend(short);
    let r = json_out(&second_half.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r["steps_this_run"], 3, "{r}");
    let weights = |p: &Path| std::fs::read(p.join("model.safetensors")).unwrap();
    assert!(
        weights(&straight) == weights(&cut),
        "resumed weights differ"
    );

    // One GRPO iteration from the SFT checkpoint.
    let grpo = d.join("grpo");
    let o = train_grpo(
        d,
        &train,
        &trained,
        &grpo,
        &[
            "--tasks-per-iteration",
            "6",
            "--samples",
            "4",
            "--dynamic-sampling",
            "1",
            // One step over every group, its gradient summed over micro-batches of two.
            "--groups-per-step",
            "6",
            "--micro-groups",
            "2",
            "--negative-weight",
            "0.5",
            // Credit where the runs part ways.
            "--credit",
            "branch",
            // The KL path too: its frozen reference is also the origin of the drift.
            "--kl-beta",
            "0.1",
            "--lr",
            "1e-3",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let it = &report["iterations"][0];
    assert!(it["steps"].as_u64().unwrap() <= 1, "{report}");
    // Dynamic sampling draws a group with no signal once more: 4 samples per task, plus 4
    // for each such task.
    let samples = it["samples"].as_u64().unwrap();
    assert!(
        (24..=48).contains(&samples) && samples.is_multiple_of(4),
        "{report}"
    );
    let next = grpo.join("iter-1");
    assert!(
        weights(&next) != weights(&trained),
        "GRPO left the weights unchanged"
    );
    assert!(it["drift_rms"].as_f64().unwrap() > 0.0, "{report}");
    assert!(it["parse_failures_per_run"].as_f64().is_some(), "{report}");
    let o = run(&[
        "verify",
        "--replay",
        grpo.join("runs.jsonl").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let state: Value =
        serde_json::from_slice(&std::fs::read(next.join("train_state/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["settings"]["negative_weight"], 0.5, "{state}");
    assert_eq!(state["settings"]["micro_groups"], 2, "{state}");
    assert_eq!(state["settings"]["credit"], "branch", "{state}");
    // Out-of-range settings are refused before anything runs.
    let refused = d.join("refused");
    let (t, m, r) = (
        train.to_str().unwrap(),
        trained.to_str().unwrap(),
        refused.to_str().unwrap(),
    );
    let o = run(&[
        "train",
        "grpo",
        t,
        "--model",
        m,
        "--out",
        r,
        "--negative-weight",
        "2",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--negative-weight must be between 0 and 1"),
        "{}",
        stderr(&o)
    );
    assert!(!refused.exists());
    // The first step is on-policy: its ratio is 1 up to the forward pass's agreement.
    if it["steps"].as_u64().unwrap() > 0 {
        let ratio = state["history"][0]["ratio"].as_f64().unwrap();
        assert!((ratio - 1.0).abs() < 1e-3, "first-step ratio {ratio}");
    }
}

/// `train grpo --guide teacher` from an untrained model, whose samples all fail: each
/// task's group gets the teacher's demonstration (recorded in the same file, under the task
/// id + `~guide`, scored 1, replayable) as an off-policy member. Under `--guide-loss clip`
/// its old logprobs are the policy's own, recomputed (the recorded ones are 0 wherever the
/// grammar forced a token), so the first step's ratio is 1; under the shaped loss the
/// report shows the teacher's share of the tokens and how likely the policy found them.
/// Tasks without a plan are refused before anything runs. Every run has a flat token view,
/// the untrained model's too: it writes lone bytes that are not UTF-8, which a text history
/// cannot hold, so each later prompt continues the sampled ids rather than re-rendering the
/// history (`continued_rerender_differs`), and the trainer reads every run.
#[test]
fn guided_grpo_adds_the_teacher_to_groups_that_all_failed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = base_model(d, "base", &[]);
    let chains = tasks(
        d,
        "chains.jsonl",
        &["--n", "3", "--seed", "3", "--kind", "two"],
    );
    let grpo = |out: &Path, tasks: &Path, extra: &[&str]| {
        let flags = [
            "--tasks-per-iteration",
            "3",
            "--samples",
            "2",
            "--groups-per-step",
            "3",
            "--guide",
            "teacher",
            "--lr",
            "1e-3",
        ];
        train_grpo(d, tasks, &base, out, &[&flags[..], extra].concat())
    };
    let weights = |p: &Path| std::fs::read(p.join("model.safetensors")).unwrap();

    let clip = d.join("clip");
    let o = grpo(&clip, &chains, &["--guide-loss", "clip"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let it = &report["iterations"][0];
    assert_eq!(
        it["mean_reward"], 0.0,
        "an untrained model solved a chain: {it}"
    );
    let unsolved = it["unsolved_groups"].as_u64().unwrap();
    assert!(unsolved >= 1, "{it}");
    assert_eq!(it["guided_groups"], unsolved, "{it}");
    assert_eq!(it["groups_with_signal"], unsolved, "{it}");
    assert_eq!(it["guide"]["demo_runs"], unsolved, "{it}");
    assert_eq!(it["guide"]["unusable_demos"], 0, "{it}");
    let share = it["guide"]["token_share"].as_f64().unwrap();
    assert!(share > 0.0 && share < 1.0, "{it}");
    let runs = clip.join("runs.jsonl");
    // Replayed too: the untrained model's samples are byte garbage with calls between their
    // prose, whose recorded text (the prose on both sides) must still be what the ids hold.
    let o = run(&["verify", "--replay", runs.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(!stdout(&o).contains("MISMATCH"), "{}", stdout(&o));
    let demos: Vec<Value> = records(&runs)
        .into_iter()
        .filter(|r| r["kind"] == "traj")
        .filter(|r| r["task"]["id"].as_str().unwrap().ends_with("~guide"))
        .collect();
    assert_eq!(demos.len() as u64, unsolved);
    assert!(
        demos.iter().all(|r| r["reward"]["total"] == 1.0),
        "{demos:?}"
    );
    let views: Vec<Value> = records(&runs)
        .iter()
        .filter(|r| r["kind"] == "traj")
        .flat_map(|r| r["turns"].as_array().unwrap().clone())
        .filter_map(|t| t["prompt_view"].as_str().map(Value::from))
        .collect();
    assert!(
        views.iter().any(|v| v == "continued_rerender_differs"),
        "no later prompt needed the sampled ids: {views:?}"
    );
    let o = run(&["export", runs.to_str().unwrap(), "--format", "trl-tokens"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let traj = records(&runs)
        .iter()
        .filter(|r| r["kind"] == "traj")
        .count();
    assert_eq!(stdout(&o).lines().count(), traj, "{}", stderr(&o));
    let state: Value =
        serde_json::from_slice(&std::fs::read(clip.join("iter-1/train_state/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["settings"]["guide"], "teacher", "{state}");
    assert_eq!(
        state["settings"]["grpo"]["guide"]["kind"], "clip",
        "{state}"
    );
    let first = &state["history"][0];
    assert!(first["guide_tokens"].as_u64().unwrap() > 0, "{first}");
    let ratio = first["ratio"].as_f64().unwrap();
    assert!((ratio - 1.0).abs() < 1e-3, "first-step ratio {ratio}");
    assert!(weights(&clip.join("iter-1")) != weights(&base));

    let shaped = d.join("shaped");
    let o = grpo(&shaped, &chains, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let it = &report["iterations"][0];
    assert!(it["guided_groups"].as_u64().unwrap() >= 1, "{it}");
    let p = it["guide"]["mean_prob"].as_f64().unwrap();
    assert!(p > 0.0 && p < 1.0, "{it}");
    let state: Value = serde_json::from_slice(
        &std::fs::read(shaped.join("iter-1/train_state/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        state["settings"]["grpo"]["guide"]["kind"], "shaped",
        "{state}"
    );
    assert_eq!(state["settings"]["grpo"]["guide"]["gamma"], 0.1, "{state}");

    // Without a plan there is nothing to demonstrate: refused up front.
    let bare = write_file(
        d,
        "bare.jsonl",
        "{\"id\": \"q\", \"prompt\": \"What is 2+2?\", \"ground_truth\": \"4\", \
         \"verifier\": {\"type\": \"math\"}}\n",
    );
    let refused = d.join("refused");
    let o = grpo(&refused, &bare, &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--guide teacher: task q: no meta.solution"),
        "{}",
        stderr(&o)
    );
    assert!(!refused.exists());
}

/// `train grpo --resume` continues a run where it stopped and writes what the
/// uninterrupted run wrote: after a finished iteration (weights, Adam moments, step count
/// from its checkpoint; the KL still to the starting model), and in the middle of one —
/// the records an interrupted iteration left (samples, a teacher demonstration whose group
/// record was not written yet) are used and only the rest drawn. A folder that holds a run
/// is refused without --resume, and --resume with other settings names them.
#[test]
fn grpo_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = base_model(d, "base", &[]);
    let chains = tasks(
        d,
        "chains.jsonl",
        &["--n", "4", "--seed", "3", "--kind", "two"],
    );
    // Guided from the untrained model (every group unsolved: a demonstration each), KL on.
    let grpo = |out: &Path, iterations: &str, extra: &[&str]| {
        let flags = [
            "--tasks-per-iteration",
            "2",
            "--samples",
            "2",
            "--groups-per-step",
            "1",
            "--guide",
            "teacher",
            "--guide-loss",
            "clip",
            "--kl-beta",
            "0.1",
            "--lr",
            "1e-3",
            "--iterations",
            iterations,
        ];
        let o = train_grpo(d, &chains, &base, out, &[&flags[..], extra].concat());
        (o.status.success(), stderr(&o))
    };
    let weights = |p: &Path| std::fs::read(p.join("model.safetensors")).unwrap();
    let lines = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };

    let straight = d.join("straight");
    let (ok, err) = grpo(&straight, "2", &[]);
    assert!(ok, "{err}");
    let want = weights(&straight.join("iter-2"));
    assert!(want != weights(&straight.join("iter-1")));

    // Stopped after a finished iteration.
    let cut = d.join("cut");
    let (ok, err) = grpo(&cut, "1", &[]);
    assert!(ok, "{err}");
    let first_iteration = lines(&cut.join("runs.jsonl")).len();
    let (ok, err) = grpo(&cut, "2", &[]);
    assert!(!ok && err.contains("already holds a run"), "{err}");
    let (ok, err) = grpo(&cut, "2", &["--resume", "--negative-weight", "0.5"]);
    assert!(
        !ok && err.contains("other settings") && err.contains("negative_weight: then 1.0, now 0.5"),
        "{err}"
    );
    let (ok, err) = grpo(&cut, "1", &["--resume"]);
    assert!(!ok && err.contains("already has 1 iterations"), "{err}");
    let (ok, err) = grpo(&cut, "2", &["--resume"]);
    assert!(ok, "{err}");
    assert!(err.contains("resuming"), "{err}");
    assert!(
        weights(&cut.join("iter-2")) == want,
        "resumed weights differ"
    );
    let summary: Value =
        serde_json::from_slice(&std::fs::read(cut.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary.as_array().unwrap().len(), 2, "{summary}");
    let state: Value =
        serde_json::from_slice(&std::fs::read(cut.join("iter-2/train_state/state.json")).unwrap())
            .unwrap();
    let straight_state: Value = serde_json::from_slice(
        &std::fs::read(straight.join("iter-2/train_state/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["step"], straight_state["step"]);
    assert_eq!(
        state["history"].as_array().unwrap().len(),
        straight_state["history"].as_array().unwrap().len()
    );

    // Stopped inside iteration 2: the straight run's file cut after `keep` of iteration 2's
    // records (head file rewritten as a crash between records leaves it), its first
    // checkpoint and summary line.
    let all = lines(&straight.join("runs.jsonl"));
    let second = all.len() - first_iteration;
    for keep in [1, second - 1] {
        let mid = d.join(format!("mid-{keep}"));
        for sub in ["iter-1", "iter-1/train_state"] {
            std::fs::create_dir_all(mid.join(sub)).unwrap();
            for e in std::fs::read_dir(straight.join(sub)).unwrap() {
                let p = e.unwrap().path();
                if p.is_file() {
                    std::fs::copy(&p, mid.join(sub).join(p.file_name().unwrap())).unwrap();
                }
            }
        }
        let summary: Value =
            serde_json::from_slice(&std::fs::read(straight.join("summary.json")).unwrap()).unwrap();
        std::fs::write(
            mid.join("summary.json"),
            serde_json::to_vec(&[&summary[0]]).unwrap(),
        )
        .unwrap();
        let kept = &all[..first_iteration + keep];
        std::fs::write(mid.join("runs.jsonl"), kept.join("\n") + "\n").unwrap();
        let last: Value = serde_json::from_str(kept.last().unwrap()).unwrap();
        std::fs::write(
            mid.join("runs.jsonl.head"),
            serde_json::json!({"schema": "verity.head/1", "head": last["integrity"]["digest"]})
                .to_string(),
        )
        .unwrap();
        let (ok, err) = grpo(&mid, "2", &["--resume"]);
        assert!(ok, "kept {keep} of {second}: {err}");
        let read = |p: &Path| std::fs::read_to_string(p.join("summary.json")).unwrap();
        assert!(
            weights(&mid.join("iter-2")) == want,
            "resumed inside iteration 2 (kept {keep} of its {second} records): weights differ\n\
             resumed: {}\nstraight: {}",
            read(&mid),
            read(&straight)
        );
        let o = run(&["verify", mid.join("runs.jsonl").to_str().unwrap()]);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        // Nothing drawn twice: the resumed file has the straight run's records, one each.
        assert_eq!(
            lines(&mid.join("runs.jsonl")).len(),
            all.len(),
            "kept {keep}"
        );
        let summary: Value =
            serde_json::from_slice(&std::fs::read(mid.join("summary.json")).unwrap()).unwrap();
        let it = &summary[1];
        assert_eq!(it["samples"], 4, "{it}");
        assert_eq!(it["guide"]["demo_runs"], it["guided_groups"], "{it}");
    }

    // A record cut off mid-write (a crash) is refused by line before anything is drawn.
    let torn = d.join("torn");
    std::fs::create_dir_all(&torn).unwrap();
    let mut text = all[..first_iteration].join("\n") + "\n";
    text.push_str(&all[first_iteration][..40]);
    std::fs::write(torn.join("runs.jsonl"), text).unwrap();
    let (ok, err) = grpo(&torn, "2", &["--resume"]);
    assert!(
        !ok && err.contains(&format!("line {}", first_iteration + 1)),
        "{err}"
    );
    assert_eq!(
        lines(&torn.join("runs.jsonl")).len(),
        first_iteration + 1,
        "the torn file was written to"
    );
}

/// Follow-up questions (`scripts/tasks.py followups`): a task that starts with an earlier
/// exchange taken from a solved run. The teacher answers the task's own question — its
/// call and answer, not the earlier one's — the run's calls are counted and graded without
/// the given history's, the records replay, and the SFT rows train on the new reply only.
#[test]
fn teacher_answers_follow_up_questions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = base_model(d, "base", &[]);
    let first = tasks(
        d,
        "first.jsonl",
        &["--n", "6", "--seed", "3", "--kind", "one"],
    );
    let (demos, _) = teach(d, &base, &first, "demos.jsonl");
    let next = tasks(
        d,
        "next.jsonl",
        &["--n", "5", "--seed", "4", "--kind", "one"],
    );
    let o = std::process::Command::new(super::common::python())
        .arg(super::common::repo().join("scripts/tasks.py"))
        .args(["followups", demos.to_str().unwrap(), next.to_str().unwrap()])
        .args(["--share", "1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let followups = write_file(d, "followups.jsonl", &stdout(&o));
    let tasks_given: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tasks_given.len(), 5);
    for t in &tasks_given {
        let m = t["messages"].as_array().unwrap();
        assert!(
            m.len() >= 4,
            "an earlier exchange with its call and result: {t}"
        );
        assert_eq!(m[1]["tool_calls"][0]["name"], "calculator", "{t}");
    }

    let (runs, summary) = teach(d, &base, &followups, "runs.jsonl");
    assert_eq!(summary["mean_reward"], 1.0, "{summary}");
    // One call per task: the history's calls were made by another run.
    assert_eq!(summary["tool_calls"]["calculator"], 5, "{summary}");
    let o = run(&["verify", "--replay", runs.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));

    let sft = d.join("sft.jsonl");
    let o = run(&[
        "export",
        runs.to_str().unwrap(),
        "--format",
        "trl-sft",
        "--out",
        sft.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<Value> = std::fs::read_to_string(&sft)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 5);
    for (row, task) in rows.iter().zip(&tasks_given) {
        let ids = row["input_ids"].as_array().unwrap();
        let mask = row["completion_mask"].as_array().unwrap();
        // The tiny tokenizer's ids below 256 are bytes.
        let trained: Vec<u8> = ids
            .iter()
            .zip(mask)
            .filter(|(_, m)| m.as_u64() == Some(1))
            .filter_map(|(i, _)| u8::try_from(i.as_u64().unwrap()).ok())
            .collect();
        let trained = String::from_utf8(trained).unwrap();
        let own = task["meta"]["solution"][0]["call"].as_str().unwrap();
        assert!(
            trained.contains(&format!("\"expression\":\"{own}\"")),
            "{trained:?} should call {own}"
        );
        assert_eq!(
            trained.matches("\"expression\"").count(),
            1,
            "only this question's call is trained: {trained:?}"
        );
        assert!(trained.ends_with(&format!(
            "The answer is {}.",
            task["ground_truth"].as_str().unwrap()
        )));
    }
}
