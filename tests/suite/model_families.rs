//! Model families on their own terms: real chat templates (llama.cpp's fixtures, from the
//! llama-cpp-python sdist) rendered by Hugging Face's own template code, and Verity's
//! reading of each family's tool-call layout checked against what those templates write.

use std::{collections::BTreeMap, process::Command};

use serde_json::Value;
use verity_runtime::model::callformat::CallFormat;

use super::common::{llama_cpp_models, python, repo, stderr, stdout};

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
