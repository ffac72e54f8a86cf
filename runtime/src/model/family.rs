//! Tiny checkpoints of real model families: the tiny Qwen3-architecture weights of
//! [`super::tiny`] (random, deterministic), with a family's **real tokenizer** — rebuilt from
//! a vocab-only GGUF file (llama.cpp's `ggml-vocab-*.gguf`: the published vocabulary and
//! merges) into a Hugging Face `tokenizer.json` — and a **real chat template** given as a
//! file. Newer special tokens that the GGUF files carry as placeholders (`[PAD151657]`,
//! `<|reserved_special_token_4|>`) are put back at their published ids with their
//! published flags (`<tool_call>` is not "special" in Qwen: it stays in decoded text).
//!
//! The result loads in mistral.rs and in `transformers` alike, so a prompt Verity builds
//! can be compared id for id with `apply_chat_template`.

use std::{
    collections::BTreeMap,
    fmt, io,
    path::{Path, PathBuf},
    str::FromStr,
};

use serde_json::{json, Value};

use super::{
    gguf::{self, MetaValue},
    tiny::{self, TinySpec},
};

/// A model family a tiny checkpoint can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Qwen 2.5 / 3: the qwen2 vocabulary (151,643 BPE tokens + specials), ChatML.
    Qwen3,
    /// Llama 3.1 – 3.3: the llama-bpe vocabulary (128,000 + 256 specials).
    Llama3,
    /// Hermes 2 Pro / 3 (Nous Research) on Llama 3: the llama-bpe vocabulary with ChatML's
    /// `<|im_start|>` / `<|im_end|>` in two of Llama's reserved slots.
    Hermes,
    /// Mistral (v3 tokenizer layout: `<unk> <s> </s>`, 768 control tokens — `[INST]`,
    /// `[TOOL_CALLS]`, … — then a 32,000-piece SentencePiece vocabulary).
    Mistral,
}

/// Families, with the vocab file each needs.
pub const FAMILIES: &[(&str, Family, &str)] = &[
    ("qwen3", Family::Qwen3, "ggml-vocab-qwen2.gguf"),
    ("llama3", Family::Llama3, "ggml-vocab-llama-bpe.gguf"),
    ("hermes", Family::Hermes, "ggml-vocab-llama-bpe.gguf"),
    ("mistral", Family::Mistral, "ggml-vocab-llama-spm.gguf"),
];

/// An unknown family name.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown model family '{0}'; the families are: {list}", list = FAMILIES.iter().map(|(n, _, v)| format!("{n} (vocab {v})")).collect::<Vec<_>>().join(", "))]
pub struct UnknownFamily(pub String);

impl FromStr for Family {
    type Err = UnknownFamily;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let alias = match s.as_str() {
            "qwen" | "qwen2.5" | "qwen3" => "qwen3",
            "llama" | "llama3" | "llama3.1" | "llama3.2" | "llama3.3" => "llama3",
            "hermes2" | "hermes3" | "hermes-2-pro" | "hermes-3" => "hermes",
            "mistral-nemo" | "nemo" | "ministral" | "mistral-small" => "mistral",
            other => other,
        };
        FAMILIES
            .iter()
            .find(|(n, _, _)| *n == alias)
            .map(|(_, f, _)| *f)
            .ok_or(UnknownFamily(s))
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = FAMILIES
            .iter()
            .find(|(_, x, _)| x == self)
            .map(|(n, _, _)| *n)
            .unwrap_or("?");
        f.write_str(name)
    }
}

/// Why a family checkpoint could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FamilyError {
    /// The vocab file could not be read.
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    /// The vocab file is not the kind this family needs.
    #[error("{path}: {why}")]
    Vocab {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// Writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: io::Error,
    },
}

/// One family's tokenizer facts, as its published `tokenizer.json` /
/// `tokenizer_config.json` state them.
struct Spec {
    /// `tokenizer.ggml.pre` the vocab file must have.
    pre: &'static str,
    /// The pre-tokenizer's split pattern.
    regex: &'static str,
    normalizer: Option<&'static str>,
    /// Llama 3 looks whole words up before merging.
    ignore_merges: bool,
    /// Published added tokens that differ from the GGUF file's (id, content, special).
    overrides: Vec<(u32, String, bool)>,
    /// Tokens past this id are the GGUF file's padding, not in the published tokenizer.
    last_token: Option<u32>,
    bos: Option<u32>,
    eos: Vec<u32>,
    pad: u32,
    /// `tokenizer_config.json`'s `eos_token`.
    eos_token: &'static str,
    tokenizer_class: &'static str,
    /// Prepend BOS when encoding with special tokens (Llama's post-processor).
    add_bos: bool,
}

fn spec(family: Family) -> Spec {
    match family {
        Family::Qwen3 => {
            let overrides = [
                "<|object_ref_start|>",
                "<|object_ref_end|>",
                "<|box_start|>",
                "<|box_end|>",
                "<|quad_start|>",
                "<|quad_end|>",
                "<|vision_start|>",
                "<|vision_end|>",
                "<|vision_pad|>",
                "<|image_pad|>",
                "<|video_pad|>",
            ]
            .iter()
            .map(|t| (true, *t))
            .chain(
                [
                    "<tool_call>",
                    "</tool_call>",
                    "<|fim_prefix|>",
                    "<|fim_middle|>",
                    "<|fim_suffix|>",
                    "<|fim_pad|>",
                    "<|repo_name|>",
                    "<|file_sep|>",
                    "<tool_response>",
                    "</tool_response>",
                    "<think>",
                    "</think>",
                ]
                .iter()
                .map(|t| (false, *t)),
            )
            .enumerate()
            .map(|(i, (special, t))| (151_646 + i as u32, t.to_string(), special))
            .collect();
            Spec {
                pre: "qwen2",
                regex: r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
                normalizer: Some("NFC"),
                ignore_merges: false,
                overrides,
                last_token: Some(151_668),
                bos: None,
                eos: vec![151_645, 151_643],
                pad: 151_643,
                eos_token: "<|im_end|>",
                tokenizer_class: "Qwen2Tokenizer",
                add_bos: false,
            }
        }
        Family::Mistral => Spec {
            pre: "default",
            regex: "",
            normalizer: None,
            ignore_merges: false,
            overrides: Vec::new(),
            last_token: None,
            bos: Some(1),
            eos: vec![2],
            pad: 0,
            eos_token: "</s>",
            // Not `LlamaTokenizerFast`: transformers 5 rebuilds that class's normalizer
            // (non-legacy), so it would not tokenize as `tokenizer.json` says.
            tokenizer_class: "PreTrainedTokenizerFast",
            add_bos: true,
        },
        Family::Hermes => {
            // Nous's Llama-3 fine-tunes turn reserved tokens into ChatML's markers (special)
            // and, since Hermes 2 Pro, the tool tags into single tokens that stay in decoded
            // text. Their published `tokenizer_config.json` is not in any registry package,
            // so the slots — Llama 3's first reserved ones — are Verity's choice; what tests
            // depend on is that each is one token with the published flag, not its number.
            let llama = spec(Family::Llama3);
            let mut overrides = llama.overrides;
            overrides.push((128_002, "<|im_start|>".to_owned(), true));
            overrides.push((128_003, "<|im_end|>".to_owned(), true));
            for (i, tag) in [
                "<tools>",
                "</tools>",
                "<tool_call>",
                "</tool_call>",
                "<tool_response>",
                "</tool_response>",
            ]
            .iter()
            .enumerate()
            {
                overrides.push((128_011 + i as u32, (*tag).to_owned(), false));
            }
            Spec {
                overrides,
                eos: vec![128_003, 128_001],
                eos_token: "<|im_end|>",
                ..llama
            }
        }
        Family::Llama3 => {
            // Llama 3.1 renamed four reserved tokens and renumbered the rest.
            let mut overrides = vec![
                (128_004, "<|finetune_right_pad_id|>".to_owned(), true),
                (128_005, "<|reserved_special_token_2|>".to_owned(), true),
                (128_008, "<|eom_id|>".to_owned(), true),
                (128_010, "<|python_tag|>".to_owned(), true),
            ];
            overrides.extend((128_011..128_256u32).map(|id| {
                (
                    id,
                    format!("<|reserved_special_token_{}|>", id - 128_008),
                    true,
                )
            }));
            Spec {
                pre: "llama-bpe",
                regex: r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
                normalizer: None,
                ignore_merges: true,
                overrides,
                last_token: None,
                bos: Some(128_000),
                eos: vec![128_001, 128_008, 128_009],
                pad: 128_004,
                eos_token: "<|eot_id|>",
                tokenizer_class: "PreTrainedTokenizerFast",
                add_bos: true,
            }
        }
    }
}

/// GGUF token types (llama.cpp's `llama_token_type`).
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;
const UNUSED: i64 = 5;

/// A tokenizer rebuilt from a vocab file.
struct Rebuilt {
    /// `tokenizer.json`.
    json: Value,
    /// Its added tokens as (id, content, special).
    added: Vec<(u32, String, bool)>,
    /// How many ids it defines.
    n_tokens: usize,
    /// The same tokenizer as a `.gguf` header holds it.
    gguf: GgufVocab,
}

/// A tokenizer as GGUF writes it: every token of the vocab file (padding included), the
/// published special tokens in place, their GGUF types, and the merges (byte-level BPE) or
/// the scores (SentencePiece).
struct GgufVocab {
    tokens: Vec<String>,
    types: Vec<i32>,
    merges: Vec<String>,
    /// `None`: byte-level BPE.
    scores: Option<Vec<f32>>,
}

/// `tokenizer.json`'s `added_tokens` for (id, content, special) triples.
fn added_tokens_json(added: &[(u32, String, bool)]) -> Vec<Value> {
    added
        .iter()
        .map(|(id, content, sp)| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": sp})
        })
        .collect()
}

/// The tokenizer of `family` rebuilt from its vocab file.
fn tokenizer(family: Family, vocab: &Path) -> Result<Rebuilt, FamilyError> {
    if family == Family::Mistral {
        return spm_tokenizer(vocab);
    }
    let path = vocab.display().to_string();
    let bad = |why: String| FamilyError::Vocab {
        path: path.clone(),
        why,
    };
    let meta = gguf::read_metadata(vocab)?;
    let s = spec(family);
    let model = meta.get("tokenizer.ggml.model").and_then(MetaValue::as_str);
    let pre = meta.get("tokenizer.ggml.pre").and_then(MetaValue::as_str);
    if model != Some("gpt2") || pre != Some(s.pre) {
        return Err(bad(format!(
            "a {family} tokenizer needs a byte-level BPE vocab with pre-tokenizer '{}' \
             (llama.cpp's {}), not model {model:?} / pre {pre:?}",
            s.pre,
            FAMILIES
                .iter()
                .find(|(_, f, _)| *f == family)
                .map(|(_, _, v)| *v)
                .unwrap_or("?"),
        )));
    }
    let strings = |key: &str| -> Result<Vec<String>, FamilyError> {
        meta.get(key)
            .and_then(MetaValue::as_array)
            .ok_or_else(|| bad(format!("no {key}")))?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(format!("{key}: not strings")))
            })
            .collect()
    };
    let mut tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let merges_for_gguf = merges.clone();
    let types: Vec<i64> = meta
        .get("tokenizer.ggml.token_type")
        .and_then(MetaValue::as_array)
        .ok_or_else(|| bad("no tokenizer.ggml.token_type".into()))?
        .iter()
        .map(|v| v.as_i64().unwrap_or(1))
        .collect();
    if types.len() != tokens.len() {
        return Err(bad("token types and tokens differ in number".into()));
    }
    // The `.gguf` keeps every row (llama.cpp pads Qwen's vocabulary to the embedding size).
    let mut gguf_tokens = tokens.clone();
    let mut gguf_types: Vec<i32> = types.iter().map(|t| *t as i32).collect();
    for (id, content, is_special) in &s.overrides {
        if let Some(t) = gguf_tokens.get_mut(*id as usize) {
            *t = content.clone();
            gguf_types[*id as usize] = if *is_special {
                CONTROL as i32
            } else {
                USER_DEFINED as i32
            };
        }
    }
    if let Some(last) = s.last_token {
        tokens.truncate(last as usize + 1);
    }
    let mut special: BTreeMap<u32, (String, bool)> = BTreeMap::new();
    for (id, (t, ty)) in tokens.iter().zip(&types).enumerate() {
        if matches!(*ty, CONTROL | USER_DEFINED | UNUSED) {
            special.insert(id as u32, (t.clone(), true));
        }
    }
    for (id, content, is_special) in &s.overrides {
        if (*id as usize) < tokens.len() {
            tokens[*id as usize] = content.clone();
            special.insert(*id, (content.clone(), *is_special));
        }
    }
    let vocab_map: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .filter(|(id, _)| !special.contains_key(&(*id as u32)))
        .map(|(id, t)| (t.clone(), json!(id)))
        .collect();
    let added: Vec<(u32, String, bool)> = special
        .into_iter()
        .map(|(id, (content, sp))| (id, content, sp))
        .collect();
    let added_json = added_tokens_json(&added);
    let byte_level = |trim: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": trim, "use_regex": false});
    let post_processor = match (s.add_bos, s.bos) {
        (true, Some(bos)) => {
            let name = tokens.get(bos as usize).cloned().unwrap_or_default();
            json!({"type": "TemplateProcessing",
                   "single": [{"SpecialToken": {"id": name, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                   "pair": [{"SpecialToken": {"id": name, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                            {"SpecialToken": {"id": name, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                   "special_tokens": {name.clone(): {"id": name, "ids": [bos], "tokens": [name]}}})
        }
        _ => byte_level(false),
    };
    let json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_json,
        "normalizer": s.normalizer.map(|n| json!({"type": n})),
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": s.regex}, "behavior": "Isolated", "invert": false},
            byte_level(family != Family::Qwen3),
        ]},
        "post_processor": post_processor,
        "decoder": byte_level(family != Family::Qwen3),
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": s.ignore_merges, "vocab": vocab_map, "merges": merges,
        },
    });
    Ok(Rebuilt {
        json,
        added,
        n_tokens: tokens.len(),
        gguf: GgufVocab {
            tokens: gguf_tokens,
            types: gguf_types,
            merges: merges_for_gguf,
            scores: None,
        },
    })
}

/// Mistral's named control tokens (v3 tokenizer), after `<unk> <s> </s>`; `[control_8]` …
/// `[control_768]` follow them.
const MISTRAL_CONTROL: &[&str] = &[
    "[INST]",
    "[/INST]",
    "[TOOL_CALLS]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
];

/// How many control tokens a Mistral v3 vocabulary has between `</s>` and its pieces.
const MISTRAL_CONTROL_COUNT: usize = 768;

/// A Mistral tokenizer from a SentencePiece (BPE) vocab GGUF: Mistral's v3 layout — `<unk>
/// <s> </s>`, the 768 control tokens (none is in any vocab file of the package: their names
/// and order are Mistral's published v3 ones), then the file's byte tokens and pieces,
/// shifted by 768 — as a Hugging Face `tokenizer.json` the way `transformers` converts a
/// SentencePiece model (merges from the pieces' scores, byte fallback, `▁` for spaces).
/// The pieces are Llama 2's (the only SentencePiece vocabulary in the package), not
/// Mistral's own: what is Mistral's here is the layout, the control tokens and the template.
fn spm_tokenizer(vocab: &Path) -> Result<Rebuilt, FamilyError> {
    let path = vocab.display().to_string();
    let bad = |why: String| FamilyError::Vocab {
        path: path.clone(),
        why,
    };
    let meta = gguf::read_metadata(vocab)?;
    let model = meta.get("tokenizer.ggml.model").and_then(MetaValue::as_str);
    if model != Some("llama") {
        return Err(bad(format!(
            "a mistral tokenizer needs a SentencePiece vocab (llama.cpp's \
             ggml-vocab-llama-spm.gguf), not model {model:?}"
        )));
    }
    let array = |key: &str| -> Result<&[MetaValue], FamilyError> {
        meta.get(key)
            .and_then(MetaValue::as_array)
            .ok_or_else(|| bad(format!("no {key}")))
    };
    let file_tokens: Vec<String> = array("tokenizer.ggml.tokens")?
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(|| bad("tokenizer.ggml.tokens: not strings".into()))?;
    let file_scores: Vec<f32> = array("tokenizer.ggml.scores")?
        .iter()
        .map(|v| v.as_f64().unwrap_or(0.0) as f32)
        .collect();
    let file_types: Vec<i32> = array("tokenizer.ggml.token_type")?
        .iter()
        .map(|v| v.as_i64().unwrap_or(1) as i32)
        .collect();
    if file_tokens.len() < 3
        || file_scores.len() != file_tokens.len()
        || file_types.len() != file_tokens.len()
        || file_tokens[..3] != ["<unk>", "<s>", "</s>"]
    {
        return Err(bad(
            "expected <unk> <s> </s> first and one score and type per token".into(),
        ));
    }
    let controls: Vec<String> = MISTRAL_CONTROL
        .iter()
        .map(|t| (*t).to_owned())
        .chain(
            (MISTRAL_CONTROL.len() + 1..=MISTRAL_CONTROL_COUNT).map(|i| format!("[control_{i}]")),
        )
        .collect();
    let n_special = 3 + controls.len();
    let mut tokens: Vec<String> = file_tokens[..3].to_vec();
    tokens.extend(controls);
    tokens.extend_from_slice(&file_tokens[3..]);
    let mut scores = vec![0.0f32; n_special];
    scores.extend_from_slice(&file_scores[3..]);
    let mut types: Vec<i32> = file_types[..3].to_vec();
    types.extend(std::iter::repeat_n(CONTROL as i32, MISTRAL_CONTROL_COUNT));
    types.extend_from_slice(&file_types[3..]);

    let ids: std::collections::HashMap<&str, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i as u32))
        .collect();
    // `transformers`' SentencePiece extraction: every split of a piece into two pieces is a
    // merge, ranked by the merged piece's score (highest first; ties keep id order, and a
    // piece's own splits go by the ids of their halves).
    const NORMAL: i32 = 1;
    let mut merges: Vec<(f32, [String; 2])> = Vec::new();
    for (id, piece) in tokens.iter().enumerate() {
        if types[id] != NORMAL {
            continue;
        }
        let mut local: Vec<(u32, u32, [String; 2])> = piece
            .char_indices()
            .skip(1)
            .filter_map(|(i, _)| {
                let (l, r) = piece.split_at(i);
                Some((*ids.get(l)?, *ids.get(r)?, [l.to_owned(), r.to_owned()]))
            })
            .collect();
        local.sort_by_key(|(l, r, _)| (*l, *r));
        merges.extend(local.into_iter().map(|(_, _, m)| (scores[id], m)));
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0));
    let vocab_map: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.clone(), json!(id)))
        .collect();
    let added: Vec<(u32, String, bool)> = tokens[..n_special]
        .iter()
        .enumerate()
        .map(|(id, t)| (id as u32, t.clone(), true))
        .collect();
    let added_json = added_tokens_json(&added);
    let json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_json,
        // SentencePiece's own behaviour (llama.cpp's vectors): spaces as `▁` and one `▁`
        // before every text segment, also after a control token. (`Metaspace` with
        // `prepend_scheme: first` differs on text that starts with a space.)
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        ]},
        "pre_tokenizer": null,
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
            "ignore_merges": false, "vocab": vocab_map,
            "merges": merges.into_iter().map(|(_, m)| m).collect::<Vec<_>>(),
        },
    });
    Ok(Rebuilt {
        json,
        added,
        n_tokens: tokens.len(),
        gguf: GgufVocab {
            tokens,
            types,
            merges: Vec::new(),
            scores: Some(scores),
        },
    })
}

fn tokenizer_config(family: Family, added: &[(u32, String, bool)], template: &str) -> Value {
    let s = spec(family);
    let decoder: BTreeMap<String, Value> = added
        .iter()
        .map(|(id, content, sp)| {
            (
                id.to_string(),
                json!({"content": content, "lstrip": false, "normalized": false,
                       "rstrip": false, "single_word": false, "special": sp}),
            )
        })
        .collect();
    let name = |id: u32| {
        added
            .iter()
            .find(|(i, _, _)| *i == id)
            .map(|(_, c, _)| json!(c))
            .unwrap_or(Value::Null)
    };
    json!({
        "added_tokens_decoder": decoder,
        "bos_token": s.bos.map(name).unwrap_or(Value::Null),
        "eos_token": s.eos_token,
        "pad_token": name(s.pad),
        "unk_token": null,
        "add_prefix_space": false,
        "clean_up_tokenization_spaces": false,
        "model_max_length": 131072,
        "tokenizer_class": s.tokenizer_class,
        "chat_template": template,
    })
}

/// A Hugging Face tensor name as llama.cpp names it.
fn gguf_name(hf: &str) -> String {
    if hf == "model.embed_tokens.weight" {
        return "token_embd.weight".into();
    }
    if hf == "model.norm.weight" {
        return "output_norm.weight".into();
    }
    let Some(rest) = hf.strip_prefix("model.layers.") else {
        return hf.to_owned();
    };
    let (layer, part) = rest.split_once('.').unwrap_or((rest, ""));
    let part = match part {
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "self_attn.q_norm.weight" => "attn_q_norm.weight",
        "self_attn.k_norm.weight" => "attn_k_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        other => other,
    };
    format!("blk.{layer}.{part}")
}

/// The `.gguf` header: the architecture's shape as llama.cpp's qwen3 loader reads it, and the
/// tokenizer and chat template.
fn gguf_metadata(
    t: &TinySpec,
    s: &Spec,
    vocab: GgufVocab,
    template: &str,
    family: Family,
) -> Vec<(String, gguf::WriteValue)> {
    use gguf::WriteValue::{Bool, F32s, I32s, Str, Strs, F32, U32};
    let a = "qwen3";
    let mut m = vec![
        ("general.architecture".to_owned(), Str(a.into())),
        (
            "general.name".to_owned(),
            Str(format!("verity-tiny-{family}")),
        ),
        ("general.file_type".to_owned(), U32(0)),
        (format!("{a}.block_count"), U32(t.layers as u32)),
        (format!("{a}.context_length"), U32(t.max_positions as u32)),
        (format!("{a}.embedding_length"), U32(t.hidden as u32)),
        (
            format!("{a}.feed_forward_length"),
            U32(t.intermediate as u32),
        ),
        (format!("{a}.attention.head_count"), U32(t.heads as u32)),
        (
            format!("{a}.attention.head_count_kv"),
            U32(t.kv_heads as u32),
        ),
        (format!("{a}.attention.key_length"), U32(t.head_dim as u32)),
        (
            format!("{a}.attention.value_length"),
            U32(t.head_dim as u32),
        ),
        (format!("{a}.rope.freq_base"), F32(1_000_000.0)),
        (format!("{a}.attention.layer_norm_rms_epsilon"), F32(1e-6)),
        (
            "tokenizer.ggml.model".to_owned(),
            Str(if vocab.scores.is_some() {
                "llama"
            } else {
                "gpt2"
            }
            .into()),
        ),
        ("tokenizer.ggml.pre".to_owned(), Str(s.pre.into())),
        ("tokenizer.ggml.tokens".to_owned(), Strs(vocab.tokens)),
        ("tokenizer.ggml.token_type".to_owned(), I32s(vocab.types)),
        ("tokenizer.ggml.eos_token_id".to_owned(), U32(s.eos[0])),
        ("tokenizer.ggml.padding_token_id".to_owned(), U32(s.pad)),
        ("tokenizer.chat_template".to_owned(), Str(template.into())),
    ];
    if let Some(bos) = s.bos {
        m.push(("tokenizer.ggml.bos_token_id".to_owned(), U32(bos)));
    }
    match vocab.scores {
        // SentencePiece: scores instead of merges; `<unk>` is id 0.
        Some(scores) => m.extend([
            ("tokenizer.ggml.scores".to_owned(), F32s(scores)),
            ("tokenizer.ggml.unknown_token_id".to_owned(), U32(0)),
            ("tokenizer.ggml.add_bos_token".to_owned(), Bool(s.add_bos)),
        ]),
        None => m.push(("tokenizer.ggml.merges".to_owned(), Strs(vocab.merges))),
    }
    m
}

/// The dimensions of a family checkpoint's (random) weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// Two layers of width 64: loads in a blink, for tests.
    #[default]
    Tiny,
    /// Qwen3-0.6B's published dimensions (28 layers, width 1024, 16/8 heads of 128, MLP
    /// 3072, tied embeddings): real-sized decoding for benchmarks (~2.4 GB in f32).
    Qwen3_0_6b,
}

impl FromStr for Shape {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tiny" => Ok(Self::Tiny),
            "qwen3-0.6b" | "0.6b" => Ok(Self::Qwen3_0_6b),
            other => Err(format!(
                "unknown shape '{other}'; the shapes are: tiny, qwen3-0.6b"
            )),
        }
    }
}

impl Shape {
    fn spec(self, vocab: usize) -> TinySpec {
        match self {
            Self::Tiny => TinySpec {
                vocab,
                ..TinySpec::default()
            },
            Self::Qwen3_0_6b => TinySpec {
                hidden: 1024,
                intermediate: 3072,
                layers: 28,
                heads: 16,
                kv_heads: 8,
                head_dim: 128,
                vocab,
                max_positions: 40_960,
                ..TinySpec::default()
            },
        }
    }
}

/// Bumped whenever a family checkpoint's bytes change.
const FAMILY_GENERATOR_VERSION: &str = "verity-tiny-family/2";

/// Writes a tiny checkpoint of `family` into `dir`: the tokenizer from `vocab` (a
/// llama.cpp vocab GGUF), the chat template from `template`. Returns the files written.
pub fn generate(
    dir: &Path,
    family: Family,
    vocab: &Path,
    template: &Path,
    shape: Shape,
) -> Result<Vec<PathBuf>, FamilyError> {
    let io_err = |p: &Path| {
        let path = p.display().to_string();
        move |source| FamilyError::Io { path, source }
    };
    let template_text = std::fs::read_to_string(template).map_err(io_err(template))?;
    let Rebuilt {
        json: tok,
        added,
        n_tokens,
        gguf,
    } = tokenizer(family, vocab)?;
    let s = spec(family);
    // Qwen's embedding table is wider than its tokenizer, as in the published model.
    let tiny_spec = shape.spec(match family {
        Family::Qwen3 => 151_936,
        Family::Llama3 | Family::Hermes | Family::Mistral => n_tokens,
    });
    let mut config = tiny::config(&tiny_spec);
    config["bos_token_id"] = s.bos.map(Value::from).unwrap_or(Value::Null);
    config["eos_token_id"] = json!(s.eos[0]);
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("config.json", tiny::pretty(&config)),
        (
            "generation_config.json",
            tiny::pretty(
                &json!({"eos_token_id": s.eos, "pad_token_id": s.pad, "bos_token_id": s.bos}),
            ),
        ),
        ("tokenizer.json", tiny::pretty(&tok)),
        (
            "tokenizer_config.json",
            tiny::pretty(&tokenizer_config(family, &added, &template_text)),
        ),
        (
            "model.safetensors",
            tiny::weights(&tiny_spec).map_err(io_err(dir))?,
        ),
        (
            "GENERATOR",
            format!("{FAMILY_GENERATOR_VERSION} {family}\n").into_bytes(),
        ),
    ];
    let mut written = Vec::new();
    // The same checkpoint as one `.gguf` (f32), for GGUF loaders and llama.cpp.
    let gguf_path = dir.join(format!("verity-tiny-{family}.gguf"));
    let metadata = gguf_metadata(&tiny_spec, &s, gguf, &template_text, family);
    let tensors: Vec<(String, Vec<u64>, Vec<u8>)> = tiny::tensors(&tiny_spec)
        .into_iter()
        .map(|(name, shape, bytes)| {
            // GGUF lists dimensions innermost first.
            (
                gguf_name(&name),
                shape.iter().rev().map(|d| *d as u64).collect(),
                bytes,
            )
        })
        .collect();
    gguf::write_f32(&gguf_path, &metadata, &tensors).map_err(io_err(&gguf_path))?;
    written.push(gguf_path);
    for (name, bytes) in files {
        let path = dir.join(name);
        written.push(tiny::write_atomic(&path, &bytes).map_err(io_err(&path))?);
    }
    Ok(written)
}
