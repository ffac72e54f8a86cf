//! Model families on their own terms: real chat templates (llama.cpp's fixtures, from the
//! llama-cpp-python sdist) rendered by Hugging Face's own template code, and Verity's
//! reading of each family's tool-call layout checked against what those templates write.

use std::{collections::BTreeMap, process::Command};

use serde_json::Value;
use verity_runtime::model::callformat::CallFormat;

use super::common::{llama_cpp_models, python, repo, stderr, stdout, verity};

/// End-of-turn markers a tokenizer decodes as special tokens (the runtime drops them by id
/// before reading calls; here the rendered text still has them).
const END_MARKERS: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "</s>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<end_of_turn>",
    "<|end|>",
];

fn strip_end(mut text: &str) -> &str {
    loop {
        let t = text.trim_end();
        match END_MARKERS.iter().find(|m| t.ends_with(*m)) {
            Some(m) => text = &t[..t.len() - m.len()],
            None => return t,
        }
    }
}

/// Each template's tool-call turn as transformers renders it.
fn rendered() -> Vec<Value> {
    let dir = llama_cpp_models().join("templates");
    let mut templates: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jinja"))
        .collect();
    templates.sort();
    assert!(templates.len() >= 40, "only {} templates", templates.len());
    let out = Command::new(python())
        .arg(repo().join("tests/clients/render_calls.py"))
        .args(&templates)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every template whose layout Verity recognises is read back exactly — both parallel calls
/// where the template writes two, names and arguments — and the families the README lists
/// are recognised as their format. A misdetected template (a layout read as another) fails.
#[test]
fn every_recognised_template_layout_reads_back_exactly() {
    let families: BTreeMap<&str, CallFormat> = [
        ("Qwen-Qwen3-0.6B.jinja", CallFormat::Hermes),
        ("Qwen-Qwen2.5-7B-Instruct.jinja", CallFormat::Hermes),
        ("Qwen-QwQ-32B.jinja", CallFormat::Hermes),
        (
            "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
            CallFormat::Hermes,
        ),
        (
            "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
            CallFormat::Hermes,
        ),
        ("ibm-granite-granite-4.0.jinja", CallFormat::Hermes),
        ("meta-llama-Llama-3.1-8B-Instruct.jinja", CallFormat::Llama3),
        ("meta-llama-Llama-3.2-3B-Instruct.jinja", CallFormat::Llama3),
        (
            "meta-llama-Llama-3.3-70B-Instruct.jinja",
            CallFormat::Llama3,
        ),
        (
            "mistralai-Mistral-Nemo-Instruct-2407.jinja",
            CallFormat::Mistral,
        ),
        (
            "Mistral-Small-3.2-24B-Instruct-2506.jinja",
            CallFormat::Mistral,
        ),
        (
            "mistralai-Ministral-3-14B-Reasoning-2512.jinja",
            CallFormat::Mistral,
        ),
        (
            "unsloth-mistral-Devstral-Small-2507.jinja",
            CallFormat::Mistral,
        ),
    ]
    .into_iter()
    .collect();
    let dir = llama_cpp_models().join("templates");
    let mut failures = Vec::new();
    let mut read = Vec::new();
    for row in rendered() {
        let name = row["template"].as_str().unwrap_or_default().to_owned();
        let template = std::fs::read_to_string(dir.join(&name)).unwrap();
        let detected = CallFormat::detect(&template);
        if let Some(want) = families.get(name.as_str()) {
            if detected != Some(*want) {
                failures.push(format!("{name}: detected {detected:?}, want {want}"));
            }
        }
        let (Some(format), Some(assistant)) = (detected, row["assistant"].as_str()) else {
            continue;
        };
        let parsed = format.parse(strip_end(assistant));
        let got: Vec<Value> = parsed
            .calls()
            .map(|(name, args)| serde_json::json!({"name": name, "arguments": serde_json::from_str::<Value>(args).unwrap_or(Value::Null)}))
            .collect();
        if got != row["expected"].as_array().cloned().unwrap_or_default()
            || !parsed.failures.is_empty()
        {
            failures.push(format!(
                "{name} ({format}): read {got:?} and {:?} from {assistant:?}",
                parsed.failures
            ));
        }
        read.push(format!("{name} ({format}, {} calls)", got.len()));
    }
    for name in families.keys() {
        if !read.iter().any(|r| r.starts_with(name)) {
            failures.push(format!("{name}: not rendered or not read"));
        }
    }
    eprintln!("read back: {}", read.join(", "));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// (family, vocab file, template) of the checkpoints most tests use.
const QWEN3: (&str, &str, &str) = ("qwen3", "ggml-vocab-qwen2.gguf", "Qwen-Qwen3-0.6B.jinja");
const MISTRAL: (&str, &str, &str) = (
    "mistral",
    "ggml-vocab-llama-spm.gguf",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja",
);
const LLAMA31: (&str, &str, &str) = (
    "llama3",
    "ggml-vocab-llama-bpe.gguf",
    "meta-llama-Llama-3.1-8B-Instruct.jinja",
);

/// Writes a family checkpoint with `verity model tiny --family`.
fn family_model(
    dir: &std::path::Path,
    family: &str,
    vocab: &str,
    template: &str,
) -> std::path::PathBuf {
    let models = llama_cpp_models();
    let out = dir.join(format!("{family}-{template}"));
    let o = Command::new(verity())
        .args(["model", "tiny", "--family", family, "--vocab"])
        .arg(models.join(vocab))
        .arg("--template")
        .arg(models.join("templates").join(template))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

/// `tests/clients/tokenizer_check.py` (the `tokenizers` and `transformers` libraries).
fn hf_check(args: &[&std::ffi::OsStr], stdin: Option<&Value>) -> Value {
    use std::io::Write;
    let mut child = Command::new(python())
        .arg(repo().join("tests/clients/tokenizer_check.py"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let (Some(v), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(v.to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(stdout(&out).lines().last().unwrap_or_default()).unwrap()
}

/// The family tokenizers Verity rebuilds from llama.cpp's vocab files reproduce llama.cpp's
/// own tokenisation vectors (`.inp` / `.out`) under Hugging Face's `tokenizers`.
#[test]
fn family_tokenizers_reproduce_llama_cpp_vectors() {
    let dir = tempfile::tempdir().unwrap();
    for (family, vocab, template) in [QWEN3, LLAMA31, MISTRAL] {
        let model = family_model(dir.path(), family, vocab, template);
        // Mistral's v3 layout puts 768 control tokens before the SentencePiece pieces.
        let shift = if family == "mistral" { "768" } else { "0" };
        let report = hf_check(
            &[
                "vectors".as_ref(),
                model.as_os_str(),
                llama_cpp_models().join(vocab).as_os_str(),
                shift.as_ref(),
            ],
            None,
        );
        assert!(report["cases"].as_u64().unwrap_or(0) >= 40, "{report}");
        assert_eq!(
            report["mismatches"],
            serde_json::json!([]),
            "{family}: {report}"
        );
    }
}

/// `tools` of a record as `transformers` takes them; tool-call arguments as objects.
fn hf_conversation(record: &Value, messages: &[Value]) -> Value {
    let tools: Vec<Value> = record["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| serde_json::json!({"type": "function", "function": t}))
        .collect();
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            let mut m = m.clone();
            if let Some(calls) = m["tool_calls"].as_array_mut() {
                for c in calls {
                    if let Some(s) = c["function"]["arguments"].as_str() {
                        c["function"]["arguments"] = serde_json::from_str(s).unwrap();
                    }
                    c["type"] = "function".into();
                }
            }
            m
        })
        .collect();
    serde_json::json!({"messages": messages, "tools": tools})
}

fn traj(file: &std::path::Path) -> Value {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["kind"] == "traj")
        .unwrap()
}

/// `verity run --model MODEL ARGS… --record FILE PROMPT` (empty config), which must record;
/// the run's trajectory record.
fn recorded_run(
    dir: &std::path::Path,
    model: &std::path::Path,
    args: &[&str],
    prompt: &str,
    file: &std::path::Path,
) -> Value {
    let o = Command::new(verity())
        .args(["run", "--config"])
        .arg(super::common::write_file(dir, "empty.toml", ""))
        .arg("--model")
        .arg(model)
        .args(args)
        .arg("--record")
        .arg(file)
        .arg(prompt)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("recorded to"),
        "{} {args:?}: {}",
        model.display(),
        stderr(&o)
    );
    traj(file)
}

/// [`recorded_run`] with the reply forced by a Lark grammar (`NAME.lark`), trusted tools,
/// `turns` model calls of at most `tokens` tokens each; the prompt is "compute".
fn forced_run(
    dir: &std::path::Path,
    model: &std::path::Path,
    name: &str,
    grammar: &str,
    turns: u32,
    tokens: u32,
) -> Value {
    let grammar = super::common::write_file(dir, &format!("{name}.lark"), grammar);
    let grammar = grammar.to_string_lossy().into_owned();
    let (turns, tokens) = (turns.to_string(), tokens.to_string());
    recorded_run(
        dir,
        model,
        &[
            "--grammar",
            &grammar,
            "--policy",
            "trusted",
            "--max-turns",
            &turns,
            "--max-tokens-per-call",
            &tokens,
        ],
        "compute",
        &dir.join(format!("{name}.jsonl")),
    )
}

/// Prompts identical to Hugging Face's: for each fixture template of the two vocabularies,
/// the ids of the first model call `verity run` makes (recorded) equal `transformers`'
/// `apply_chat_template(messages, tools=…, add_generation_prompt=True, tokenize=True)` on
/// the same conversation and tools. Then, on Qwen3, a reply forced (by a grammar) into two
/// parallel calls in Qwen's own layout: both are read and run, and the second model call's
/// prompt — with the calls and both results — equals `transformers`' too.
#[test]
fn prompts_equal_transformers_apply_chat_template() {
    let dir = tempfile::tempdir().unwrap();
    for (family, vocab, template) in [
        ("qwen3", "ggml-vocab-qwen2.gguf", "Qwen-Qwen3-0.6B.jinja"),
        (
            "qwen3",
            "ggml-vocab-qwen2.gguf",
            "Qwen-Qwen2.5-7B-Instruct.jinja",
        ),
        ("qwen3", "ggml-vocab-qwen2.gguf", "Qwen-QwQ-32B.jinja"),
        // The Hermes templates' `json_to_python_type` macro recurses forever on a type list
        // such as `["integer", "null"]`: these pass because Verity writes optional arguments
        // as optional, not nullable (`tools::tool::input_schema_for`).
        (
            "hermes",
            "ggml-vocab-llama-bpe.gguf",
            "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
        ),
        (
            "hermes",
            "ggml-vocab-llama-bpe.gguf",
            "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
        ),
        MISTRAL,
        (
            "mistral",
            "ggml-vocab-llama-spm.gguf",
            "Mistral-Small-3.2-24B-Instruct-2506.jinja",
        ),
        (
            "mistral",
            "ggml-vocab-llama-spm.gguf",
            "mistralai-Ministral-3-14B-Reasoning-2512.jinja",
        ),
        (
            "mistral",
            "ggml-vocab-llama-spm.gguf",
            "unsloth-mistral-Devstral-Small-2507.jinja",
        ),
        (
            "llama3",
            "ggml-vocab-llama-bpe.gguf",
            "meta-llama-Llama-3.1-8B-Instruct.jinja",
        ),
        (
            "llama3",
            "ggml-vocab-llama-bpe.gguf",
            "meta-llama-Llama-3.2-3B-Instruct.jinja",
        ),
        (
            "llama3",
            "ggml-vocab-llama-bpe.gguf",
            "meta-llama-Llama-3.3-70B-Instruct.jinja",
        ),
    ] {
        let model = family_model(dir.path(), family, vocab, template);
        let file = dir.path().join(format!("{template}.jsonl"));
        let r = recorded_run(
            dir.path(),
            &model,
            &["--max-turns", "1", "--max-tokens-per-call", "2"],
            "What is 17 * 23?",
            &file,
        );
        let n = r["prompt_messages"].as_u64().unwrap() as usize;
        let messages = r["messages"].as_array().unwrap()[..n].to_vec();
        let hf = hf_check(
            &["prompt".as_ref(), model.as_os_str()],
            Some(&hf_conversation(&r, &messages)),
        );
        assert_eq!(
            r["turns"][0]["prompt_ids"], hf["ids"],
            "{template}: Verity's first prompt differs from transformers' ({})",
            hf["text"]
        );
    }

    // Two parallel calls in Qwen's layout, forced by a grammar; the next prompt.
    let model = family_model(dir.path(), QWEN3.0, QWEN3.1, QWEN3.2);
    let r = forced_run(
        dir.path(),
        &model,
        "two",
        r#"start: <tool_call> "\n{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2+2\"}}\n" </tool_call> "\n" <tool_call> "\n{\"name\": \"calculator\", \"arguments\": {\"expression\": \"3*3\"}}\n" </tool_call> <|im_end|>"#,
        2,
        80,
    );
    let messages = r["messages"].as_array().unwrap();
    let calls = messages[1]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{}", messages[1]);
    let results: Vec<&str> = messages[2..4]
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(results, ["exact: 4", "exact: 9"], "{messages:?}");
    let hf = hf_check(
        &["prompt".as_ref(), model.as_os_str()],
        Some(&hf_conversation(&r, &messages[..4])),
    );
    assert_eq!(r["turns"][1]["prompt_ids"], hf["ids"], "{}", hf["text"]);
    // Token in, token out: the second prompt is the first prompt, the ids generated (the
    // stop token `<|im_end|>` included) and the results; the flat view exists, and the stop
    // token the model generated after its calls is trained on (mask 1).
    let turns = r["turns"].as_array().unwrap();
    let ids = |v: &Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_u64)
            .collect()
    };
    let mut continued = ids(&turns[0]["prompt_ids"]);
    continued.extend(ids(&turns[0]["gen_ids"]));
    assert_eq!(
        ids(&turns[0]["gen_ids"]).last(),
        Some(&151_645),
        "ends with <|im_end|>"
    );
    assert!(ids(&turns[1]["prompt_ids"]).starts_with(&continued));
    let view = &r["tokens"];
    assert_eq!(view["available"], true, "{view}");
    let response = ids(&view["response_ids"]);
    let mask = ids(&view["loss_mask"]);
    let stop = response.iter().position(|t| *t == 151_645).unwrap();
    assert_eq!(
        mask[stop], 1,
        "the generated stop token is in the loss mask"
    );
}

/// Strict mode in the family's own layout: on the real Qwen3 template, `--strict
/// --tool-choice required` forces a call written exactly as the template writes calls — a
/// newline after `<tool_call>`, `", "` and `": "`, `name` before `arguments` — not Verity's
/// compact layout; on the Nemo template, `[TOOL_CALLS]` and the array. (The tiny random
/// model never closes a string in a 151,936-token vocabulary, so the reply ends at the token limit inside the expression; the grammar's end,
/// one block per call and `<|im_end|>`, is checked on the grammar itself in
/// `model::grammar::tests`.)
#[test]
fn strict_mode_writes_calls_in_the_family_layout() {
    let dir = tempfile::tempdir().unwrap();
    for ((family, vocab, template), opening) in [
        (
            QWEN3,
            "<tool_call>\n{\"name\": \"calculator\", \"arguments\": {\"",
        ),
        // Mistral: the control token, then SentencePiece's `▁[` (decoded as " [").
        (
            MISTRAL,
            "[TOOL_CALLS] [{\"name\": \"calculator\", \"arguments\": {\"",
        ),
    ] {
        let model = family_model(dir.path(), family, vocab, template);
        let file = dir.path().join(format!("strict-{family}.jsonl"));
        let r = recorded_run(
            dir.path(),
            &model,
            &[
                "--strict",
                "--tool-choice",
                "required",
                "--tools",
                "calculator",
                "--max-turns",
                "1",
                "--max-tokens-per-call",
                "40",
            ],
            "What is 17 * 23?",
            &file,
        );
        let turn = &r["turns"][0];
        let dec = hf_check(
            &["decode".as_ref(), model.as_os_str()],
            Some(&turn["gen_ids"]),
        );
        let written = dec["text"].as_str().unwrap_or_default();
        assert!(written.starts_with(opening), "{family}: {written:?}");
        assert_eq!(turn["finish_reason"], "length", "{family}: {turn}");
    }
}

/// Token in, token out across conversations: seeded random mixes — one to three parallel
/// calls per reply, valid calls, calls whose tool fails (`1/0`), calls of a tool that does
/// not exist — forced into each family's layout by a grammar, three model calls each, on
/// the Qwen3, Qwen2.5, Hermes 3, Llama 3.1 (one call per reply there, as its template
/// renders only one) and Mistral Nemo templates. A call that cannot be used gets a user turn back (what went
/// wrong), so conversations also mix in user turns. Every prompt continues the previous
/// prompt and reply token for
/// token (the record's flat view exists), and where every call was usable, every prompt also
/// equals `transformers`' rendering of the conversation so far.
#[test]
fn random_conversations_stay_prefix_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed: u64 = 0x5eed_0015;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    // (family, vocab, template, Hermes layout? (else Llama 3's), end of turn, most calls)
    let families = [
        (
            "qwen3",
            "ggml-vocab-qwen2.gguf",
            "Qwen-Qwen3-0.6B.jinja",
            true,
            "<|im_end|>",
            3,
        ),
        (
            "qwen3",
            "ggml-vocab-qwen2.gguf",
            "Qwen-Qwen2.5-7B-Instruct.jinja",
            true,
            "<|im_end|>",
            3,
        ),
        (
            "hermes",
            "ggml-vocab-llama-bpe.gguf",
            "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
            true,
            "<|im_end|>",
            3,
        ),
        // Llama 3.1's template renders one call per message.
        (
            "llama3",
            "ggml-vocab-llama-bpe.gguf",
            "meta-llama-Llama-3.1-8B-Instruct.jinja",
            false,
            "<|eot_id|>",
            1,
        ),
        // Mistral's calls: one `[TOOL_CALLS]` array (built below, not as Hermes blocks).
        (
            "mistral",
            "ggml-vocab-llama-spm.gguf",
            "mistralai-Mistral-Nemo-Instruct-2407.jinja",
            false,
            "</s>",
            3,
        ),
    ];
    let models: Vec<std::path::PathBuf> = families
        .iter()
        .map(|(f, v, t, ..)| family_model(dir.path(), f, v, t))
        .collect();
    let (mut compared, mut unusable) = (0, 0);
    for case in 0..10 {
        let model = &models[case % models.len()];
        let (family, _, _, hermes, end, most) = families[case % families.len()];
        let n = 1 + next(most);
        let mut usable = true;
        let blocks: Vec<String> = (0..n)
            .map(|_| {
                let (name, expr) = match next(4) {
                    0 => ("calculator", "1/0".to_owned()),
                    1 => {
                        usable = false;
                        ("nosuch", "1".to_owned())
                    }
                    _ => ("calculator", format!("{} * {}", next(90) + 10, next(90) + 10)),
                };
                if family == "mistral" {
                    let id: String = (0..9).map(|_| char::from(b'a' + next(26) as u8)).collect();
                    format!(
                        r#"{{\"name\": \"{name}\", \"arguments\": {{\"expression\": \"{expr}\"}}, \"id\": \"{id}\"}}"#
                    )
                } else if hermes {
                    format!(
                        r#"<tool_call> "\n{{\"name\": \"{name}\", \"arguments\": {{\"expression\": \"{expr}\"}}}}\n" </tool_call>"#
                    )
                } else {
                    format!(
                        r#""{{\"name\": \"{name}\", \"parameters\": {{\"expression\": \"{expr}\"}}}}""#
                    )
                }
            })
            .collect();
        let r = forced_run(
            dir.path(),
            model,
            &format!("case{case}"),
            &if family == "mistral" {
                format!(r#"start: <[5]> " [{}]" {end}"#, blocks.join(", "))
            } else {
                format!("start: {} {end}", blocks.join(r#" "\n" "#))
            },
            3,
            120,
        );
        let turns = r["turns"].as_array().unwrap();
        assert_eq!(turns.len(), 3, "case {case}");
        assert_eq!(
            r["tokens"]["available"], true,
            "case {case}: {}",
            r["tokens"]
        );
        for k in 1..turns.len() {
            let mut continued: Vec<Value> = turns[k - 1]["prompt_ids"].as_array().unwrap().clone();
            continued.extend(turns[k - 1]["gen_ids"].as_array().unwrap().iter().cloned());
            let prompt = turns[k]["prompt_ids"].as_array().unwrap();
            assert!(prompt.starts_with(&continued), "case {case}, turn {k}");
            // Only Hermes re-renders history (a tool result followed by a turn closes
            // with an extra newline): the others continue exactly as they render.
            if usable && family != "hermes" {
                assert_eq!(
                    turns[k]["prompt_view"], "continued",
                    "case {case}, turn {k}"
                );
            }
        }
        if !usable {
            unusable += 1;
        }
        if usable {
            compared += 1;
            // The messages each model call saw: everything before its assistant turn.
            let messages = r["messages"].as_array().unwrap();
            let assistants: Vec<usize> = messages
                .iter()
                .enumerate()
                .filter(|(_, m)| m["role"] == "assistant")
                .map(|(i, _)| i)
                .collect();
            for (k, &a) in assistants.iter().enumerate().take(turns.len()) {
                let hf = hf_check(
                    &["prompt".as_ref(), model.as_os_str()],
                    Some(&hf_conversation(&r, &messages[..a])),
                );
                // The record says whether `apply_chat_template` gives the ids the model saw.
                let differs = turns[k]["prompt_view"] == "continued_rerender_differs";
                assert_eq!(
                    turns[k]["prompt_ids"] != hf["ids"],
                    differs,
                    "case {case}, turn {k} ({}): {}",
                    turns[k]["prompt_view"],
                    hf["text"]
                );
            }
        }
    }
    assert!(
        compared > 0 && unusable > 0,
        "the seed must give both kinds of case ({compared} compared, {unusable} not)"
    );
}

/// The `.gguf` beside each family checkpoint is the same model: loaded from it (mistral.rs
/// reads the tokenizer and chat template from its header, the f32 weights from its tensors),
/// a greedy Qwen3 run without tools sees the same prompt ids and generates the same ids as
/// from the Hugging Face folder. The Llama 3 `.gguf` loads and generates, but mistral.rs's
/// own GGUF path differs from `transformers` there (it fills `date_string` with today's date
/// and splits digits one by one instead of Llama 3's groups of three — see
/// docs/engine-notes.md), so only its header is compared.
#[test]
fn family_gguf_is_the_same_model_as_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    for (family, vocab, template) in [QWEN3, LLAMA31] {
        let folder = family_model(dir.path(), family, vocab, template);
        let gguf = folder.join(format!("verity-tiny-{family}.gguf"));
        let ids = |model: &std::path::Path, name: &str| -> (Value, Value) {
            let file = dir.path().join(name);
            let r = recorded_run(
                dir.path(),
                model,
                &[
                    "--tool-choice",
                    "none",
                    "--max-turns",
                    "1",
                    "--max-tokens-per-call",
                    "12",
                ],
                "What is 17 * 23?",
                &file,
            );
            (
                r["turns"][0]["prompt_ids"].clone(),
                r["turns"][0]["gen_ids"].clone(),
            )
        };
        let from_folder = ids(&folder, &format!("{family}-folder.jsonl"));
        let from_gguf = ids(&gguf, &format!("{family}-gguf.jsonl"));
        assert!(
            from_folder.0.as_array().is_some_and(|a| !a.is_empty()),
            "{family}"
        );
        if family == "qwen3" {
            assert_eq!(from_folder, from_gguf, "{family}: folder vs .gguf");
        } else {
            assert_eq!(from_gguf.1.as_array().map(Vec::len), Some(12), "{family}");
        }
        // The header carries the family's tokenizer with its published special tokens, and
        // the template.
        let meta = verity_runtime::model::gguf::read_metadata(&gguf).unwrap();
        let tokens = meta["tokenizer.ggml.tokens"].as_array().unwrap();
        let (id, name) = if family == "qwen3" {
            (151_657, "<tool_call>")
        } else {
            (128_010, "<|python_tag|>")
        };
        assert_eq!(tokens[id].as_str(), Some(name), "{family}");
        let source =
            std::fs::read_to_string(llama_cpp_models().join("templates").join(template)).unwrap();
        assert_eq!(
            meta["tokenizer.chat_template"].as_str(),
            Some(source.as_str()),
            "{family}"
        );
    }
}

/// The record says which prompt the model saw. A reply forced to open with a compact
/// `<think>hm</think>` (no newlines) and one call: the second model call continues the
/// first prompt and reply token for token, but the Qwen3 template re-renders that reasoning
/// as `<think>\nhm\n</think>\n\n` — so `apply_chat_template` on the conversation gives other
/// ids, and the record says `continued_rerender_differs` (the first call: `rendered`). A
/// reply the template re-renders exactly (the parallel calls of
/// `prompts_equal_transformers_apply_chat_template`) is `continued`.
#[test]
fn records_say_which_prompt_the_model_saw() {
    let dir = tempfile::tempdir().unwrap();
    let model = family_model(dir.path(), QWEN3.0, QWEN3.1, QWEN3.2);
    let run = |name: &str, grammar: &str| forced_run(dir.path(), &model, name, grammar, 2, 60);
    let call = r#"<tool_call> "\n{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2+2\"}}\n" </tool_call> <|im_end|>"#;
    let r = run("think", &format!(r#"start: <think> "hm" </think> {call}"#));
    let turns = r["turns"].as_array().unwrap();
    assert_eq!(turns[0]["prompt_view"], "rendered", "{}", turns[0]);
    assert_eq!(turns[1]["prompt_view"], "continued_rerender_differs");
    let messages = r["messages"].as_array().unwrap();
    let hf = hf_check(
        &["prompt".as_ref(), model.as_os_str()],
        Some(&hf_conversation(&r, &messages[..3])),
    );
    assert_ne!(turns[1]["prompt_ids"], hf["ids"], "{}", hf["text"]);
    assert_eq!(
        r["tokens"]["available"], true,
        "the flat view is the one the model saw"
    );

    let r = run("plain", &format!("start: {call}"));
    let turns = r["turns"].as_array().unwrap();
    assert_eq!(turns[1]["prompt_view"], "continued", "{}", turns[1]);
}

/// Mistral in its own layout: a reply forced (by a grammar) into two parallel calls the way
/// the Nemo template writes them — one `[TOOL_CALLS][…]` array, each call with its
/// nine-character id, then `</s>`; after the control token SentencePiece's `▁` (a space),
/// as the tokenizer writes the template's `[TOOL_CALLS][` and as `--strict` forces it —
/// is read (ids kept), both calls run, and the next prompt
/// continues the first token for token *and* equals `transformers`' rendering of the
/// conversation (the template re-renders the calls exactly), with the generated `</s>` in
/// the loss mask.
#[test]
fn mistral_parallel_calls_run_and_re_render_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let model = family_model(dir.path(), MISTRAL.0, MISTRAL.1, MISTRAL.2);
    let r = forced_run(
        dir.path(),
        &model,
        "mistral-two",
        r#"start: <[5]> " [{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2+2\"}, \"id\": \"a1b2c3d4e\"}, {\"name\": \"calculator\", \"arguments\": {\"expression\": \"3*3\"}, \"id\": \"f5g6h7i8j\"}]" </s>"#,
        2,
        80,
    );
    let messages = r["messages"].as_array().unwrap();
    let ids: Vec<&str> = messages[1]["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, ["a1b2c3d4e", "f5g6h7i8j"], "{}", messages[1]);
    let results: Vec<&str> = messages[2..4]
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(results, ["exact: 4", "exact: 9"], "{messages:?}");
    let turns = r["turns"].as_array().unwrap();
    assert_eq!(turns[1]["prompt_view"], "continued", "{}", turns[1]);
    let hf = hf_check(
        &["prompt".as_ref(), model.as_os_str()],
        Some(&hf_conversation(&r, &messages[..4])),
    );
    assert_eq!(turns[1]["prompt_ids"], hf["ids"], "{}", hf["text"]);
    let view = &r["tokens"];
    assert_eq!(view["available"], true, "{view}");
    let response: Vec<u64> = view["response_ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let stop = response.iter().position(|t| *t == 2).unwrap();
    assert_eq!(
        view["loss_mask"][stop], 1,
        "the generated </s> is trained on"
    );
}
