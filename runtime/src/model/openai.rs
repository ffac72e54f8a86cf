//! The OpenAI-compatible HTTP backend (vLLM, SGLang, llama.cpp server, Ollama, the
//! mistral.rs server): streamed chat completions with tools, logprobs and — where the
//! server offers them — the engine's token ids. This is the scale-out path for rollouts.
//!
//! Failures before the first byte of a reply (connection refused, 429, 5xx) are retried
//! with exponential backoff, honouring `Retry-After`; a stream that breaks or stalls
//! midway is an error, not a retry, because the model's partial output was already seen.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use futures::{future::BoxFuture, FutureExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::callformat::CallFormat;
use super::{
    toolcall, Finish, Message, ModelBackend, ModelError, ModelInfo, ModelOutput, ModelRequest,
    Role, TokenSink, ToolChoice, Usage,
};

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Base URL up to and including `/v1` (e.g. `http://127.0.0.1:8000/v1`).
    pub base_url: String,
    /// Model name the server knows.
    pub model: String,
    /// Bearer token, if the server wants one.
    pub api_key: Option<String>,
    /// Connecting.
    pub connect_timeout: Duration,
    /// Waiting for the first byte of the reply (prompt processing included).
    pub first_byte_timeout: Duration,
    /// Longest silence between two streamed chunks.
    pub idle_timeout: Duration,
    /// Retries after a connection failure, 429 or 5xx.
    pub max_retries: u32,
    /// First backoff; doubles per retry (capped at 10 s).
    pub backoff: Duration,
    /// Ask for vLLM's token-id extensions (`return_token_ids`, `return_tokens_as_token_ids`).
    /// Servers that reject unknown fields need this off.
    pub vllm_extensions: bool,
    /// What the server's logprobs are, as its operator knows it (vLLM's `--logprobs-mode`:
    /// `raw_logprobs`, `processed_logprobs`, …); `None`: unknown, and recorded as such.
    pub logprobs_mode: Option<String>,
    /// The layout to read calls in when the server leaves them in the text (a server
    /// started without a tool parser); `None`: recognised by their markers.
    pub tool_format: Option<super::callformat::CallFormat>,
    /// Fields added to every request body, for what the OpenAI schema has no word for
    /// (llama.cpp's `logit_bias`/`repeat_last_n`, vLLM's `chat_template_kwargs`, …). They may
    /// override sampling fields, never what Verity's reading of the reply depends on
    /// ([`RESERVED_BODY_KEYS`]).
    pub extra_body: serde_json::Map<String, Value>,
}

/// Request fields `extra_body` may not set: the conversation, the tools and the streaming
/// and logprob settings the reply is parsed and recorded with.
pub const RESERVED_BODY_KEYS: &[&str] = &[
    "model",
    "messages",
    "tools",
    "tool_choice",
    "stream",
    "stream_options",
    "logprobs",
    "n",
];

impl OpenAiConfig {
    /// Defaults for a server at `base_url` serving `model`.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            model: model.into(),
            api_key: None,
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(60),
            max_retries: 3,
            backoff: Duration::from_millis(250),
            vllm_extensions: false,
            logprobs_mode: None,
            tool_format: None,
            extra_body: serde_json::Map::new(),
        }
    }
}

/// A model behind an OpenAI-compatible HTTP API.
#[derive(Debug)]
pub struct OpenAiModel {
    client: reqwest::Client,
    config: OpenAiConfig,
    info: ModelInfo,
    /// Cleared once the server refuses to stream this kind of request (llama.cpp: "logprobs
    /// is not supported with tools + stream"); later requests are sent whole.
    streams: AtomicBool,
}

impl OpenAiModel {
    /// A client for `config` (no request is made yet).
    pub fn new(config: OpenAiConfig) -> Result<Self, ModelError> {
        if let Some(k) = config
            .extra_body
            .keys()
            .find(|k| RESERVED_BODY_KEYS.contains(&k.as_str()))
        {
            return Err(ModelError::Load(format!(
                "extra body field '{k}' is set by Verity itself (the reserved fields are {}); \
                 remove it",
                RESERVED_BODY_KEYS.join(", ")
            )));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ModelError::Http(format!("building the HTTP client: {e}")))?;
        let info = ModelInfo {
            engine: "openai-http".into(),
            engine_version: String::new(),
            model: config.model.clone(),
            device: config.base_url.clone(),
            context_window: None,
            dtype: None,
            files: None,
            request_extra: config.extra_body.clone(),
            logprobs_mode: match &config.logprobs_mode {
                Some(mode) => {
                    format!("as the server reports them: {mode} (given with --logprobs-mode)")
                }
                None => "unknown: as the server reports them (vLLM's default is raw_logprobs, \
                         before temperature and sampling filters; pass --logprobs-mode to \
                         record what the server was started with)"
                    .into(),
            },
        };
        Ok(Self {
            client,
            config,
            info,
            streams: AtomicBool::new(true),
        })
    }

    fn body(&self, req: &ModelRequest, missing: &mut Vec<String>) -> Value {
        let s = &req.sampling;
        let mut body = json!({
            "model": self.config.model,
            "messages": req.messages.iter().map(wire_message).collect::<Vec<_>>(),
            "max_tokens": s.max_tokens,
            "logprobs": true,
        });
        let Value::Object(b) = &mut body else {
            return body;
        };
        let streams = self.streams.load(Ordering::Relaxed);
        b.insert("stream".into(), json!(streams));
        if streams {
            b.insert("stream_options".into(), json!({"include_usage": true}));
        }
        if s.greedy {
            b.insert("temperature".into(), json!(0.0));
        } else {
            if let Some(t) = s.temperature {
                b.insert("temperature".into(), json!(t));
            }
            if let Some(p) = s.top_p {
                b.insert("top_p".into(), json!(p));
            }
            if let Some(k) = s.top_k {
                b.insert("top_k".into(), json!(k));
            }
        }
        if let Some(seed) = s.seed {
            b.insert("seed".into(), json!(seed));
        }
        if !req.tools.is_empty() && req.tool_choice != ToolChoice::None {
            let tools: Vec<Value> = req
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters}})
                })
                .collect();
            b.insert("tools".into(), Value::Array(tools));
            let choice = match &req.tool_choice {
                ToolChoice::Auto | ToolChoice::None => json!("auto"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Named(n) => json!({"type": "function", "function": {"name": n}}),
            };
            b.insert("tool_choice".into(), choice);
            if req.strict && req.tool_choice == ToolChoice::Auto {
                missing.push(
                    "strict: over HTTP only required/named tool choices are constrained \
                     (by the server)"
                        .into(),
                );
            }
        }
        if req.grammar.is_some() {
            missing.push("grammar: not supported over HTTP; the reply was unconstrained".into());
        }
        for (k, v) in &self.config.extra_body {
            b.insert(k.clone(), v.clone());
        }
        if self.config.vllm_extensions {
            b.insert("return_token_ids".into(), json!(true));
            b.insert("return_tokens_as_token_ids".into(), json!(true));
        }
        body
    }

    /// Sends the request, retrying failures that happen before a reply starts.
    async fn send(
        &self,
        body: &Value,
        cancel: &CancellationToken,
    ) -> Result<reqwest::Response, ModelError> {
        let url = format!("{}/chat/completions", self.config.base_url);
        let mut attempt = 0u32;
        loop {
            let mut rb = self.client.post(&url).json(body);
            if let Some(key) = &self.config.api_key {
                rb = rb.bearer_auth(key);
            }
            let sent = tokio::select! {
                () = cancel.cancelled() => return Err(ModelError::Cancelled),
                r = tokio::time::timeout(self.config.first_byte_timeout, rb.send()) => r,
            };
            let (retryable, why, retry_after) = match sent {
                Err(_) => (
                    true,
                    format!(
                        "no reply within {} s",
                        self.config.first_byte_timeout.as_secs_f32()
                    ),
                    None,
                ),
                Ok(Err(e)) => (
                    e.is_connect() || e.is_timeout(),
                    format!("POST {url}: {e}"),
                    None,
                ),
                Ok(Ok(resp)) if resp.status().is_success() => return Ok(resp),
                Ok(Ok(resp)) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = resp.text().await.unwrap_or_default();
                    let snippet: String = text.chars().take(300).collect();
                    (
                        status.as_u16() == 429 || status.is_server_error(),
                        format!("POST {url}: HTTP {status}: {snippet}"),
                        retry_after,
                    )
                }
            };
            if !retryable || attempt >= self.config.max_retries {
                let tries = attempt + 1;
                return Err(ModelError::Http(if retryable {
                    format!("{why} (gave up after {tries} attempts)")
                } else {
                    why
                }));
            }
            let backoff = retry_after.unwrap_or_else(|| {
                (self.config.backoff * 2u32.saturating_pow(attempt)).min(Duration::from_secs(10))
            });
            tracing::warn!(%why, attempt, ?backoff, "retrying model request");
            tokio::select! {
                () = cancel.cancelled() => return Err(ModelError::Cancelled),
                () = tokio::time::sleep(backoff) => {}
            }
            attempt += 1;
        }
    }

    /// A reply sent whole (`stream: false`), as one chunk whose choices carry the message.
    async fn whole_reply(
        &self,
        resp: reqwest::Response,
        cancel: &CancellationToken,
    ) -> Result<WireChunk, ModelError> {
        let limit = self.config.first_byte_timeout;
        let text = tokio::select! {
            () = cancel.cancelled() => return Err(ModelError::Cancelled),
            t = tokio::time::timeout(limit, resp.text()) => t,
        }
        .map_err(|_| {
            ModelError::Http(format!(
                "no complete reply within {} s",
                limit.as_secs_f32()
            ))
        })?
        .map_err(|e| ModelError::Http(format!("reading the reply: {e}")))?;
        let reply: WireChunk = serde_json::from_str(&text).map_err(|e| {
            let snippet: String = text.chars().take(200).collect();
            ModelError::Protocol(format!(
                "the reply is not a chat completion ({e}): {snippet}"
            ))
        })?;
        match reply.error {
            Some(err) => Err(ModelError::Engine(err.to_string())),
            None => Ok(reply),
        }
    }

    async fn run(
        &self,
        req: &ModelRequest,
        on_token: TokenSink,
        cancel: CancellationToken,
    ) -> Result<ModelOutput, ModelError> {
        let mut missing = Vec::new();
        let body = self.body(req, &mut missing);
        let (streamed, resp) = match self.send(&body, &cancel).await {
            Err(ModelError::Http(why))
                if body["stream"] == true && why.contains("HTTP 400") && why.contains("stream") =>
            {
                tracing::warn!(%why, "the server cannot stream this request; sending requests whole");
                self.streams.store(false, Ordering::Relaxed);
                let body = self.body(req, &mut Vec::new());
                (false, self.send(&body, &cancel).await?)
            }
            other => (body["stream"] == true, other?),
        };
        let mut acc = Accumulator::default();
        if !streamed {
            acc.add(self.whole_reply(resp, &cancel).await?, &on_token);
            if acc.finish.is_none() {
                return Err(ModelError::Protocol(
                    "the reply has no finish_reason".into(),
                ));
            }
            return Ok(acc.finish_output(req, missing, self.config.tool_format));
        }
        let mut stream = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut done = false;
        while !done {
            let next = tokio::select! {
                () = cancel.cancelled() => return Err(ModelError::Cancelled),
                n = tokio::time::timeout(self.config.idle_timeout, stream.next()) => n,
            };
            let chunk = match next {
                Err(_) => {
                    return Err(ModelError::Http(format!(
                        "the stream stalled for {} s",
                        self.config.idle_timeout.as_secs_f32()
                    )))
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(ModelError::Http(format!("the stream broke: {e}"))),
                Ok(Some(Ok(c))) => c,
            };
            buf.extend_from_slice(&chunk);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim_end_matches(['\r', '\n']);
                let Some(data) = line.strip_prefix("data:") else {
                    // Comments, `event:` and blank separator lines.
                    continue;
                };
                let data = data.trim_start();
                if data == "[DONE]" {
                    done = true;
                    break;
                }
                let chunk: WireChunk = serde_json::from_str(data).map_err(|e| {
                    let snippet: String = data.chars().take(200).collect();
                    ModelError::Protocol(format!(
                        "a stream event is not a chat chunk ({e}): {snippet}"
                    ))
                })?;
                if let Some(err) = chunk.error {
                    return Err(ModelError::Engine(err.to_string()));
                }
                acc.add(chunk, &on_token);
            }
        }
        if !done && acc.finish.is_none() {
            return Err(ModelError::Protocol(
                "the stream ended before the reply finished (no finish_reason, no [DONE])".into(),
            ));
        }
        Ok(acc.finish_output(req, missing, self.config.tool_format))
    }
}

impl ModelBackend for OpenAiModel {
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
}

fn wire_message(m: &Message) -> Value {
    match m.role {
        Role::Assistant if !m.tool_calls.is_empty() => json!({
            "role": "assistant",
            "content": if m.content.is_empty() { Value::Null } else { json!(m.content) },
            "tool_calls": m.tool_calls.iter().map(|c| json!({
                "id": c.id, "type": "function",
                "function": {"name": c.name, "arguments": c.arguments.to_string()},
            })).collect::<Vec<_>>(),
        }),
        Role::Tool => json!({
            "role": "tool",
            "tool_call_id": m.tool_call_id,
            "content": m.content,
        }),
        role => json!({"role": role.as_str(), "content": m.content}),
    }
}

#[derive(Debug, Deserialize)]
struct WireChunk {
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    prompt_token_ids: Option<Vec<u32>>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct WireChoice {
    #[serde(default)]
    delta: WireDelta,
    /// A reply sent whole carries the message where a chunk carries a delta.
    #[serde(default)]
    message: Option<WireDelta>,
    #[serde(default)]
    logprobs: Option<WireLogprobs>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    token_ids: Option<Vec<u32>>,
    #[serde(default)]
    prompt_token_ids: Option<Vec<u32>>,
}

#[derive(Debug, Default, Deserialize)]
struct WireDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default, alias = "reasoning")]
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunction>,
}

#[derive(Debug, Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireLogprobs {
    #[serde(default)]
    content: Option<Vec<WireTokenLogprob>>,
}

#[derive(Debug, Deserialize)]
struct WireTokenLogprob {
    token: String,
    logprob: f32,
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

#[derive(Debug, Default)]
struct Accumulator {
    text: String,
    reasoning: String,
    calls: BTreeMap<usize, toolcall::RawCall>,
    logprobs: Vec<f32>,
    ids_from_logprobs: Vec<Option<u32>>,
    token_ids: Vec<u32>,
    prompt_ids: Option<Vec<u32>>,
    finish: Option<Finish>,
    usage: Option<Usage>,
}

impl Accumulator {
    fn add(&mut self, chunk: WireChunk, on_token: &TokenSink) {
        if let Some(u) = chunk.usage {
            self.usage = Some(Usage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
            });
        }
        if chunk.prompt_token_ids.is_some() {
            self.prompt_ids = chunk.prompt_token_ids;
        }
        for c in chunk.choices {
            let delta = c.message.unwrap_or(c.delta);
            if let Some(t) = delta.content.filter(|t| !t.is_empty()) {
                on_token(&t);
                self.text.push_str(&t);
            }
            if let Some(r) = delta.reasoning_content {
                self.reasoning.push_str(&r);
            }
            for (n, tc) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
                let index = tc.index.unwrap_or(n);
                let entry = self
                    .calls
                    .entry(index)
                    .or_insert_with(|| toolcall::RawCall {
                        id: String::new(),
                        name: String::new(),
                        arguments: String::new(),
                    });
                if let Some(id) = tc.id {
                    entry.id = id;
                }
                if let Some(f) = tc.function {
                    if let Some(name) = f.name {
                        entry.name.push_str(&name);
                    }
                    if let Some(args) = f.arguments {
                        entry.arguments.push_str(&args);
                    }
                }
            }
            for lp in c.logprobs.and_then(|l| l.content).unwrap_or_default() {
                self.logprobs.push(lp.logprob);
                // vLLM's `return_tokens_as_token_ids` writes tokens as "token_id:123".
                self.ids_from_logprobs.push(
                    lp.token
                        .strip_prefix("token_id:")
                        .and_then(|n| n.parse().ok()),
                );
            }
            if let Some(ids) = c.token_ids {
                self.token_ids.extend(ids);
            }
            if c.prompt_token_ids.is_some() {
                self.prompt_ids = c.prompt_token_ids;
            }
            if let Some(f) = c.finish_reason {
                self.finish = Some(Finish::from_engine(Some(&f)));
            }
        }
    }

    fn finish_output(
        mut self,
        req: &ModelRequest,
        mut missing: Vec<String>,
        format: Option<CallFormat>,
    ) -> ModelOutput {
        let mut raw: Vec<toolcall::RawCall> =
            std::mem::take(&mut self.calls).into_values().collect();
        let truncated = self.finish == Some(Finish::Length);
        // A server without a tool parser leaves the calls in the text: read every one of
        // them in the family's layout (named, or recognised by its marker).
        let mut read_failures = Vec::new();
        let mut raw_reply = None;
        if raw.is_empty() {
            let format = format.or_else(|| CallFormat::from_markers(&self.text));
            if let Some(f) = format {
                let parsed = f.parse(&self.text);
                raw = parsed.calls;
                read_failures = parsed.failures;
                raw_reply = Some(std::mem::replace(&mut self.text, parsed.content));
            }
        }
        // The ids go back to this server in the history; ones its own Mistral template
        // would refuse are replaced (llama.cpp hands out 32-character ids).
        super::callformat::portable_call_ids(&mut raw, &self.text);
        let (tool_calls, mut parse_failures) =
            toolcall::check(&req.tools, raw, &self.text, truncated);
        parse_failures.extend(read_failures);
        let token_ids = if !self.token_ids.is_empty() {
            Some(self.token_ids)
        } else if !self.ids_from_logprobs.is_empty()
            && self.ids_from_logprobs.iter().all(Option::is_some)
        {
            Some(self.ids_from_logprobs.into_iter().flatten().collect())
        } else {
            missing.push(
                "token_ids: the server did not return them (vLLM: run with the vllm \
                 extensions on)"
                    .into(),
            );
            None
        };
        if self.prompt_ids.is_none() {
            missing.push("prompt_ids: the server did not return them".into());
        }
        let logprobs = if self.logprobs.is_empty() {
            missing.push("logprobs: the server sent none".into());
            None
        } else {
            Some(self.logprobs)
        };
        if self.usage.is_none() {
            missing.push("usage: the server sent no usage".into());
        }
        ModelOutput {
            text: self.text,
            raw: raw_reply,
            reasoning: (!self.reasoning.is_empty()).then_some(self.reasoning),
            tool_calls,
            parse_failures,
            prompt_view: None,
            prompt_ids: self.prompt_ids,
            token_ids,
            logprobs,
            // The server samples; it does not say from what distribution.
            sampling_logprobs: None,
            finish: self.finish,
            usage: self.usage.unwrap_or_default(),
            missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_say_what_the_servers_logprobs_are_or_that_it_is_unknown() {
        let mut cfg = OpenAiConfig::new("http://127.0.0.1:1/v1", "m");
        let m = OpenAiModel::new(cfg.clone()).unwrap();
        assert!(
            m.info.logprobs_mode.starts_with("unknown"),
            "{}",
            m.info.logprobs_mode
        );
        cfg.logprobs_mode = Some("processed_logprobs".into());
        let m = OpenAiModel::new(cfg).unwrap();
        assert!(m.info.logprobs_mode.contains("processed_logprobs"));
    }
}
