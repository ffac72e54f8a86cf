//! The `code` tool end to end: `verity setup` from scratch, the cached module and its
//! corruption, an adversarial corpus through one long-lived MCP server, HumanEval, and
//! progress + cancellation with the Python SDK.

use std::{io::Read, process::Command};

use serde_json::{json, Value};

use super::common::{python_client, repo, verity};

fn verity_in(cache: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(verity())
        .args(args)
        .env("VERITY_CACHE_DIR", cache)
        .env_remove("VERITY_PYTHON_WASM")
        .output()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn setup_from_scratch_then_cache_corruption_is_detected_and_rebuilt() {
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let python = repo().join(".venv/bin/python");
    let out = Command::new(verity())
        .args(["setup", "--python", python.to_str().unwrap_or_default()])
        .env("VERITY_CACHE_DIR", cache.path())
        .env_remove("VERITY_PYTHON_WASM")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("verifying SHA-256") && err.contains("compiled and cached"),
        "{err}"
    );
    // Idempotent: the second run downloads and compiles nothing.
    let out = verity_in(
        cache.path(),
        &["setup", "--python", python.to_str().unwrap_or_default()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("cached module is valid"),
        "{err}"
    );
    assert!(!err.contains("pip download"), "{err}");

    let call = |code: &str| {
        let args = json!({"code": code}).to_string();
        let out = verity_in(cache.path(), &["tools", "call", "code", &args]);
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(call("print(2+2)").0, "4\n");

    let cwasm_dir = cache.path().join("cwasm");
    let cwasm = std::fs::read_dir(&cwasm_dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .unwrap_or_else(|| panic!("no .cwasm in {}", cwasm_dir.display()));
    // Corrupt it: flip bytes in the middle.
    let mut bytes = std::fs::read(&cwasm).unwrap_or_default();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xff;
    }
    std::fs::write(&cwasm, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let (stdout, stderr) = call("print(6*7)");
    assert_eq!(stdout, "42\n", "{stderr}");
    let sum = std::fs::read_to_string(cwasm.with_extension("sha256")).unwrap_or_default();
    let mut f = std::fs::File::open(&cwasm).unwrap_or_else(|e| panic!("{e}"));
    let mut fresh = Vec::new();
    let _ = f.read_to_end(&mut fresh);
    assert_ne!(fresh, bytes, "the corrupt module was not rebuilt");
    assert_eq!(sum.trim().len(), 64);

    // A module from another wasmtime/configuration (garbage with a matching checksum):
    // wasmtime rejects it, and it is rebuilt rather than loaded.
    let garbage = b"not a wasmtime module".to_vec();
    std::fs::write(&cwasm, &garbage).unwrap_or_else(|e| panic!("{e}"));
    let digest = {
        use std::fmt::Write as _;
        let d = <sha2::Sha256 as sha2::Digest>::digest(&garbage);
        d.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    };
    std::fs::write(cwasm.with_extension("sha256"), digest).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call("print('rebuilt')").0, "rebuilt\n");
}

fn calls(report: &Value) -> Vec<Value> {
    report["calls"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no calls: {report}"))
}

fn serve_and_call(calls_json: &Value, extra: &[&str]) -> Value {
    // Batches can exceed the argument-length limit: pass them in a file.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("calls.json");
    std::fs::write(&file, calls_json.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let v = verity();
    let mut args = vec!["--calls-file", file.to_str().unwrap_or_default()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "--stdio",
        v.to_str().unwrap_or_default(),
        "serve",
        "--policy",
        "trusted",
    ]);
    python_client(&args)
}

#[test]
fn adversarial_corpus_is_contained_and_the_server_stays_healthy() {
    let corpus: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/data/sandbox_adversarial.json"))
            .unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("corpus: {e}"));
    let mut list: Vec<Value> = corpus
        .iter()
        .map(|c| {
            let mut args = json!({"code": c["code"]});
            for k in ["timeout_ms", "memory_mb"] {
                if !c[k].is_null() {
                    args[k] = c[k].clone();
                }
            }
            json!(["code", args])
        })
        .collect();
    list.push(json!(["code", {"code": "print(2+2)"}]));
    let report = serve_and_call(&Value::Array(list), &[]);
    let results = calls(&report);
    assert_eq!(results.len(), corpus.len() + 1, "{report}");
    let mut failures = Vec::new();
    for (case, r) in corpus.iter().zip(&results) {
        let name = case["name"].as_str().unwrap_or_default();
        let s = &r["structured"];
        if s.is_null() {
            failures.push(format!("{name}: no result: {r}"));
            continue;
        }
        let stderr = s["stderr"].as_str().unwrap_or_default();
        if !case["exit_code"].is_null() && s["exit_code"] != case["exit_code"] {
            failures.push(format!(
                "{name}: exit {} (stderr {stderr:?})",
                s["exit_code"]
            ));
        }
        if !case["limit_hit"].is_null() && s["limit_hit"] != case["limit_hit"] {
            failures.push(format!(
                "{name}: limit_hit {} (stderr {stderr:?})",
                s["limit_hit"]
            ));
        }
        if let Some(want) = case["stderr"].as_str() {
            if !stderr.contains(want) {
                failures.push(format!("{name}: stderr lacks {want:?}: {stderr:?}"));
            }
        }
        if let Some(want) = case["stdout"].as_str() {
            if s["stdout"].as_str().map(str::trim_end) != Some(want) {
                failures.push(format!("{name}: stdout {:?}", s["stdout"]));
            }
        }
        if case["stdout_truncated"] == true && s["stdout_truncated"] != true {
            failures.push(format!("{name}: stdout not truncated"));
        }
        if let Some(want) = case.get("value") {
            if &s["value"] != want {
                failures.push(format!("{name}: value {} (want {want})", s["value"]));
            }
        }
        // The quota holds on every write, not only when the run is stopped: what the code
        // left never passes it, not even for one watcher interval.
        if let Some(most) = case["files_at_most"].as_u64() {
            let held: u64 = s["files"]
                .as_array()
                .map(|f| f.iter().filter_map(|e| e["size"].as_u64()).sum())
                .unwrap_or(0);
            if held > most {
                failures.push(format!("{name}: scratch holds {held} bytes > {most}"));
            }
        }
        if case["stopped"] == true && s["exit_code"] == 0 {
            failures.push(format!("{name}: was not stopped"));
        }
        // Nothing of the host leaks into what the model sees.
        let text = r["text"].as_str().unwrap_or_default();
        for leak in [
            "/root",
            "/home",
            ".cargo",
            "wasmtime",
            "verity-scratch",
            "/tmp/",
        ] {
            if text.contains(leak) || stderr.contains(leak) {
                failures.push(format!("{name}: host detail {leak:?} leaked: {stderr:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let last = &results[corpus.len()];
    assert_eq!(last["structured"]["stdout"], "4\n", "{last}");
}

fn humaneval() -> Vec<Value> {
    let path = repo().join(".test-data/HumanEval.jsonl.gz");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/install-test-deps.sh", path.display()));
    // Decompress with Python (gzip is in its standard library; no extra crate needed).
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import gzip, sys; sys.stdout.buffer.write(gzip.decompress(sys.stdin.buffer.read()))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(&bytes);
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn humaneval_canonical_solutions_pass_and_a_wrong_one_fails() {
    let problems = humaneval();
    assert_eq!(problems.len(), 164);
    let mut list: Vec<Value> = problems
        .iter()
        .map(|p| {
            let code = format!(
                "{}{}\n\n{}\n\ncheck({})\n",
                p["prompt"].as_str().unwrap_or_default(),
                p["canonical_solution"].as_str().unwrap_or_default(),
                p["test"].as_str().unwrap_or_default(),
                p["entry_point"].as_str().unwrap_or_default()
            );
            json!(["code", {"code": code, "timeout_ms": 10000}])
        })
        .collect();
    // A wrong solution to the first problem must fail its tests.
    let p0 = &problems[0];
    let wrong = format!(
        "{}    return not True\n\n{}\n\ncheck({})\n",
        p0["prompt"].as_str().unwrap_or_default(),
        p0["test"].as_str().unwrap_or_default(),
        p0["entry_point"].as_str().unwrap_or_default()
    );
    list.push(json!(["code", {"code": wrong}]));
    let report = serve_and_call(&Value::Array(list), &[]);
    let results = calls(&report);
    let failed: Vec<String> = problems
        .iter()
        .zip(&results)
        .filter(|(_, r)| r["structured"]["exit_code"] != 0)
        .map(|(p, r)| format!("{}: {}", p["task_id"], r["structured"]["stderr"]))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 164 failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    let last = &results[164]["structured"];
    assert_eq!(last["exit_code"], 1, "{last}");
    assert!(last["stderr"]
        .as_str()
        .unwrap_or_default()
        .contains("AssertionError"));
}

#[test]
fn python_sdk_sees_progress_and_can_cancel_a_long_call() {
    let report = serve_and_call(
        &json!([["code", {"code": "import time\ntime.sleep(1.6)\nprint('done')"}]]),
        &[],
    );
    let c = &calls(&report)[0];
    assert_eq!(c["structured"]["stdout"], "done\n", "{report}");
    let progress = c["progress"].as_array().cloned().unwrap_or_default();
    assert!(progress.len() >= 3, "expected progress notifications: {c}");

    let report = serve_and_call(
        &json!([["code", {"code": "while True: pass", "timeout_ms": 20000}], ["code", {"code": "print('after')"}]]),
        &["--cancel-after", "1.0"],
    );
    let c = calls(&report);
    assert_eq!(c[0]["cancelled"], true, "{report}");
    assert_eq!(c[1]["structured"]["stdout"], "after\n", "{report}");
}

#[test]
fn final_expression_value_and_deterministic_randomness() {
    let report = serve_and_call(
        &json!([
            ["code", {"code": "x = 6\nx * 7"}],
            ["code", {"code": "import random\nrandom.random()", "seed": 7}],
            ["code", {"code": "import random\nrandom.random()", "seed": 7}],
            ["code", {"code": "import random\nrandom.random()", "seed": 8}],
            ["code", {"code": "open('/scratch/out.txt', 'w').write('hello')\nNone"}]
        ]),
        &[],
    );
    let c = calls(&report);
    assert_eq!(c[0]["structured"]["value"], "42", "{report}");
    assert_eq!(c[1]["structured"]["value"], c[2]["structured"]["value"]);
    assert_ne!(c[1]["structured"]["value"], c[3]["structured"]["value"]);
    assert_eq!(
        c[4]["structured"]["files"],
        json!([{"path": "out.txt", "size": 5, "text": "hello"}])
    );
    assert_eq!(c[4]["structured"]["value"], Value::Null);
}

#[test]
fn sessions_keep_state_and_end_cleanly_without_touching_others() {
    let report = serve_and_call(
        &json!([
            ["code", {"code": "import math\nx = 41\ndef inc(v): return v + 1", "session_id": "a"}],
            ["code", {"code": "inc(x)", "session_id": "a"}],
            ["code", {"code": "x = 'other'", "session_id": "b"}],
            ["code", {"code": "print(x, math.pi > 3)", "session_id": "a"}],
            ["code", {"code": "open('notes.txt', 'w').write('kept')\nx", "session_id": "b"}],
            ["code", {"code": "1/0", "session_id": "a"}],
            ["code", {"code": "x", "session_id": "a"}],
            ["code", {"code": "while True: pass", "session_id": "a", "timeout_ms": 500}],
            ["code", {"code": "x", "session_id": "a"}],
            ["code", {"code": "open('notes.txt').read()", "session_id": "b"}],
            ["code", {"code": "import sys\nsys.exit(3)", "session_id": "b"}],
            ["code", {"code": "'x' in dir()", "session_id": "b"}],
            ["code", {"code": "x", "session_id": "../etc"}]
        ]),
        &[],
    );
    let c = calls(&report);
    let s = |i: usize| c[i]["structured"].clone();
    assert_eq!(s(1)["value"], "42", "{report}");
    assert_eq!(s(3)["stdout"], "41 True\n");
    assert_eq!(s(4)["value"], "'other'");
    assert_eq!(s(5)["exit_code"], 1);
    assert!(s(5)["stderr"]
        .as_str()
        .unwrap_or_default()
        .contains("ZeroDivisionError"));
    assert_eq!(
        s(5)["session_ended"],
        false,
        "an exception does not end a session"
    );
    assert_eq!(s(6)["value"], "41");
    assert_eq!(s(7)["limit_hit"], "time");
    assert_eq!(s(7)["session_ended"], true);
    // The timed-out session is gone: a new one starts empty.
    assert_eq!(s(8)["exit_code"], 1);
    assert!(s(8)["stderr"]
        .as_str()
        .unwrap_or_default()
        .contains("NameError"));
    // Session b was unaffected.
    assert_eq!(s(9)["value"], "'kept'");
    assert_eq!(s(10)["exit_code"], 3);
    assert_eq!(s(10)["session_ended"], true);
    assert_eq!(s(11)["value"], "False");
    assert_eq!(c[12]["is_error"], true, "{}", c[12]);
}

/// Terminal escapes a sandboxed program prints (a window-title OSC, an OSC 52 clipboard
/// write, a C1 CSI) reach a terminal escaped through `verity tools call`; piped, the bytes
/// are the program's own.
#[test]
fn terminal_escapes_from_the_sandbox_are_shown_not_obeyed() {
    let code = r#"{"code": "print(chr(27)+\"]0;owned\"+chr(7)+chr(27)+\"]52;c;aGk=\"+chr(7)+chr(0x9b)+\"2J\")"}"#;
    // Under a pseudo-terminal (util-linux `script`), as a user at a shell would run it.
    let cmd = format!("{} tools call code '{code}'", verity().display());
    let tty = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("util-linux script");
    assert!(
        tty.status.success(),
        "{}",
        String::from_utf8_lossy(&tty.stdout)
    );
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(
        !tty.stdout.contains(&0x1b),
        "a raw ESC reached the terminal: {shown:?}"
    );
    assert!(
        !shown.contains('\u{9b}'),
        "a raw CSI reached the terminal: {shown:?}"
    );
    assert!(
        shown.contains("\\x1b]0;owned\\x07")
            && shown.contains("\\x1b]52;c;aGk=")
            && shown.contains("\\x9b2J"),
        "{shown:?}"
    );
    let piped = Command::new(verity())
        .args(["tools", "call", "code", code])
        .output()
        .unwrap();
    assert!(piped.status.success());
    assert!(String::from_utf8_lossy(&piped.stdout).starts_with("\x1b]0;owned\x07"));
}

/// A cell cannot end itself by printing the driver's end marker: the call still runs to its
/// wall limit (the interpreter never went back to waiting for the next cell), is reported as
/// timed out, and the session is stopped — no interpreter keeps burning a core after "ok".
#[test]
fn a_forged_end_marker_does_not_end_the_cell() {
    let forge = "import sys\nsys.stderr.write('\\x00verity-end\\x00' + '{\"status\": \"ok\", \"value\": \"forged\"}' + '\\n')\nsys.stderr.flush()\nwhile True: pass";
    let report = serve_and_call(
        &json!([
            ["code", {"code": forge, "session_id": "f", "timeout_ms": 1500}],
            ["code", {"code": "1 + 1", "session_id": "f"}]
        ]),
        &[],
    );
    let c = calls(&report);
    let s = c[0]["structured"].clone();
    assert_eq!(s["limit_hit"], "time", "{report}");
    assert_eq!(s["session_ended"], true, "{report}");
    assert_ne!(s["value"], "forged", "{report}");
    assert!(s["duration_ms"].as_u64().unwrap_or(0) >= 1400, "{report}");
    // The next cell gets a fresh interpreter, not the forger's.
    assert_eq!(c[1]["structured"]["value"], "2", "{report}");
}

/// The scratch quota counts at any depth and counts sparse files by their size: 40 MiB
/// under 40 nested directories, and a 1 TB sparse file written as the code ends, each stop
/// the run as `disk`.
#[test]
fn the_disk_quota_counts_every_depth_and_sparse_files() {
    let deep = "import os\np = '.'\nfor i in range(40):\n    p = os.path.join(p, 'd')\n    os.mkdir(p)\nopen(os.path.join(p, 'big'), 'wb').write(b'x' * (40 * 2**20))";
    let sparse = "f = open('sparse', 'wb')\nf.seek(10**12)\nf.write(b'x')\nf.close()";
    let report = serve_and_call(
        &json!([
            ["code", {"code": deep}],
            ["code", {"code": sparse}],
            ["code", {"code": sparse, "session_id": "q"}],
            ["code", {"code": "1 + 1"}]
        ]),
        &[],
    );
    let c = calls(&report);
    for (i, what) in [(0, "deep"), (1, "sparse"), (2, "sparse in a session")] {
        assert_eq!(c[i]["structured"]["limit_hit"], "disk", "{what}: {}", c[i]);
    }
    assert_eq!(c[2]["structured"]["session_ended"], true, "{}", c[2]);
    assert_eq!(c[3]["structured"]["value"], "2");
}
