//! Model backends: one trait over the embedded mistral.rs engine and OpenAI-compatible
//! servers, returning not just text but what RL needs — the engine's own token ids and
//! logprobs, prompt ids, finish reason, usage — and saying what it could not get.

pub mod callformat;
mod embedded;
pub mod family;
pub mod gguf;
pub mod grammar;
mod grammar_mask;
mod hub;
mod openai;
pub mod sampler;
mod scripted;
pub mod teacher;
pub mod template;
pub mod tiny;
mod toolcall;

use std::{fmt, sync::Arc};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use embedded::{
    data_dir, tiny_model_dir, ComputeDtype, EmbeddedModel, LoadOptions, ModelSource,
    MISTRALRS_VERSION,
};
pub use openai::{OpenAiConfig, OpenAiModel};
pub use scripted::ScriptedModel;
pub use teacher::{PlanStep, TeacherModel};
pub use toolcall::{check_calls, ParseFailure};

/// Who speaks in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The person (or task).
    User,
    /// The model.
    Assistant,
    /// A tool's result.
    Tool,
}

impl Role {
    /// The role's name in chat templates and the OpenAI API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// A tool call the model made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Call id (from the engine, or assigned by the loop).
    pub id: String,
    /// Tool name as the model wrote it.
    pub name: String,
    /// Arguments (a JSON object).
    pub arguments: Value,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// Text content.
    pub content: String,
    /// Tool calls (assistant messages).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The call this message answers (tool messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The tool's name (tool messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    /// A message with text only.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    /// A tool result answering `call`.
    pub fn tool_result(call: &ToolCall, content: impl Into<String>) -> Self {
        Self {
            role: Role::Tool,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: Some(call.id.clone()),
            name: Some(call.name.clone()),
        }
    }
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDef {
    /// Name the model must use.
    pub name: String,
    /// Description written for the model.
    pub description: String,
    /// JSON schema of the arguments.
    pub parameters: Value,
}

/// Whether (and which) tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    #[default]
    Auto,
    /// No tool calls.
    None,
    /// At least one tool call.
    Required,
    /// A call of this tool.
    Named(String),
}

/// An empty `--tool-choice`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("empty tool choice; expected auto, none, required or a tool name")]
pub struct EmptyToolChoice;

impl std::str::FromStr for ToolChoice {
    type Err = EmptyToolChoice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            "" => return Err(EmptyToolChoice),
            name => ToolChoice::Named(name.to_owned()),
        })
    }
}

/// Sampling parameters. `None` leaves the engine's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Temperature; 0 or `None` with `greedy` means argmax.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Top-k sampling.
    pub top_k: Option<usize>,
    /// Most tokens this one model call may generate.
    pub max_tokens: usize,
    /// Seed, for backends that accept one per request.
    pub seed: Option<u64>,
    /// Argmax decoding (overrides the other knobs).
    pub greedy: bool,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: None,
            top_p: None,
            top_k: None,
            max_tokens: 1024,
            seed: None,
            greedy: true,
        }
    }
}

/// One model call.
#[derive(Debug, Clone)]
pub struct ModelRequest {
    /// The conversation so far (shared: the loop appends to it after the call).
    pub messages: Arc<Vec<Message>>,
    /// Tools offered.
    pub tools: Arc<Vec<ToolDef>>,
    /// Must the model call a tool?
    pub tool_choice: ToolChoice,
    /// Constrain decoding so every tool call is a valid call of an offered tool.
    pub strict: bool,
    /// In strict mode with a required call: exactly this many calls (default 1).
    pub calls_per_turn: usize,
    /// Sampling.
    pub sampling: Sampling,
    /// A Lark grammar the whole reply must follow (overrides `strict`; embedded engine
    /// only). For format-constrained generation and for testing the parse-failure path.
    pub grammar: Option<String>,
    /// The previous model call of this conversation, when its ids are known: a backend that
    /// builds prompts from ids continues it token for token (its prompt, the ids it
    /// generated, then the new messages rendered by the template) instead of re-rendering
    /// the history, which a template may render differently from what was generated.
    pub previous: Option<Arc<PreviousTurn>>,
}

/// One model call's ids, for the next call of the same conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousTurn {
    /// How many messages its request had; `messages[that]` of the next request is the
    /// assistant message it produced.
    pub messages: usize,
    /// Its prompt ids.
    pub prompt_ids: Vec<u32>,
    /// The ids it generated (stop token included).
    pub token_ids: Vec<u32>,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// End of turn (EOS or a stop string).
    Stop,
    /// It called tools.
    ToolCalls,
    /// It hit `max_tokens` (the response is truncated).
    Length,
    /// The call was cancelled.
    Cancelled,
    /// Something the engine reported that we do not know.
    Other(String),
}

impl Finish {
    pub(crate) fn from_engine(s: Option<&str>) -> Self {
        match s {
            Some("stop") | Some("eos") => Finish::Stop,
            Some("tool_calls") | Some("function_call") => Finish::ToolCalls,
            Some("length") => Finish::Length,
            Some("canceled") | Some("cancelled") => Finish::Cancelled,
            Some(other) => Finish::Other(other.to_owned()),
            None => Finish::Other("none".into()),
        }
    }
}

/// Token counts.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
}

/// Which prompt the model saw, when Verity built it: from a real chat template, or by
/// continuing the previous call's ids where the engine renders the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PromptView {
    /// The template's rendering of the conversation (a first call).
    Rendered,
    /// The previous call's prompt and generated ids, token for token, then what followed
    /// the reply as the template renders it; rendering the whole conversation gives the
    /// same ids.
    Continued,
    /// Continued, and the template would render the conversation differently (Qwen3 drops
    /// a `<think>` block once a later user turn follows it; a reply's ids need not be its
    /// text's canonical tokenization): the model saw these ids, not
    /// `apply_chat_template`'s — train on these.
    ContinuedRerenderDiffers,
}

/// What one model call produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelOutput {
    /// Visible text (tool-call markup removed by the parser).
    pub text: String,
    /// The reply as the model wrote it — its call markup, well-formed or not, in place —
    /// when the backend decoded it from the generated ids. A reply whose calls failed goes
    /// back into the conversation as this: the history then holds what was generated,
    /// and a template re-renders it to the ids that were sampled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// Reasoning text (`<think>`), when the engine separates it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// Parsed tool calls, in order.
    pub tool_calls: Vec<ToolCall>,
    /// Tool calls that were attempted but could not be parsed or do not fit.
    pub parse_failures: Vec<ParseFailure>,
    /// How the prompt was built (embedded engine with a real chat template).
    pub prompt_view: Option<PromptView>,
    /// Prompt token ids as the engine saw them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_ids: Option<Vec<u32>>,
    /// Generated token ids (the engine's, not re-tokenised).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_ids: Option<Vec<u32>>,
    /// Logprob of each generated token: full-vocabulary `log_softmax(z / T)` for the
    /// embedded engine, the server's numbers for HTTP backends (`ModelInfo::logprobs_mode`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<f32>>,
    /// Logprob of each generated token under the distribution it was actually drawn from
    /// (after temperature, top-k, top-p and the grammar mask; 0 under argmax), when the
    /// backend knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampling_logprobs: Option<Vec<f32>>,
    /// Why generation stopped.
    pub finish: Option<Finish>,
    /// Token counts.
    pub usage: Usage,
    /// What this backend could not provide for this call (e.g. `token_ids`), and why.
    pub missing: Vec<String>,
}

/// Identity of the model behind a backend (recorded in trajectories).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelInfo {
    /// `mistral.rs` or `openai-http`.
    pub engine: String,
    /// Engine version.
    pub engine_version: String,
    /// What the user asked for (HF id, path, or server model name).
    pub model: String,
    /// Device in words (`cpu`, `cuda:0`, or the server URL).
    pub device: String,
    /// Context window, when known.
    pub context_window: Option<usize>,
    /// Weight dtype or quantisation, when known.
    pub dtype: Option<String>,
    /// Local files of the model (folder or .gguf), when it has them: what trajectory
    /// records digest to identify the exact weights, tokenizer and chat template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<std::path::PathBuf>,
    /// What the backend's logprobs are (trajectory records say it next to them).
    pub logprobs_mode: String,
    /// HTTP backends: fields added to every request body (recorded with each run).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub request_extra: serde_json::Map<String, serde_json::Value>,
}

/// A streamed piece of the reply.
pub type TokenSink = Arc<dyn Fn(&str) + Send + Sync>;

/// What went wrong talking to the model (not what the model said).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The model could not be loaded.
    #[error("loading the model: {0}")]
    Load(String),
    /// The request was refused by the engine (bad parameters, prompt too long, ...).
    #[error("the engine refused the request: {0}")]
    Request(String),
    /// The engine failed while generating.
    #[error("the engine failed: {0}")]
    Engine(String),
    /// HTTP transport problem (after retries).
    #[error("{0}")]
    Http(String),
    /// The server's reply did not follow the protocol.
    #[error("malformed reply from the server: {0}")]
    Protocol(String),
    /// Cancelled by the caller.
    #[error("cancelled")]
    Cancelled,
}

/// A model the agent can talk to.
pub trait ModelBackend: Send + Sync + fmt::Debug {
    /// Who this is.
    fn info(&self) -> &ModelInfo;

    /// Generates one reply. Text is streamed to `on_token` as it arrives.
    fn generate<'a>(
        &'a self,
        request: &'a ModelRequest,
        on_token: TokenSink,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ModelOutput, ModelError>>;

    /// Plain text → token ids with the model's own tokenizer (no special tokens), when
    /// the backend can: lets records tell tool output from template tokens.
    fn tokenize_text<'a>(&'a self, _text: &'a str) -> BoxFuture<'a, Option<Vec<u32>>> {
        Box::pin(async { None })
    }
}
