//! The embedded backend: mistral.rs in-process (CPU, or CUDA with the `cuda` feature).
//!
//! Requests go to the engine as raw [`NormalRequest`]s rather than through
//! `RequestBuilder`, for two reasons: assistant tool calls must reach the chat template as
//! `message.tool_calls` (the builder files them under another key), and we attach a logits
//! processor that does the sampling itself ([`super::sampler`]: per-request seeds, natural
//! logprobs) and records the exact token ids the engine fed itself — the chat response
//! carries neither the sampled ids nor usable logprobs, and re-tokenising text is how RL
//! pipelines get silent drift.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use futures::{future::BoxFuture, FutureExt};
use mistralrs::core::{
    Constraint, MessageContent, NormalRequest, Request, RequestMessage, Response, SamplingParams,
    TokenizationRequest,
};
use mistralrs::{CustomLogitsProcessor, Function, Tensor, Tool, ToolType};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{
    grammar, grammar_mask,
    sampler::{self, Rule, Step, TokenSampler},
    tiny, toolcall, Finish, Message, ModelBackend, ModelError, ModelInfo, ModelOutput,
    ModelRequest, PromptView, TokenSink, Usage,
};

/// The mistral.rs version this backend is built against (recorded in trajectories).
pub const MISTRALRS_VERSION: &str = "0.8.1";

/// Where the weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The project's generated test model (created on first use).
    Tiny(PathBuf),
    /// A local directory with `config.json`, safetensors and a tokenizer.
    Dir(PathBuf),
    /// A local `.gguf` file.
    Gguf(PathBuf),
    /// A Hugging Face model id (`owner/name`), fetched into the normal HF cache.
    HuggingFace(String),
}

impl ModelSource {
    /// Reads `--model`: `tiny`, a directory, a `.gguf` file, or `owner/name`.
    pub fn parse(spec: &str) -> Result<Self, ModelError> {
        if spec == "tiny" {
            return Ok(ModelSource::Tiny(tiny_model_dir()));
        }
        let path = Path::new(spec);
        if path.is_file() {
            return if spec.ends_with(".gguf") {
                Ok(ModelSource::Gguf(path.to_path_buf()))
            } else {
                Err(ModelError::Load(format!(
                    "{spec}: a model file must be .gguf; for safetensors give the directory"
                )))
            };
        }
        if path.is_dir() {
            if !path.join("config.json").is_file() {
                return Err(ModelError::Load(format!(
                    "{spec}: no config.json in this directory (expected a Hugging Face-style \
                     model folder: config.json, *.safetensors, tokenizer.json)"
                )));
            }
            return Ok(ModelSource::Dir(path.to_path_buf()));
        }
        let looks_like_path = spec.starts_with('.')
            || spec.starts_with('/')
            || spec.starts_with('~')
            || spec.ends_with(".gguf")
            || spec.matches('/').count() != 1;
        if looks_like_path {
            return Err(ModelError::Load(format!(
                "{spec}: no such file or directory (use `tiny`, a model folder, a .gguf file \
                 or a Hugging Face id like Qwen/Qwen3-0.6B)"
            )));
        }
        Ok(ModelSource::HuggingFace(spec.to_owned()))
    }

    /// Where its `tokenizer.json` is, when it has one we can read (the HF id's copy in
    /// the Hugging Face cache once mistral.rs has fetched it).
    fn tokenizer_json(&self) -> Option<PathBuf> {
        match self {
            ModelSource::Tiny(d) | ModelSource::Dir(d) => Some(d.join("tokenizer.json")),
            ModelSource::Gguf(_) => None,
            ModelSource::HuggingFace(id) => super::hub::cached_file(id, "tokenizer.json"),
        }
    }

    fn describe(&self) -> String {
        match self {
            ModelSource::Tiny(p) => format!("verity-tiny ({})", p.display()),
            ModelSource::Dir(p) | ModelSource::Gguf(p) => p.display().to_string(),
            ModelSource::HuggingFace(id) => id.clone(),
        }
    }
}

/// Where `verity` keeps generated data: `$VERITY_DATA_DIR`, else the XDG data dir.
pub fn data_dir() -> PathBuf {
    std::env::var_os("VERITY_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            dirs::data_dir()
                .unwrap_or_else(std::env::temp_dir)
                .join("verity")
        })
}

/// Where the generated tiny model lives.
pub fn tiny_model_dir() -> PathBuf {
    data_dir().join("models").join("verity-tiny")
}

/// How to load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Stay on the CPU even when built with CUDA.
    pub force_cpu: bool,
    /// Turn off mistral.rs's prefix cache. Needed when several requests run at once:
    /// with it, mistral.rs 0.8.1 can mis-position a cached prompt in a batch ("narrow
    /// invalid args … dim_len" and wrong positions). One request at a time is fine.
    pub no_prefix_cache: bool,
    /// The tool-call layout to read replies in (`--tool-format`); detected from the chat
    /// template when not given.
    pub tool_format: Option<super::callformat::CallFormat>,
    /// The dtype weights and activations are computed in; `None`: f32 on the CPU, the
    /// engine's choice on a GPU. (mistral.rs's own CPU choice is f16, which its CPU kernels
    /// run several times slower than f32: 5.3× the prefill time of a Qwen3-0.6B-sized
    /// model, BENCHMARKS.md; its CPU matmul refuses bf16.)
    pub dtype: Option<ComputeDtype>,
}

/// What the embedded engine computes in (`--dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputeDtype {
    /// The engine's choice: bf16 where the device runs it, else f16, else f32.
    Auto,
    /// 32-bit floats.
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half precision.
    F16,
}

impl std::str::FromStr for ComputeDtype {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "f32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "f16" | "float16" => Ok(Self::F16),
            other => Err(format!(
                "unknown dtype '{other}'; choose auto, f32, bf16 or f16"
            )),
        }
    }
}

impl std::fmt::Display for ComputeDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        })
    }
}

impl ComputeDtype {
    fn engine(self) -> mistralrs::ModelDType {
        match self {
            Self::Auto => mistralrs::ModelDType::Auto,
            Self::F32 => mistralrs::ModelDType::F32,
            Self::Bf16 => mistralrs::ModelDType::BF16,
            Self::F16 => mistralrs::ModelDType::F16,
        }
    }
}

/// A model running inside this process.
pub struct EmbeddedModel {
    model: Arc<mistralrs::Model>,
    info: ModelInfo,
    /// The model's tokenizer, when we can read it ourselves (not for GGUF): streams text
    /// from token ids and maps the final token's text back to its id.
    tokenizer: Option<Arc<tokenizers::Tokenizer>>,
    /// The layout calls are read in (from `--tool-format` or the chat template). With a
    /// tokenizer, Verity reads every call of a reply from its token ids itself; without
    /// one, mistral.rs's parser is used (it keeps only the first `<tool_call>` block).
    call_format: Option<super::callformat::CallFormat>,
    /// The model's chat template rendered as `transformers` renders it: with it, Verity
    /// builds each prompt itself and hands the engine token ids (`CompletionTokens`), so
    /// prompts are the ones the model was trained on and the engine's tool-call parser —
    /// which stops a reply at its first `<tool_call>` block — is not involved.
    template: Option<super::template::ChatTemplate>,
    /// Ids of the tokenizer's special added tokens (end-of-turn and control tokens), read
    /// once at load: every reply is checked against them.
    special_ids: std::collections::HashSet<u32>,
    /// Grammar parsers for that tokenizer (built on first use).
    grammars: std::sync::OnceLock<Option<Arc<mistralrs::llguidance::ParserFactory>>>,
}

impl std::fmt::Debug for EmbeddedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedModel")
            .field("info", &self.info)
            .finish()
    }
}

impl EmbeddedModel {
    /// Loads a model. mistral.rs can panic on inputs it does not expect; loading runs on
    /// its own task so such a panic becomes an error here.
    pub async fn load(source: ModelSource, options: LoadOptions) -> Result<Self, ModelError> {
        let force_cpu = options.force_cpu || !cfg!(feature = "cuda");
        let prefix_cache = !options.no_prefix_cache;
        let dtype = options.dtype.unwrap_or(if force_cpu {
            ComputeDtype::F32
        } else {
            ComputeDtype::Auto
        });
        let described = source.describe();
        // The generated tiny model (by name or as a folder) keeps the engine's rendering.
        let is_tiny = match &source {
            ModelSource::Tiny(_) => true,
            ModelSource::Dir(d) => std::fs::read_to_string(d.join("GENERATOR"))
                .is_ok_and(|g| g.starts_with("verity-tiny/")),
            _ => false,
        };
        let tokenizer_path = source.tokenizer_json();
        let dtype_label = match &source {
            ModelSource::Gguf(_) => "as stored in the .gguf".to_owned(),
            _ => dtype.to_string(),
        };
        let files = match &source {
            ModelSource::Tiny(d) | ModelSource::Dir(d) | ModelSource::Gguf(d) => Some(d.clone()),
            ModelSource::HuggingFace(_) => tokenizer_path
                .as_ref()
                .and_then(|t| t.parent().map(Path::to_path_buf)),
        };
        if let ModelSource::HuggingFace(id) = &source {
            super::hub::check_available(id).await?;
        }
        let build = async move {
            match &source {
                ModelSource::Tiny(dir) => {
                    if !tiny::is_current(dir) {
                        tiny::generate(dir, &tiny::TinySpec::default()).map_err(|e| {
                            anyhow_like(format!("writing the tiny model to {}: {e}", dir.display()))
                        })?;
                    }
                    text_builder(&dir.display().to_string(), force_cpu, prefix_cache, dtype)
                        .build()
                        .await
                }
                ModelSource::Dir(dir) => {
                    text_builder(&dir.display().to_string(), force_cpu, prefix_cache, dtype)
                        .build()
                        .await
                }
                ModelSource::HuggingFace(id) => {
                    text_builder(id, force_cpu, prefix_cache, dtype)
                        .build()
                        .await
                }
                ModelSource::Gguf(file) => {
                    super::gguf::check_architecture(file)
                        .map_err(|e| anyhow_like(e.to_string()))?;
                    let dir = file
                        .parent()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| ".".into());
                    let name = file
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let mut b = mistralrs::GgufModelBuilder::new(dir, vec![name]);
                    if force_cpu {
                        b = b.with_force_cpu();
                    }
                    b.build().await
                }
            }
        };
        let model = tokio::spawn(build)
            .await
            .map_err(|e| {
                ModelError::Load(format!(
                    "{described}: mistral.rs failed while loading ({e})"
                ))
            })?
            .map_err(|e| {
                tracing::debug!(error = ?e, "mistral.rs could not load {described}");
                ModelError::Load(format!(
                    "{described}: {}",
                    without_backtrace(&format!("{e:#}"))
                ))
            })?;
        let context_window = model.max_sequence_length().ok().flatten();
        let info = ModelInfo {
            engine: "mistral.rs".into(),
            engine_version: MISTRALRS_VERSION.into(),
            model: described,
            device: if force_cpu {
                "cpu".into()
            } else {
                "cuda".into()
            },
            context_window,
            dtype: Some(dtype_label),
            files,
            logprobs_mode: sampler::LOGPROBS_MODE.into(),
            request_extra: serde_json::Map::new(),
        };
        let call_format = options.tool_format.or_else(|| {
            let template = chat_template(tokenizer_path.as_deref()?.parent()?)?;
            super::callformat::CallFormat::detect(&template)
        });
        // Our own rendering for real templates. The generated tiny model's template was
        // written for the engine's conventions (arguments as JSON text) and stays there.
        let template = match (&call_format, tokenizer_path.as_deref(), is_tiny) {
            (Some(_), Some(tok), false) => tok.parent().and_then(hf_template),
            _ => None,
        };
        let tokenizer = tokenizer_path
            .and_then(|p| tokenizers::Tokenizer::from_file(p).ok())
            .map(Arc::new);
        let template = template.filter(|_| tokenizer.is_some());
        let special_ids = tokenizer
            .as_ref()
            .map(|t| {
                t.get_added_tokens_decoder()
                    .into_iter()
                    .filter(|(_, a)| a.special)
                    .map(|(id, _)| id)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            model: Arc::new(model),
            info,
            tokenizer,
            call_format,
            template,
            special_ids,
            grammars: std::sync::OnceLock::new(),
        })
    }

    /// Strict mode's grammar for a reply that may call `tools` under `choice`: calls in the
    /// family's own layout when the model has a real chat template, else in the tiny
    /// model's. `None`: nothing to constrain (`none`, or no tool offered).
    pub fn strict_grammar(
        &self,
        tools: &[super::ToolDef],
        choice: &super::ToolChoice,
        calls: usize,
    ) -> Option<String> {
        // With a real template, calls are forced into the family's own layout.
        let layout = match (&self.template, self.call_format) {
            (Some(_), Some(super::callformat::CallFormat::Hermes)) => {
                Some(grammar::FamilyLayout::Hermes)
            }
            (Some(_), Some(super::callformat::CallFormat::Llama3)) => {
                Some(grammar::FamilyLayout::Llama3)
            }
            (Some(_), Some(super::callformat::CallFormat::Mistral)) => {
                self.tokenizer.as_ref().and_then(|t| {
                    let tool_calls = t.token_to_id("[TOOL_CALLS]")?;
                    // What follows the control token in the template's own text, as the
                    // tokenizer writes it: `▁[` (SentencePiece) or `[`.
                    let after = t.encode("[TOOL_CALLS][", false).ok()?;
                    let first = t.id_to_token(*after.get_ids().get(1)?)?;
                    Some(grammar::FamilyLayout::Mistral {
                        tool_calls,
                        space: first.starts_with('▁'),
                    })
                })
            }
            _ => None,
        };
        match layout {
            Some(l) => grammar::family_lark(
                tools,
                choice,
                calls,
                l,
                self.template.as_ref().and_then(|t| t.token("eos_token")),
            ),
            None => grammar::strict_lark(tools, choice, calls),
        }
    }

    /// The token that ends the model's turn (`<|im_end|>`, `<|eot_id|>`, `</s>`), as the
    /// chat template names it, or the tokenizer's own end-of-sequence token.
    pub fn end_of_turn(&self) -> Option<String> {
        if let Some(t) = self.template.as_ref().and_then(|t| t.token("eos_token")) {
            return Some(t.to_owned());
        }
        let tok = self.tokenizer.as_ref()?;
        ["<|im_end|>", "<|eot_id|>", "</s>", "<|endoftext|>"]
            .into_iter()
            .find(|t| tok.token_to_id(t).is_some())
            .map(str::to_owned)
    }

    /// The mistral.rs handle (for benchmarks comparing against raw engine use).
    pub fn engine(&self) -> &mistralrs::Model {
        &self.model
    }

    /// Plain text → ids with the model's tokenizer (no special tokens added).
    async fn tokenize(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.tokenize_request(either::Either::Right(text.to_owned()), None, false)
            .await
    }

    /// Messages → the prompt ids the engine will use for them.
    async fn tokenize_messages(
        &self,
        messages: Vec<EngineMessage>,
        tools: Option<Vec<Tool>>,
    ) -> Result<Vec<u32>, ModelError> {
        // What the engine uses for chat requests: generation prompt and special tokens.
        self.tokenize_request(either::Either::Left(messages), tools, true)
            .await
            .map_err(|e| ModelError::Request(format!("rendering the prompt: {e}")))
    }

    async fn tokenize_request(
        &self,
        text: either::Either<Vec<EngineMessage>, String>,
        tools: Option<Vec<Tool>>,
        chat: bool,
    ) -> Result<Vec<u32>, ModelError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let request = Request::Tokenize(TokenizationRequest {
            text,
            tools,
            add_generation_prompt: chat,
            add_special_tokens: chat,
            enable_thinking: None,
            reasoning_effort: None,
            response: tx,
        });
        self.sender()?
            .send(request)
            .await
            .map_err(|e| ModelError::Engine(e.to_string()))?;
        rx.recv()
            .await
            .ok_or_else(|| ModelError::Engine("the engine dropped a tokenize request".into()))?
            .map_err(|e| ModelError::Engine(format!("{e:#}")))
    }

    fn sender(&self) -> Result<tokio::sync::mpsc::Sender<Request>, ModelError> {
        self.model
            .inner()
            .get_sender(None)
            .map_err(|e| ModelError::Engine(e.to_string()))
    }

    async fn run(
        &self,
        req: &ModelRequest,
        on_token: TokenSink,
        cancel: CancellationToken,
    ) -> Result<ModelOutput, ModelError> {
        let offer_tools = !req.tools.is_empty() && req.tool_choice != super::ToolChoice::None;
        let mut prompt_view = None;
        let (prompt_ids, request_messages, tools) = match (&self.template, &self.tokenizer) {
            // Token in: the prompt rendered as `transformers` renders it, tokenized here.
            (Some(template), Some(tok)) => {
                let (ids, view) = self.template_prompt(template, tok, req, offer_tools)?;
                prompt_view = Some(view);
                (
                    Arc::new(ids.clone()),
                    RequestMessage::CompletionTokens(ids),
                    None,
                )
            }
            _ => {
                let messages = engine_messages(&req.messages);
                let tools: Option<Vec<Tool>> =
                    offer_tools.then(|| req.tools.iter().map(engine_tool).collect());
                // The prompt exactly as the engine will build it (same template, same
                // tokenizer, same flags); the recorder checks it against what the engine
                // then conditions on.
                let ids = self
                    .tokenize_messages(messages.clone(), tools.clone())
                    .await?;
                let previous = req.previous.as_deref();
                match self
                    .engine_continuation(&messages, tools.clone(), previous, &ids)
                    .await
                {
                    // The tools stay on the request: with them the engine ends a reply
                    // that is one whole call (a model trained through it never learned to
                    // write the end of turn after one), as it does for chat requests.
                    Some((continued, view)) => {
                        prompt_view = Some(view);
                        (
                            Arc::new(continued.clone()),
                            RequestMessage::CompletionTokens(continued),
                            tools,
                        )
                    }
                    None => (
                        Arc::new(ids),
                        RequestMessage::Chat {
                            messages,
                            enable_thinking: None,
                            reasoning_effort: None,
                        },
                        tools,
                    ),
                }
            }
        };
        let engine_tools = tools.is_some();
        let seed = req.sampling.seed.unwrap_or_else(sampler::fresh_seed);
        let lark = match &req.grammar {
            Some(g) => Some(g.clone()),
            None if req.strict => {
                self.strict_grammar(&req.tools, &req.tool_choice, req.calls_per_turn)
            }
            None => None,
        };
        // Our own matcher over the same grammar, so the sampler knows each step's mask.
        let mask = lark.as_ref().map(|g| self.grammar_mask(g));
        let recorder = Arc::new(Recorder::new(
            prompt_ids.clone(),
            TokenSampler::new(Rule::from_sampling(&req.sampling), seed),
            mask,
            self.tokenizer.clone(),
            on_token.clone(),
        ));
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let constraint = lark.map(Constraint::Lark).unwrap_or(Constraint::None);
        // Not streamed by the engine: its streaming mode withholds the per-token logprobs
        // of replies that contain tool calls. The text still streams — from the recorder,
        // which decodes each token id as the engine produces it.
        let request = Request::Normal(Box::new(NormalRequest {
            messages: request_messages,
            sampling_params: sampling(req),
            response: tx,
            return_logprobs: false,
            is_streaming: false,
            id: 0,
            constraint,
            suffix: None,
            tools,
            tool_choice: engine_tools.then_some(mistralrs::ToolChoice::Auto),
            logits_processors: Some(vec![recorder.clone() as Arc<dyn CustomLogitsProcessor>]),
            return_raw_logits: false,
            web_search_options: None,
            model_id: None,
            truncate_sequence: false,
        }));
        self.sender()?
            .send(request)
            .await
            .map_err(|e| ModelError::Engine(e.to_string()))?;
        let response = tokio::select! {
            () = cancel.cancelled() => return Err(ModelError::Cancelled),
            r = rx.recv() => r,
        };
        // A chat request answers with a chat response; token prompts with a completion.
        let (text, raw_calls, finish_reason, reasoning, usage) = match response {
            Some(Response::Done(done)) => {
                let usage = done.usage;
                let Some(choice) = done.choices.into_iter().next() else {
                    return Err(ModelError::Engine("the engine returned no choice".into()));
                };
                let calls: Vec<toolcall::RawCall> = choice
                    .message
                    .tool_calls
                    .unwrap_or_default()
                    .into_iter()
                    .map(|tc| toolcall::RawCall {
                        id: tc.id,
                        name: tc.function.name,
                        arguments: tc.function.arguments,
                    })
                    .collect();
                (
                    choice.message.content.unwrap_or_default(),
                    calls,
                    choice.finish_reason,
                    choice.message.reasoning_content.filter(|r| !r.is_empty()),
                    usage,
                )
            }
            Some(Response::CompletionDone(done)) => {
                let usage = done.usage;
                let Some(choice) = done.choices.into_iter().next() else {
                    return Err(ModelError::Engine("the engine returned no choice".into()));
                };
                let reasoning = reasoning_block(&choice.text);
                (
                    choice.text,
                    Vec::new(),
                    choice.finish_reason,
                    reasoning,
                    usage,
                )
            }
            Some(Response::ModelError(msg, _)) | Some(Response::CompletionModelError(msg, _)) => {
                tracing::debug!("engine error: {msg}");
                return Err(ModelError::Engine(first_line(&msg)));
            }
            Some(Response::InternalError(e)) => {
                tracing::debug!("engine error: {e:?}");
                return Err(ModelError::Engine(first_line(&e.to_string())));
            }
            Some(Response::ValidationError(e)) => return Err(ModelError::Request(e.to_string())),
            Some(_) => return Err(ModelError::Engine("unexpected response kind".into())),
            None => return Err(ModelError::Engine("the engine dropped the request".into())),
        };
        let usage = Usage {
            prompt_tokens: usage.prompt_tokens as u64,
            completion_tokens: usage.completion_tokens as u64,
        };
        let mut finish = Finish::from_engine(Some(&finish_reason));
        let (tool_calls, parse_failures) =
            toolcall::check(&req.tools, raw_calls, &text, finish == Finish::Length);

        let mut missing = Vec::new();
        let taken = recorder.take();
        let prompt_ok = prompt_ids.len() as u64 == usage.prompt_tokens
            && taken.prompt_consistent != Some(false);
        let (token_ids, logprobs, sampling_logprobs) =
            match reply_tokens(&taken.context_ids, &taken.steps) {
                Ok(t) => t,
                Err(why) => {
                    missing.push(format!("token_ids: {why}"));
                    (Vec::new(), Vec::new(), Vec::new())
                }
            };
        if let Some(why) = &taken.mask_unknown {
            missing.push(format!("sampling_logprobs: {why}"));
        }
        recorder.finish(token_ids.last().copied());
        let ids_ok = token_ids.len() as u64 == usage.completion_tokens;
        if !ids_ok && missing.is_empty() {
            missing.push(format!(
                "token_ids: sampled {} tokens for {} completion tokens",
                token_ids.len(),
                usage.completion_tokens
            ));
        }
        // Every call of the reply, read from its token ids in the family's layout.
        let mut raw_reply = None;
        let (text, tool_calls, parse_failures) = match (self.call_format, &self.tokenizer, ids_ok) {
            (Some(format), Some(tok), true) => {
                match decode_reply(tok, &self.special_ids, &token_ids) {
                    Some(raw) => {
                        let parsed = format.parse(&raw);
                        let content = after_reasoning(&parsed.content);
                        let (calls, mut failures) = toolcall::check(
                            &req.tools,
                            parsed.calls,
                            &content,
                            finish == Finish::Length,
                        );
                        failures.extend(parsed.failures);
                        if !calls.is_empty() && finish == Finish::Stop {
                            finish = Finish::ToolCalls;
                        }
                        raw_reply = Some(raw);
                        (content, calls, failures)
                    }
                    None => (text, tool_calls, parse_failures),
                }
            }
            _ => (text, tool_calls, parse_failures),
        };
        if !prompt_ok {
            missing.push(format!(
                "prompt_ids: the rendered prompt ({} ids) differs from what the engine used \
                 ({} prompt tokens{})",
                prompt_ids.len(),
                usage.prompt_tokens,
                if taken.prompt_consistent == Some(false) {
                    ", different ids"
                } else {
                    ""
                }
            ));
        }
        Ok(ModelOutput {
            text,
            raw: raw_reply,
            reasoning,
            tool_calls,
            parse_failures,
            prompt_view: prompt_ok.then_some(prompt_view).flatten(),
            prompt_ids: prompt_ok.then(|| prompt_ids.to_vec()),
            token_ids: ids_ok.then_some(token_ids),
            logprobs: ids_ok.then_some(logprobs),
            sampling_logprobs: (ids_ok && taken.mask_unknown.is_none())
                .then_some(sampling_logprobs),
            finish: Some(finish),
            usage,
            missing,
        })
    }
}

impl EmbeddedModel {
    /// The prompt ids for `req` through our own rendering of the chat template (what
    /// `apply_chat_template(..., add_generation_prompt=True, tokenize=True)` gives).
    fn template_prompt(
        &self,
        template: &super::template::ChatTemplate,
        tok: &tokenizers::Tokenizer,
        req: &ModelRequest,
        offer_tools: bool,
    ) -> Result<(Vec<u32>, PromptView), ModelError> {
        let messages: Vec<Value> = req.messages.iter().map(hf_message).collect();
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                serde_json::json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.parameters}})
            })
            .collect();
        let tools = offer_tools.then_some(&tools[..]);
        let render = |messages: &[Value], generation_prompt: bool| {
            template
                .render(messages, tools, generation_prompt)
                .map_err(|e| {
                    ModelError::Request(format!(
                        "rendering the prompt with the model's chat template: {e}. The \
                         template cannot render this conversation as written; Verity reads \
                         calls as {} (`--tool-format`), and a model folder whose template \
                         renders (or the engine's own rendering: a folder without one) works",
                        super::callformat::FORMATS
                            .iter()
                            .map(|(n, _, what)| format!("{n} ({what})"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
        };
        let encode = |text: &str| {
            tok.encode(text, false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| ModelError::Request(format!("tokenizing the prompt: {e}")))
        };
        let text = render(&messages, true)?;
        // Token in, token out: the previous call's prompt and generated ids, then only
        // what came after its reply, as the template renders it — never the history
        // re-rendered (Qwen3 drops an earlier turn's `<think>`, and a reply's ids need
        // not be the canonical tokenization of its text).
        if let Some(prev) = &req.previous {
            let end_of_turn = template.token("eos_token").unwrap_or_default();
            if let Some(tail) = text_after_turn(&messages, prev.messages, &text, end_of_turn, |m| {
                render(m, true).ok()
            }) {
                let mut ids = self.continued(prev, &encode(end_of_turn)?);
                ids.extend(encode(&tail)?);
                // The whole conversation rendered afresh: what a trainer re-rendering it
                // with `apply_chat_template` would get. One tokenization per call.
                let view = if encode(&text)? == ids {
                    PromptView::Continued
                } else {
                    PromptView::ContinuedRerenderDiffers
                };
                return Ok((ids, view));
            }
        }
        Ok((encode(&text)?, PromptView::Rendered))
    }

    /// The previous call's prompt and generated ids: what a later prompt starts with. A
    /// reply that did not end with a special token (cut by the token limit, or ended by a
    /// grammar or the engine's call detection) gets `end_of_turn` (the template's).
    fn continued(&self, prev: &super::PreviousTurn, end_of_turn: &[u32]) -> Vec<u32> {
        let mut ids = prev.prompt_ids.clone();
        ids.extend_from_slice(&prev.token_ids);
        let ended = prev
            .token_ids
            .last()
            .is_some_and(|t| self.special_ids.contains(t));
        if !ended {
            ids.extend_from_slice(end_of_turn);
        }
        ids
    }

    /// Token in, token out where the engine renders the template (the generated tiny
    /// model, whose template follows the engine's conventions): the previous call's prompt
    /// and generated ids, then what the engine's rendering of the conversation (`full`, its
    /// ids) holds after the reply's end of turn. Re-rendering the history would put the
    /// reply's *text* back in place of its ids, and the two differ whenever the text does
    /// not tokenize back to what was sampled — a lone byte that is not UTF-8 (an untrained
    /// model writes them), a call written in a non-canonical split — and the run then has
    /// no flat token view for a trainer. `None` on a first call, without a tokenizer or a
    /// call format to read the reply's calls from its ids (the engine's own call parser
    /// only runs on chat requests), or when the rendering through the reply is not a
    /// prefix of the whole (then the conversation is rendered in full, as before).
    async fn engine_continuation(
        &self,
        messages: &[EngineMessage],
        tools: Option<Vec<Tool>>,
        previous: Option<&super::PreviousTurn>,
        full: &[u32],
    ) -> Option<(Vec<u32>, PromptView)> {
        let prev = previous?;
        self.call_format?;
        self.tokenizer.as_ref()?;
        let reply = messages.get(prev.messages)?;
        match reply.get("role") {
            Some(either::Either::Left(role)) if role == "assistant" => {}
            _ => return None,
        }
        // The conversation through the reply, without a generation prompt: its last
        // special token is the reply's end of turn, and `full` must start with it.
        let through = self
            .tokenize_request(
                either::Either::Left(messages[..=prev.messages].to_vec()),
                tools,
                false,
            )
            .await
            .map_err(|e| tracing::debug!("rendering through the previous reply: {e}"))
            .ok()?;
        let end = through.iter().rposition(|t| self.special_ids.contains(t))?;
        if !full.starts_with(&through) {
            return None;
        }
        let mut ids = self.continued(prev, &through[end..=end]);
        ids.extend_from_slice(&full[end + 1..]);
        let view = if ids == full {
            PromptView::Continued
        } else {
            PromptView::ContinuedRerenderDiffers
        };
        Some((ids, view))
    }

    /// A matcher for `lark`, or why the sampler cannot know the grammar's mask (no
    /// tokenizer of our own — GGUF — or a grammar llguidance refuses here; the engine
    /// still enforces it, but sampling logprobs are then not recorded).
    fn grammar_mask(&self, lark: &str) -> Result<grammar_mask::GrammarMask, String> {
        let factory = self.grammars.get_or_init(|| {
            let t = self.tokenizer.as_ref()?;
            grammar_mask::factory(t)
                .map_err(|e| tracing::warn!("{e}"))
                .ok()
        });
        match factory {
            Some(f) => grammar_mask::GrammarMask::new(f, lark),
            None => Err(
                "the grammar's mask is not known to the sampler (no tokenizer.json \
                         for this model)"
                    .into(),
            ),
        }
    }
}

impl ModelBackend for EmbeddedModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn generate<'a>(
        &'a self,
        request: &'a ModelRequest,
        on_token: TokenSink,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ModelOutput, ModelError>> {
        self.run(request, on_token, cancel).boxed()
    }

    fn tokenize_text<'a>(&'a self, text: &'a str) -> BoxFuture<'a, Option<Vec<u32>>> {
        async move { self.tokenize(text).await.ok() }.boxed()
    }
}

fn anyhow_like(msg: String) -> anyhow::Error {
    anyhow::Error::msg(msg)
}

fn text_builder(
    id: &str,
    force_cpu: bool,
    prefix_cache: bool,
    dtype: ComputeDtype,
) -> mistralrs::TextModelBuilder {
    let b = mistralrs::TextModelBuilder::new(id)
        .with_prefix_cache_n(if prefix_cache { Some(16) } else { None })
        .with_dtype(dtype.engine());
    if force_cpu {
        b.with_force_cpu()
    } else {
        b
    }
}

/// The engine decodes argmax: the logits processor has already left one token standing,
/// chosen by Verity's sampler with the request's temperature, top-k, top-p and seed.
fn sampling(req: &ModelRequest) -> SamplingParams {
    // `deterministic()` resets every field, `max_len` included: set limits after it.
    let mut p = SamplingParams::deterministic();
    p.max_len = Some(req.sampling.max_tokens.max(1));
    p
}

/// The reply's ids and logprobs. The contexts the processor saw give every id but the
/// last (the ids the engine actually continued with); the sampler's steps give each
/// position's choice and logprob, the last id included. They must agree.
type ReplyTokens = (Vec<u32>, Vec<f32>, Vec<f32>);

fn reply_tokens(context_ids: &[u32], steps: &[Option<Step>]) -> Result<ReplyTokens, String> {
    let mut ids = Vec::with_capacity(steps.len());
    let mut logprobs = Vec::with_capacity(steps.len());
    let mut sampling = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let Some(step) = step else {
            return Err(format!("the engine added token {i} without sampling it"));
        };
        if let Some(&seen) = context_ids.get(i) {
            if seen != step.token {
                return Err(format!(
                    "the sampler chose id {} at position {i} but the engine continued with {seen}",
                    step.token
                ));
            }
        }
        ids.push(step.token);
        logprobs.push(step.logprob);
        sampling.push(step.sampling_logprob);
    }
    if context_ids.len() > ids.len() {
        return Err(format!(
            "the engine continued with {} ids but sampled {}",
            context_ids.len(),
            ids.len()
        ));
    }
    Ok((ids, logprobs, sampling))
}

fn engine_tool(t: &super::ToolDef) -> Tool {
    let parameters = match &t.parameters {
        Value::Object(m) => Some(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        _ => None,
    };
    Tool {
        tp: ToolType::Function,
        function: Function {
            description: Some(t.description.clone()),
            name: t.name.clone(),
            parameters,
        },
    }
}

type EngineMessage = indexmap::IndexMap<String, MessageContent>;

fn engine_messages(messages: &[Message]) -> Vec<EngineMessage> {
    messages
        .iter()
        .map(|m| {
            let mut out = EngineMessage::new();
            out.insert("role".into(), either::Either::Left(m.role.as_str().into()));
            out.insert("content".into(), either::Either::Left(m.content.clone()));
            if !m.tool_calls.is_empty() {
                let calls = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        indexmap::IndexMap::from([
                            ("id".to_owned(), Value::String(c.id.clone())),
                            ("type".to_owned(), Value::String("function".into())),
                            (
                                "function".to_owned(),
                                serde_json::json!({
                                    "name": c.name,
                                    // Templates print arguments verbatim, as JSON text.
                                    "arguments": c.arguments.to_string(),
                                }),
                            ),
                        ])
                    })
                    .collect();
                out.insert("tool_calls".into(), either::Either::Right(calls));
            }
            if let Some(id) = &m.tool_call_id {
                out.insert("tool_call_id".into(), either::Either::Left(id.clone()));
            }
            if let Some(name) = &m.name {
                out.insert("name".into(), either::Either::Left(name.clone()));
            }
            out
        })
        .collect()
}

/// Runs at every sampling step: records the ids the engine has continued with, streams
/// them as text, and samples the next token. The context it is handed is the prompt plus
/// everything generated so far, so with the prompt length known up front each step
/// contributes only its new ids: O(1) per token. (The first step of a prompt that hit the
/// prefix cache can see a partial context; it is not compared, the first full context
/// is.) The sampled position is the number of generated ids known at the call.
struct Recorder {
    prompt: Arc<Vec<u32>>,
    state: Mutex<RecState>,
}

struct RecState {
    generated: Vec<u32>,
    prompt_consistent: Option<bool>,
    sampler: TokenSampler,
    /// The grammar's matcher, or why the mask is unknown (`None`: no grammar).
    mask: Option<Result<grammar_mask::GrammarMask, String>>,
    /// The masked logits (reused).
    masked: Vec<f32>,
    stream: TextStream,
}

/// What the recorder saw of one request.
struct Taken {
    /// Whether the engine's context began with the rendered prompt (None: never seen in
    /// full).
    prompt_consistent: Option<bool>,
    /// Generated ids the engine continued with (all but the last).
    context_ids: Vec<u32>,
    /// The sampler's choice at each position.
    steps: Vec<Option<Step>>,
    /// Why the sampling distribution is not known (a grammar the sampler could not follow).
    mask_unknown: Option<String>,
}

impl Recorder {
    fn new(
        prompt: Arc<Vec<u32>>,
        sampler: TokenSampler,
        mask: Option<Result<grammar_mask::GrammarMask, String>>,
        tokenizer: Option<Arc<tokenizers::Tokenizer>>,
        sink: TokenSink,
    ) -> Self {
        Self {
            prompt,
            state: Mutex::new(RecState {
                generated: Vec::new(),
                prompt_consistent: None,
                sampler,
                mask,
                masked: Vec::new(),
                stream: TextStream {
                    tokenizer,
                    sink,
                    ids: Vec::new(),
                    prefix: 0,
                    read: 0,
                },
            }),
        }
    }

    fn take(&self) -> Taken {
        match self.state.lock() {
            Ok(mut s) => Taken {
                prompt_consistent: s.prompt_consistent,
                context_ids: std::mem::take(&mut s.generated),
                steps: s.sampler.steps().to_vec(),
                mask_unknown: match &s.mask {
                    Some(Err(why)) => Some(why.clone()),
                    _ => None,
                },
            },
            Err(_) => Taken {
                prompt_consistent: None,
                context_ids: Vec::new(),
                steps: Vec::new(),
                mask_unknown: Some("the recorder's state was lost".into()),
            },
        }
    }

    /// Streams the last token (if known) and whatever text is still held back.
    fn finish(&self, last: Option<u32>) {
        if let Ok(mut s) = self.state.lock() {
            if let Some(id) = last {
                s.stream.push(id);
            }
            s.stream.flush();
        }
    }
}

impl CustomLogitsProcessor for Recorder {
    fn apply(&self, logits: &Tensor, context: &[u32]) -> mistralrs::Result<Tensor> {
        let values: Vec<f32> = logits.to_dtype(mistralrs::DType::F32)?.to_vec1()?;
        let p = self.prompt.len();
        let mut s = self
            .state
            .lock()
            .map_err(|_| candle_core::Error::Msg("the sampler's state is poisoned".into()))?;
        if context.len() >= p && s.prompt_consistent.is_none() {
            s.prompt_consistent = Some(context[..p] == self.prompt[..]);
        }
        // Steps can repeat (a grammar re-sample).
        let have = p + s.generated.len();
        if context.len() > have && context.len() >= p {
            for &id in &context[have..] {
                s.generated.push(id);
                s.stream.push(id);
            }
        }
        let position = s.generated.len();
        let st = &mut *s;
        let mask = match &mut st.mask {
            Some(Ok(m)) => match m.allowed(&st.generated) {
                Ok(vob) => Some(vob),
                Err(why) => {
                    // The engine still enforces the grammar; only the record loses the
                    // sampling distribution.
                    st.mask = Some(Err(why));
                    None
                }
            },
            _ => None,
        };
        let token = match mask {
            Some(vob) => {
                grammar_mask::apply(&values, &vob, &mut st.masked);
                st.sampler
                    .sample_masked(&values, Some(&st.masked), position)
            }
            None => st.sampler.sample(&values, position),
        }
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        // Only the chosen token stays finite: the engine's argmax takes it.
        let mut forced = vec![f32::NEG_INFINITY; values.len()];
        forced[token as usize] = 0.0;
        Tensor::from_vec(forced, values.len(), logits.device())
    }
}

/// Incremental detokenisation: text is emitted only once it is stable (no half UTF-8
/// character), decoding a small window rather than the whole reply each step.
struct TextStream {
    tokenizer: Option<Arc<tokenizers::Tokenizer>>,
    sink: TokenSink,
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl TextStream {
    fn decode(&self, ids: &[u32]) -> String {
        self.tokenizer
            .as_ref()
            .and_then(|t| t.decode(ids, true).ok())
            .unwrap_or_default()
    }

    fn push(&mut self, id: u32) {
        if self.tokenizer.is_none() {
            return;
        }
        self.ids.push(id);
        let before = self.decode(&self.ids[self.prefix..self.read]);
        let now = self.decode(&self.ids[self.prefix..]);
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') {
            if let Some(new) = now.get(before.len()..) {
                (self.sink)(new);
            }
            self.prefix = self.read;
            self.read = self.ids.len();
        }
    }

    fn flush(&mut self) {
        let before = self.decode(&self.ids[self.prefix..self.read]);
        let now = self.decode(&self.ids[self.prefix..]);
        if let Some(rest) = now.get(before.len()..).filter(|r| !r.is_empty()) {
            (self.sink)(rest);
        }
        self.prefix = self.ids.len();
        self.read = self.ids.len();
    }
}

/// A message as `transformers` chat templates expect it: tool calls with their arguments as
/// an object, tool results with their call id and name.
fn hf_message(m: &Message) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("role".into(), Value::from(m.role.as_str()));
    out.insert("content".into(), Value::from(m.content.as_str()));
    if !m.tool_calls.is_empty() {
        let calls: Vec<Value> = m
            .tool_calls
            .iter()
            .map(|c| {
                serde_json::json!({"id": c.id, "type": "function",
                                   "function": {"name": c.name, "arguments": c.arguments}})
            })
            .collect();
        out.insert("tool_calls".into(), Value::from(calls));
    }
    if let Some(id) = &m.tool_call_id {
        out.insert("tool_call_id".into(), Value::from(id.as_str()));
    }
    if let Some(name) = &m.name {
        out.insert("name".into(), Value::from(name.as_str()));
    }
    Value::Object(out)
}

/// The model folder's chat template, compiled with the tokenizer's special tokens.
fn hf_template(dir: &Path) -> Option<super::template::ChatTemplate> {
    let source = chat_template(dir)?;
    let cfg: Value = std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let tokens = ["bos_token", "eos_token", "pad_token", "unk_token"]
        .iter()
        .filter_map(|k| {
            let v = &cfg[*k];
            let s = v.as_str().or_else(|| v["content"].as_str())?;
            Some(((*k).to_owned(), s.to_owned()))
        })
        .collect();
    match super::template::ChatTemplate::new(&source, tokens) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!("{}: {e}; the engine renders prompts instead", dir.display());
            None
        }
    }
}

/// What a full rendering (`full`, with the generation prompt) holds after the assistant
/// message at `assistant` ended: its end-of-turn marker (`end_of_turn`) and everything
/// before it are the previous prompt and reply; the rest — tool results, a user turn, the
/// generation prompt — is new. `None` when that boundary cannot be found (then the
/// history is rendered in full).
fn text_after_turn(
    messages: &[Value],
    assistant: usize,
    full: &str,
    end_of_turn: &str,
    render_with_prompt: impl Fn(&[Value]) -> Option<String>,
) -> Option<String> {
    if end_of_turn.is_empty()
        || assistant >= messages.len()
        || messages[assistant]["role"] != "assistant"
    {
        return None;
    }
    // Where the reply starts: the rendering of everything before it, with the generation
    // prompt, is a prefix of the full rendering…
    let before = render_with_prompt(&messages[..assistant])?;
    if let Some(reply) = full.strip_prefix(before.as_str()) {
        let end = reply.find(end_of_turn)?;
        return Some(reply[end + end_of_turn.len()..].to_owned());
    }
    // …unless the template renders a message differently once another follows it (Hermes
    // closes a last tool result with `</tool_response><|im_end|>`, an earlier one with
    // `</tool_response>\n<|im_end|>`). Then the reply is the turn ended by the first
    // end-of-turn marker after as many as the history before it has.
    let turns_before = before.matches(end_of_turn).count();
    let mut at = 0;
    for _ in 0..=turns_before {
        at += full[at..].find(end_of_turn)? + end_of_turn.len();
    }
    Some(full[at..].to_owned())
}

/// The reasoning inside a reply's `<think>…</think>`, if any.
fn reasoning_block(text: &str) -> Option<String> {
    let end = text.find("</think>")?;
    let start = text[..end]
        .find("<think>")
        .map_or(0, |i| i + "<think>".len());
    Some(text[start..end].trim().to_owned()).filter(|r| !r.is_empty())
}

/// The chat template in a model folder: `chat_template.jinja`, else `tokenizer_config.json`'s
/// `chat_template` (a string, or a list of named templates: the default one).
fn chat_template(dir: &Path) -> Option<String> {
    if let Ok(t) = std::fs::read_to_string(dir.join("chat_template.jinja")) {
        return Some(t);
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer_config.json")).ok()?)
            .ok()?;
    match cfg.get("chat_template")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(named) => named
            .iter()
            .find(|t| t["name"] == "default")
            .or_else(|| named.first())
            .and_then(|t| t["template"].as_str())
            .map(str::to_owned),
        _ => None,
    }
}

/// A reply's text with its control tokens (`[TOOL_CALLS]`, `<|python_tag|>`), without the
/// special tokens that ended it (`<|im_end|>`, `<|eot_id|>`, `</s>`).
fn decode_reply(
    tok: &tokenizers::Tokenizer,
    special: &std::collections::HashSet<u32>,
    ids: &[u32],
) -> Option<String> {
    let mut end = ids.len();
    while end > 0 && special.contains(&ids[end - 1]) {
        end -= 1;
    }
    tok.decode(&ids[..end], false).ok()
}

/// The answer after a reasoning block (`<think>…</think>`, which the engine reports apart).
fn after_reasoning(content: &str) -> String {
    match content.find("</think>") {
        Some(i) => content[i + "</think>".len()..].trim().to_owned(),
        None => content.to_owned(),
    }
}

/// An engine error as one message: the chain's text without the backtrace some error
/// types append when `RUST_BACKTRACE` is set (`--log debug` still logs the full error).
fn without_backtrace(message: &str) -> String {
    let mut out = Vec::new();
    for line in message.lines() {
        let t = line.trim_start();
        let frame = t
            .split_once(':')
            .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if frame || t.starts_with("Stack backtrace") || t.starts_with("stack backtrace") {
            break;
        }
        out.push(line);
    }
    out.join("\n").trim_end().to_owned()
}

/// An engine failure in one line: its first (llguidance appends its parser state, candle a
/// backtrace); the whole report is logged at debug level.
fn first_line(message: &str) -> String {
    let mut lines = message.lines();
    let first = lines.next().unwrap_or_default().trim_end().to_owned();
    if lines.any(|l| !l.trim().is_empty()) {
        format!("{first} (`--log debug` shows the engine's full report)")
    } else {
        first
    }
}

#[cfg(test)]
mod without_backtrace_tests {
    use super::without_backtrace;

    #[test]
    fn backtraces_are_cut_from_engine_errors() {
        let e = "Qwen/Qwen3-0.6B: Failed to access `Qwen/Qwen3-0.6B`: request error\n   0: bt\n             at /x/error.rs:264:25\n   1: msg";
        assert_eq!(
            without_backtrace(e),
            "Qwen/Qwen3-0.6B: Failed to access `Qwen/Qwen3-0.6B`: request error"
        );
        assert_eq!(without_backtrace("a: b\nc"), "a: b\nc");
    }
}

#[cfg(test)]
mod text_after_turn_tests {
    use serde_json::{json, Value};

    use super::text_after_turn;

    /// A Hermes-like rendering: a tool result closes differently when it is the last
    /// message.
    fn render(messages: &[Value], prompt: bool) -> String {
        let mut out = String::new();
        for (i, m) in messages.iter().enumerate() {
            let last = i + 1 == messages.len();
            match m["role"].as_str() {
                Some("tool") if last => out.push_str(&format!("<t>{}</t><E>", m["content"])),
                Some("tool") => out.push_str(&format!("<t>{}</t>\n<E>", m["content"])),
                _ => out.push_str(&format!(
                    "<{}>{}<E>",
                    m["role"].as_str().unwrap_or_default(),
                    m["content"]
                )),
            }
        }
        if prompt {
            out.push_str("<assistant>");
        }
        out
    }

    #[test]
    fn the_reply_is_found_even_when_earlier_messages_re_render() {
        let messages = vec![
            json!({"role": "user", "content": "q"}),
            json!({"role": "assistant", "content": "call"}),
            json!({"role": "tool", "content": "1"}),
            json!({"role": "assistant", "content": "call2"}),
            json!({"role": "tool", "content": "2"}),
        ];
        let full = render(&messages, true);
        // The first reply: what the previous prompt ("…<assistant>") was followed by.
        let tail = text_after_turn(&messages, 1, &full, "<E>", |m| Some(render(m, true)));
        assert_eq!(
            tail.as_deref(),
            Some("<t>\"1\"</t>\n<E><assistant>\"call2\"<E><t>\"2\"</t><E><assistant>")
        );
        // The second: history before it renders differently in full (`</t>\n<E>`).
        let tail = text_after_turn(&messages, 3, &full, "<E>", |m| Some(render(m, true)));
        assert_eq!(tail.as_deref(), Some("<t>\"2\"</t><E><assistant>"));
        // Not an assistant message: no boundary.
        assert_eq!(
            text_after_turn(&messages, 2, &full, "<E>", |m| Some(render(m, true))),
            None
        );
    }
}
