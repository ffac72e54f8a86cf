//! The project's own test model: a deterministic generator for a tiny Qwen3-architecture
//! checkpoint (config, seeded random f32 weights, byte-level tokenizer with the chat
//! special tokens, a chat template with tool support).
//!
//! It speaks nonsense — the weights are random — but it takes the real loading, templating,
//! sampling, logprob and constrained-decoding path of mistral.rs, so tests can assert on
//! structure without downloading weights. Same seed, same bytes: the files are identical
//! on every machine, which makes their digests usable in trajectory records.

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
};

use serde_json::{json, Value};

/// Shape of the generated model.
#[derive(Debug, Clone, Copy)]
pub struct TinySpec {
    /// Embedding width.
    pub hidden: usize,
    /// MLP width.
    pub intermediate: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Rows of the embedding table (≥ the tokenizer's vocabulary).
    pub vocab: usize,
    /// Context window; mistral.rs sizes the rope table from it.
    pub max_positions: usize,
    /// Seed of the weights.
    pub seed: u64,
    /// List tools in the system prompt as one line each (`calculator(expression,
    /// precision)`) instead of their JSON schemas: ~40 tokens instead of ~1,900 on this
    /// byte-level tokenizer. For models trained from scratch (`verity train`), which
    /// cannot read a schema anyway and train ~20× faster on short prompts.
    pub compact_tools: bool,
}

impl Default for TinySpec {
    fn default() -> Self {
        Self {
            hidden: 64,
            intermediate: 128,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            head_dim: 16,
            vocab: 320,
            max_positions: 8192,
            seed: 0x7665_7269_7479, // "verity"
            compact_tools: false,
        }
    }
}

/// Special tokens after the 256 byte tokens, in id order. `special: false` tokens stay in
/// decoded text (the tool-call parser needs to see `<tool_call>`), as in Qwen's tokenizer.
const SPECIAL_TOKENS: &[(&str, bool)] = &[
    ("<|endoftext|>", true),
    ("<|im_start|>", true),
    ("<|im_end|>", true),
    ("<tool_call>", false),
    ("</tool_call>", false),
    ("<think>", false),
    ("</think>", false),
    ("<tool_response>", false),
    ("</tool_response>", false),
];

/// Id of `<|im_end|>`, the end-of-turn token.
pub const IM_END_ID: u32 = 258;

/// The chat template: Qwen3's tool format (tools listed in the system turn as JSON, calls
/// as `<tool_call>{"name":…,"arguments":…}</tool_call>`, results as `<tool_response>`).
/// Past calls are rendered exactly as strict mode generates them (compact JSON, several
/// calls as one array in one block), so a recorded run's prompts continue each other
/// token for token and trajectories get a flat token view.
pub const CHAT_TEMPLATE: &str = r#"{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}

{% endif %}# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' %}<|im_start|>assistant
{{ message.content }}
{%- if message.tool_calls %}<tool_call>{% if message.tool_calls | length > 1 %}[{% endif %}{% for tc in message.tool_calls %}{% if not loop.first %},{% endif %}{"name":"{{ tc.function.name }}","arguments":{{ tc.function.arguments }}}{% endfor %}{% if message.tool_calls | length > 1 %}]{% endif %}</tool_call>{% endif %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"#;

/// [`CHAT_TEMPLATE`] with each tool as one line, `name(arg, arg)`: the system prompt of
/// [`TinySpec::compact_tools`] models. Calls and results are written as in the full one.
pub fn compact_template() -> String {
    let full = CHAT_TEMPLATE;
    let start = full.find("# Tools").unwrap_or(0);
    let end = full.find("</tool_call><|im_end|>").unwrap_or(start);
    format!(
        "{}{}{}",
        &full[..start],
        "# Tools\n{% for tool in tools %}{{ tool.function.name }}({{ \
         tool.function.parameters.properties | list | join(\", \") }})\n{% endfor %}Call: \
         <tool_call>{\"name\": <name>, \"arguments\": {…}}",
        &full[end..]
    )
}

/// Writes the model into `dir` (created if needed). Returns the files written.
pub fn generate(dir: &Path, spec: &TinySpec) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let files = [
        ("config.json", pretty(&config(spec))),
        ("generation_config.json", pretty(&generation_config())),
        ("tokenizer.json", pretty(&tokenizer(spec))),
        ("tokenizer_config.json", pretty(&tokenizer_config(spec))),
    ];
    let mut written = Vec::new();
    for (name, bytes) in files {
        written.push(write_atomic(&dir.join(name), &bytes)?);
    }
    written.push(write_atomic(
        &dir.join("model.safetensors"),
        &weights(spec)?,
    )?);
    // Last: a model is only "current" once every file is in place.
    written.push(write_atomic(
        &dir.join("GENERATOR"),
        format!("{GENERATOR_VERSION}\n").as_bytes(),
    )?);
    Ok(written)
}

/// Bumped whenever the generator's output changes (weights, tokenizer, template).
const GENERATOR_VERSION: &str = "verity-tiny/2";

/// Whether `dir` holds a complete model written by *this* generator (an older one, e.g.
/// after an upgrade, is regenerated).
pub fn is_current(dir: &Path) -> bool {
    is_complete(dir)
        && std::fs::read_to_string(dir.join("GENERATOR"))
            .is_ok_and(|v| v.trim() == GENERATOR_VERSION)
}

/// Whether `dir` already holds a complete generated model.
pub fn is_complete(dir: &Path) -> bool {
    [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors",
    ]
    .iter()
    .all(|f| dir.join(f).is_file())
}

pub(crate) fn pretty(v: &Value) -> Vec<u8> {
    // Serialising a `Value` cannot fail.
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(path.to_path_buf())
}

pub(crate) fn config(s: &TinySpec) -> Value {
    json!({
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "vocab_size": s.vocab,
        "hidden_size": s.hidden,
        "intermediate_size": s.intermediate,
        "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads,
        "num_key_value_heads": s.kv_heads,
        "head_dim": s.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": s.max_positions,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000.0,
        "tie_word_embeddings": true,
        "attention_bias": false,
        "attention_dropout": 0.0,
        "use_sliding_window": false,
        "sliding_window": null,
        "max_window_layers": s.layers,
        "bos_token_id": 256,
        "eos_token_id": IM_END_ID,
        "torch_dtype": "float32",
    })
}

fn generation_config() -> Value {
    json!({ "eos_token_id": [IM_END_ID, 256], "pad_token_id": 256 })
}

/// GPT-2's byte ↔ printable-character map used by byte-level BPE.
fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        table[usize::from(b)] = if printable {
            char::from(b)
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('\u{FFFD}')
        };
    }
    table
}

fn special_tokens(spec: &TinySpec) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = SPECIAL_TOKENS
        .iter()
        .map(|(t, s)| ((*t).to_owned(), *s))
        .collect();
    // Every embedding row gets a token, so nothing the model samples is undecodable.
    let mut i = 0;
    while 256 + out.len() < spec.vocab {
        out.push((format!("<|reserved_{i}|>"), true));
        i += 1;
    }
    out
}

fn tokenizer(spec: &TinySpec) -> Value {
    let mut vocab = serde_json::Map::new();
    for (b, c) in byte_to_char().iter().enumerate() {
        vocab.insert(c.to_string(), json!(b));
    }
    let specials = special_tokens(spec);
    let added: Vec<Value> = specials
        .iter()
        .enumerate()
        .map(|(i, (content, special))| {
            vocab.insert(content.clone(), json!(256 + i));
            json!({
                "id": 256 + i, "content": content, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": special,
            })
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": false, "vocab": vocab, "merges": [],
        },
    })
}

fn tokenizer_config(spec: &TinySpec) -> Value {
    let decoder: BTreeMap<String, Value> = SPECIAL_TOKENS
        .iter()
        .enumerate()
        .map(|(i, (content, special))| {
            (
                (256 + i).to_string(),
                json!({"content": content, "lstrip": false, "normalized": false,
                       "rstrip": false, "single_word": false, "special": special}),
            )
        })
        .collect();
    json!({
        "add_bos_token": false,
        "add_prefix_space": false,
        "added_tokens_decoder": decoder,
        "bos_token": null,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": null,
        "model_max_length": 8192,
        "tokenizer_class": "Qwen2Tokenizer",
        "chat_template": if spec.compact_tools {
            compact_template()
        } else {
            CHAT_TEMPLATE.to_owned()
        },
    })
}

/// SplitMix64: tiny, seedable, identical everywhere.
struct SplitMix(u64);

impl SplitMix {
    fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // 24 random bits → [-1, 1).
        ((z >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }
}

pub(crate) fn weights(s: &TinySpec) -> io::Result<Vec<u8>> {
    let data = tensors(s);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| io::Error::other(e.to_string()))
        })
        .collect::<io::Result<_>>()?;
    let meta = std::collections::HashMap::from([("format".to_owned(), "pt".to_owned())]);
    safetensors::serialize(views, Some(meta)).map_err(|e| io::Error::other(e.to_string()))
}

/// The weights as (Hugging Face name, shape, little-endian f32 bytes).
pub(crate) fn tensors(s: &TinySpec) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let q = s.heads * s.head_dim;
    let kv = s.kv_heads * s.head_dim;
    let mut tensors: Vec<(String, Vec<usize>, bool)> = vec![(
        "model.embed_tokens.weight".into(),
        vec![s.vocab, s.hidden],
        false,
    )];
    for l in 0..s.layers {
        let p = format!("model.layers.{l}");
        tensors.extend([
            (format!("{p}.input_layernorm.weight"), vec![s.hidden], true),
            (
                format!("{p}.post_attention_layernorm.weight"),
                vec![s.hidden],
                true,
            ),
            (
                format!("{p}.self_attn.q_proj.weight"),
                vec![q, s.hidden],
                false,
            ),
            (
                format!("{p}.self_attn.k_proj.weight"),
                vec![kv, s.hidden],
                false,
            ),
            (
                format!("{p}.self_attn.v_proj.weight"),
                vec![kv, s.hidden],
                false,
            ),
            (
                format!("{p}.self_attn.o_proj.weight"),
                vec![s.hidden, q],
                false,
            ),
            (
                format!("{p}.self_attn.q_norm.weight"),
                vec![s.head_dim],
                true,
            ),
            (
                format!("{p}.self_attn.k_norm.weight"),
                vec![s.head_dim],
                true,
            ),
            (
                format!("{p}.mlp.gate_proj.weight"),
                vec![s.intermediate, s.hidden],
                false,
            ),
            (
                format!("{p}.mlp.up_proj.weight"),
                vec![s.intermediate, s.hidden],
                false,
            ),
            (
                format!("{p}.mlp.down_proj.weight"),
                vec![s.hidden, s.intermediate],
                false,
            ),
        ]);
    }
    tensors.push(("model.norm.weight".into(), vec![s.hidden], true));

    let mut rng = SplitMix(s.seed);
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, is_norm)| {
            let n: usize = shape.iter().product();
            let fan_in = shape.last().copied().unwrap_or(1) as f32;
            let scale = 1.0 / fan_in.sqrt();
            let bytes = (0..n)
                .flat_map(|_| {
                    let v = if is_norm { 1.0 } else { rng.next_f32() * scale };
                    v.to_le_bytes()
                })
                .collect();
            (name, shape, bytes)
        })
        .collect();
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_byte_identical_across_runs() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        generate(a.path(), &TinySpec::default()).unwrap();
        generate(b.path(), &TinySpec::default()).unwrap();
        for f in ["model.safetensors", "tokenizer.json", "config.json"] {
            assert_eq!(
                std::fs::read(a.path().join(f)).unwrap(),
                std::fs::read(b.path().join(f)).unwrap(),
                "{f} differs"
            );
        }
        assert!(is_complete(a.path()) && is_current(a.path()));
        std::fs::write(a.path().join("GENERATOR"), "verity-tiny/1\n").unwrap();
        assert!(!is_current(a.path()), "an older generation is regenerated");
        let size = std::fs::metadata(a.path().join("model.safetensors"))
            .unwrap()
            .len();
        assert!(size < 1_000_000, "{size} bytes");
    }

    #[test]
    fn byte_map_is_a_bijection() {
        let t = byte_to_char();
        let set: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(t[usize::from(b' ')], 'Ġ');
    }
}
