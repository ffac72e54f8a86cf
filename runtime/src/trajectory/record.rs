//! The records of a `verity.traj/1` file as types. Everything that writes a record builds
//! these structs and everything that reads one (export, verify, resume) parses into them,
//! so a misspelt field is a compile error rather than a silent `null`. The published JSON
//! Schema (`docs/trajectory.schema.json`) is generated from these types ([`json_schema`]);
//! a test fails when the file is stale.
//!
//! Reading is lenient where the format grew (fields added later default), strict where a
//! wrong value would mislead a trainer (ids, masks, rewards must have their types).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use verity_types::{FailureKind, Limits, Verdict};

use crate::{
    agent::StopReason,
    approver::Approval,
    model::{Finish, ToolChoice, Usage},
    reward::{RewardResult, VerifierSpec},
};

/// Schema id written in every record.
pub const SCHEMA: &str = "verity.traj/1";

/// One line of a trajectory file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum Record {
    /// One agent run.
    Traj(TrajRecord),
    /// The statistics of one task's group of samples, written after its members.
    Group(GroupRecord),
}

impl Record {
    /// Parses one line. The error names the field that is wrong and what was expected.
    pub fn from_json_line(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line)
    }

    /// The record's chain digest, if it was sealed.
    pub fn digest(&self) -> Option<&str> {
        let integrity = match self {
            Record::Traj(t) => &t.integrity,
            Record::Group(g) => &g.integrity,
        };
        integrity.as_ref().map(|i| i.digest.as_str())
    }
}

/// One agent run: what was asked, by which model under which sampling, every model call
/// with the engine's own token ids and logprobs, every tool call with its policy decision,
/// the reward, and the chain link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrajRecord {
    /// Always `verity.traj/1`.
    #[schemars(with = "SchemaId")]
    pub schema: String,
    /// Sortable unique id: unix ms, pid, counter.
    pub id: String,
    /// When the record was made.
    #[serde(default)]
    pub created_unix_ms: u64,
    /// What was asked.
    pub task: TaskInfo,
    /// Rollouts: the group (task id) this sample belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Rollouts: the sample's index in its group (rounds of dynamic sampling continue the
    /// count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_index: Option<usize>,
    /// How many leading `messages` the run was given (system prompt, the task's messages —
    /// few-shot turns included — or earlier chat exchanges); the rest is what it added.
    /// Exports split prompt from completion here. Absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_messages: Option<usize>,
    /// The model (RL's policy — not the permission policy).
    pub policy: ModelIdentity,
    /// How every model call sampled.
    pub sampling: SamplingRecord,
    /// Tools as offered to the model.
    pub tools: Vec<OfferedTool>,
    /// The conversation in OpenAI chat format (tool_calls with JSON-string arguments,
    /// tool_call_id on tool messages).
    pub messages: Vec<ChatMessage>,
    /// One entry per model call.
    pub turns: Vec<TurnRecord>,
    /// The flat trainer view, present only when every turn joins the next token for token.
    pub tokens: TokenView,
    /// Every tool call that went to the gate, in the order the model made them.
    pub tool_calls: Vec<ToolCallRecord>,
    /// Calls the model attempted that could not be used (the error went back to it).
    pub parse_failures: Vec<ParseFailureRecord>,
    /// Verifier results (null: no verifier ran).
    pub reward: Option<Reward>,
    /// How the run ended.
    pub outcome: Outcome,
    /// The hash chain link (absent until the record is appended to a file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<Integrity>,
}

/// The constant `verity.traj/1`, for the schema.
struct SchemaId;

impl JsonSchema for SchemaId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SchemaId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "const": SCHEMA })
    }
}

/// A `sha256:` digest, for the schema.
fn digest_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "pattern": "^sha256:[0-9a-f]{64}$" })
}

/// What a run was asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum TaskInfo {
    /// A task of a task file (`verity rollout`).
    Task(Box<TaskRef>),
    /// An exchange of a `verity chat` session (with the task it was on, if any).
    Chat {
        /// The session and exchange.
        chat: ChatRef,
        /// The task line as read, when the chat was on a task.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<Value>,
    },
    /// A prompt given on the command line (`verity run`).
    Prompt {
        /// The prompt.
        prompt: String,
    },
}

impl TaskInfo {
    /// The task's id, when it came from a task file.
    pub fn id(&self) -> Option<&str> {
        match self {
            TaskInfo::Task(t) => Some(&t.id),
            _ => None,
        }
    }

    /// The task-file task, if it is one.
    pub fn task(&self) -> Option<&TaskRef> {
        match self {
            TaskInfo::Task(t) => Some(t),
            _ => None,
        }
    }
}

/// A task of a task file, as recorded with each of its samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskRef {
    /// The task's id (unique in its file).
    pub id: String,
    /// Canonical-JSON SHA-256 of the task line: which version of the task was run.
    pub hash: String,
    /// Where the task comes from (verl's `data_source`).
    #[serde(default)]
    pub data_source: Option<String>,
    /// The gold answer the verifier compares against.
    #[serde(default)]
    pub ground_truth: Value,
    /// The verifier that scores it.
    pub verifier: VerifierSpec,
    /// Anything else the task file said about it.
    #[serde(default)]
    pub meta: Value,
}

/// An exchange of a chat session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatRef {
    /// Session id.
    pub session: String,
    /// 1-based exchange number within the session.
    pub exchange: usize,
}

/// Who generated: engine, model, and digests of its local files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelIdentity {
    /// `mistral.rs`, `openai-http` or `scripted`.
    pub engine: String,
    /// Engine version.
    pub engine_version: String,
    /// HF id, local path or server model name.
    pub model: String,
    /// `cpu`, `cuda:0`, or the server URL.
    pub device: String,
    /// Weight dtype or quantisation, when known.
    #[serde(default)]
    pub dtype: Option<String>,
    /// Context window, when known.
    #[serde(default)]
    pub context_window: Option<usize>,
    /// sha256 of local files: config, tokenizer, tokenizer_config (holds the chat
    /// template), generation_config, weights (digest of the sorted weight files'
    /// digests). Empty for remote models.
    #[serde(default)]
    pub digests: BTreeMap<String, String>,
    /// What gen_logprobs and rollout_logprobs are. Embedded engine: natural log of
    /// softmax(logits / temperature) over the whole vocabulary (temperature 1 when greedy),
    /// before top-k, top-p and grammar masks — what trainers recompute. HTTP backends: as
    /// the server reports them.
    #[serde(default)]
    pub logprobs_mode: String,
    /// HTTP backends: fields added to every request body (`--extra-body`) — what else the
    /// server was told (logit biases, penalties, chat-template arguments).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub request_extra: serde_json::Map<String, Value>,
}

/// Sampling settings of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SamplingRecord {
    /// Argmax decoding.
    pub greedy: bool,
    /// Temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Top-k sampling.
    pub top_k: Option<usize>,
    /// The run's seed (given, or drawn fresh for a sampled run given none; null: greedy
    /// with none given). Model call t samples with `turns[t].seed`.
    pub seed: Option<u64>,
    /// Most tokens one model call may generate.
    pub max_tokens_per_turn: usize,
    /// Most tokens the whole run may generate.
    pub max_tokens_total: u64,
    /// Most model calls.
    pub max_turns: usize,
    /// Tool calls constrained by a grammar.
    pub strict: bool,
    /// Tool choice of the first model call.
    pub tool_choice: ToolChoice,
}

/// A tool as offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OfferedTool {
    /// Name.
    pub name: String,
    /// Description for the model.
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: Value,
}

/// A chat message in OpenAI format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text.
    pub content: String,
    /// The assistant's calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ChatToolCall>,
    /// Which call a tool message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The tool's name, on tool messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A call inside an assistant message (OpenAI format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatToolCall {
    /// Call id.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// Name and arguments.
    pub function: ChatFunction,
}

fn function_type() -> String {
    "function".into()
}

/// The function of a call: its name and its arguments as a JSON string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatFunction {
    /// Tool name.
    pub name: String,
    /// Arguments, JSON-encoded (as OpenAI writes them).
    pub arguments: String,
}

impl ChatToolCall {
    /// The call as the agent loop holds it (arguments parsed; a string that is not JSON
    /// stays a string).
    pub fn to_tool_call(&self) -> crate::model::ToolCall {
        let arguments = serde_json::from_str(&self.function.arguments)
            .unwrap_or_else(|_| Value::String(self.function.arguments.clone()));
        crate::model::ToolCall {
            id: self.id.clone(),
            name: self.function.name.clone(),
            arguments,
        }
    }
}

/// A log probability; `-inf` (a token the distribution gave no mass) is written as JSON
/// `null`, which JSON cannot otherwise say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Logprob(pub f64);

impl Serialize for Logprob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_finite() {
            s.serialize_f64(self.0)
        } else {
            s.serialize_none()
        }
    }
}

impl<'de> Deserialize<'de> for Logprob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Logprob(
            Option::<f64>::deserialize(d)?.unwrap_or(f64::NEG_INFINITY),
        ))
    }
}

impl JsonSchema for Logprob {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Logprob".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["number", "null"],
            "maximum": 0,
            "description": "A natural-log probability; null for -inf."
        })
    }
}

/// One model call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TurnRecord {
    /// 0-based.
    pub index: usize,
    /// This call's sampling seed: sampling.seed for the first call, SplitMix64(seed XOR
    /// index·0x9E3779B97F4A7C15) for later ones. The embedded engine draws each token from
    /// the ChaCha8 stream of this seed, so the call can be drawn again.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Length of `prompt_ids`.
    #[serde(default)]
    pub prompt_len: Option<usize>,
    /// The prompt as the engine tokenised it (checked against what it conditioned on).
    pub prompt_ids: Option<Vec<u32>>,
    /// Sampled token ids, the stop/EOS token included.
    pub gen_ids: Option<Vec<u32>>,
    /// Logprob of each sampled token under the full-vocabulary `log_softmax(z / T)` (T = 1
    /// when greedy): what trainers recompute (see `policy.logprobs_mode`).
    pub gen_logprobs: Option<Vec<Logprob>>,
    /// Logprob of each sampled token under the distribution it was actually drawn from —
    /// after temperature, top-k, top-p and the grammar mask (0 when greedy: argmax is a
    /// point mass). Absent where the backend cannot say (HTTP servers, older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_logprobs: Option<Vec<Logprob>>,
    /// Why generation stopped.
    pub finish_reason: Option<Finish>,
    /// Visible text.
    #[serde(default)]
    pub text: String,
    /// Reasoning text, when the engine separates it.
    #[serde(default)]
    pub reasoning: Option<String>,
    /// Token counts.
    pub usage: Usage,
    /// Which prompt the model saw, where Verity built it (a real chat template, or a later
    /// call of an engine-rendered one, which only continues):
    /// `rendered` (the template's rendering), `continued` (the previous prompt and reply
    /// token for token, then what followed; re-rendering gives the same ids) or
    /// `continued_rerender_differs` (continued, and `apply_chat_template` on the
    /// conversation would give other ids: these are what the model conditioned on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_view: Option<crate::model::PromptView>,
    /// Model time in milliseconds.
    #[serde(default)]
    pub model_ms: u64,
    /// What the backend could not provide for this call, and why (never guessed).
    pub missing: Vec<String>,
    /// How the next call's prompt relates to this prompt + this reply.
    pub next: NextPrompt,
}

/// How the next call's prompt relates to this one's prompt + reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NextPrompt {
    /// Length of the common prefix.
    pub prefix_len: Option<usize>,
    /// true: the next prompt starts with prompt_ids + gen_ids exactly. false: the chat
    /// template re-rendered history differently (retokenisation drift) — use per-turn ids.
    pub prefix_consistent: Option<bool>,
    /// What the next prompt adds after the common prefix (tool output, template scaffold).
    pub new_prompt_ids: Option<Vec<u32>>,
}

/// Where a token of the flat view came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// Generated by the model (loss_mask 1).
    Sampled,
    /// A tool result as the model read it.
    Tool,
    /// Chat-template scaffold and generation prompts.
    Template,
    /// Not sampled, origin not resolved (the backend cannot tokenize, or a template
    /// rewrote a tool result).
    Inserted,
}

/// The flat trainer view: one prompt, one response with a loss mask — or why there is
/// none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TokenView {
    /// Whether every turn joined the next token for token.
    pub available: bool,
    /// Why the view is not available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The view, when available.
    #[serde(flatten)]
    pub view: Option<FlatTokens>,
}

impl TokenView {
    /// No view, and why.
    pub fn unavailable(why: impl Into<String>) -> Self {
        Self {
            available: false,
            why: Some(why.into()),
            view: None,
        }
    }

    /// The view, or why there is none.
    pub fn get(&self) -> Result<&FlatTokens, &str> {
        match (&self.view, self.available) {
            (Some(v), true) => Ok(v),
            _ => Err(self.why.as_deref().unwrap_or("no flat token view")),
        }
    }
}

/// The token sequences a trainer consumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FlatTokens {
    /// The first prompt's ids.
    pub prompt_ids: Vec<u32>,
    /// Everything after it: sampled tokens and what was inserted between calls.
    pub response_ids: Vec<u32>,
    /// 1 exactly on sampled tokens (EOS/stop included); 0 on tool output and template
    /// scaffold.
    pub loss_mask: Vec<u8>,
    /// The sampled tokens' full-vocabulary logprobs (`turns[].gen_logprobs`); 0 where
    /// loss_mask is 0.
    pub rollout_logprobs: Vec<Logprob>,
    /// The sampled tokens' logprobs under the distribution actually sampled from
    /// (`turns[].sampling_logprobs`); 0 where loss_mask is 0. Absent unless every turn has
    /// them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_logprobs: Option<Vec<Logprob>>,
    /// Where each response token came from.
    pub source: Vec<TokenSource>,
}

/// What a tool call's status says: `ok`, or the failure kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum CallStatus {
    /// The call ran and succeeded.
    Ok(OkStatus),
    /// Why it did not produce a result.
    Failed(FailureKind),
}

/// The word `ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OkStatus {
    /// Succeeded.
    Ok,
}

impl CallStatus {
    /// `ok` or the failure kind.
    pub fn of(failure: Option<FailureKind>) -> Self {
        failure.map_or(CallStatus::Ok(OkStatus::Ok), CallStatus::Failed)
    }

    /// The failure kind, if the call failed.
    pub fn failure(self) -> Option<FailureKind> {
        match self {
            CallStatus::Ok(_) => None,
            CallStatus::Failed(k) => Some(k),
        }
    }

    /// Whether the tool ran (it may still have failed): not denied, not unknown.
    pub fn ran(self) -> bool {
        !matches!(
            self,
            CallStatus::Failed(FailureKind::Denied | FailureKind::UnknownTool)
        )
    }
}

/// The policy decision as recorded with a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DecisionRecord {
    /// allow / ask / deny.
    pub verdict: Verdict,
    /// The rule that decided.
    pub rule_id: String,
    /// Why.
    pub reason: String,
    /// The normalised tool name the policy judged (and the gate ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
}

/// One tool call: the model's request, the gate's decision, what ran and what the model
/// read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolCallRecord {
    /// Call id.
    pub id: String,
    /// 1-based turn that made it.
    #[serde(default)]
    pub turn: usize,
    /// Tool name as the model wrote it.
    pub name: String,
    /// Parsed arguments.
    pub arguments: Value,
    /// `ok` or the failure kind.
    pub status: CallStatus,
    /// The policy's decision.
    pub decision: DecisionRecord,
    /// The approver's answer, when the policy asked.
    #[serde(default)]
    pub approval: Option<Approval>,
    /// Limits the tool ran under.
    #[serde(default, deserialize_with = "recorded_limits")]
    pub limits: Limits,
    /// The text inserted into the model's context.
    pub output: String,
    /// The structured result (MCP structuredContent).
    #[serde(default)]
    pub structured: Option<Value>,
    /// Tool wall time in milliseconds (to the microsecond).
    #[serde(default)]
    pub wall_ms: f64,
    /// sha256 of canonical {tool, arguments, text, structured, failure}: what a replay must
    /// reproduce.
    pub io_digest: String,
}

/// Limits as records hold them. Records written before `fuel` was dropped (it was
/// accepted and never enforced) carry `"fuel": null`, and nulls for unset fields: both
/// read as unset.
fn recorded_limits<'de, D: Deserializer<'de>>(d: D) -> Result<Limits, D::Error> {
    #[derive(Deserialize)]
    struct Recorded {
        #[serde(default)]
        wall_ms: Option<u64>,
        #[serde(default)]
        memory_mb: Option<u64>,
        #[serde(default)]
        output_kb: Option<u64>,
        #[serde(default, rename = "fuel")]
        _fuel: Option<u64>,
    }
    let r = Recorded::deserialize(d)?;
    Ok(Limits {
        wall_ms: r.wall_ms,
        memory_mb: r.memory_mb,
        output_kb: r.output_kb,
    })
}

impl ToolCallRecord {
    /// The tool that ran: the policy's normalised name, else the model's.
    pub fn tool(&self) -> &str {
        self.decision.tool.as_deref().unwrap_or(&self.name)
    }
}

/// A call that could not be used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ParseFailureRecord {
    /// 1-based turn.
    pub turn: usize,
    /// What the model wrote.
    pub raw: String,
    /// What is wrong with it.
    pub error: String,
}

/// A run's reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reward {
    /// The reward a trainer uses.
    pub total: f64,
    /// Each verifier's verdict.
    pub components: Vec<RewardResult>,
}

impl Reward {
    /// The reward of one verifier's result.
    pub fn of(result: &RewardResult) -> Self {
        Self {
            total: result.score,
            components: vec![result.clone()],
        }
    }
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    /// Why it stopped.
    pub stop: StopReason,
    /// The final answer, if any.
    #[serde(default)]
    pub answer: Option<String>,
    /// The last reply was cut by the per-call token limit.
    pub truncated: bool,
    /// Model calls made.
    #[serde(default)]
    pub turns: usize,
    /// Prompt tokens over all calls.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Generated tokens over all calls.
    #[serde(default)]
    pub completion_tokens: u64,
}

/// The hash-chain link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Integrity {
    /// The previous record's digest (null first).
    pub prev: Option<String>,
    /// SHA-256 of the canonical JSON (keys sorted, no whitespace, floats at 15 significant
    /// digits) of the record without `integrity.digest` and `integrity.signature`.
    #[schemars(schema_with = "digest_schema")]
    pub digest: String,
    /// An Ed25519 signature of `digest` (written with `--sign KEY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

/// A signature of a record's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Signature {
    /// The signing key: `ed25519:<hex public key>`.
    pub key: String,
    /// The Ed25519 signature of the digest's text, hex.
    pub sig: String,
}

/// The group of a task's samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GroupRecord {
    /// Always `verity.traj/1`.
    #[schemars(with = "SchemaId")]
    pub schema: String,
    /// The task.
    pub task: GroupTask,
    /// The group's id (the task id).
    pub group_id: String,
    /// The verifier that scored the members.
    pub verifier: VerifierSpec,
    /// Statistics over the members' rewards.
    pub stats: GroupStats,
    /// The hash chain link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<Integrity>,
}

/// The task a group is of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GroupTask {
    /// Task id.
    pub id: String,
}

/// A group's statistics. Raw rewards stay the source of truth; advantages are advisory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GroupStats {
    /// Members.
    pub n: usize,
    /// Members' rewards, in sample order.
    pub rewards: Vec<f64>,
    /// Mean reward.
    pub mean: f64,
    /// Population standard deviation.
    pub std_population: f64,
    /// Unbiased (Bessel-corrected) standard deviation.
    pub std_unbiased: f64,
    /// All rewards equal: no learning signal.
    pub zero_variance: bool,
    /// Share of members with reward ≥ 1.
    pub solve_rate: f64,
    /// Advantages under several conventions.
    pub advantages: Advantages,
    /// Generated tokens over the members (DAPO token-mean denominators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_tokens: Option<u64>,
    /// The longest member, in generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
    /// Members cut by the token limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<usize>,
    /// Members' digests, in sample order.
    #[serde(default)]
    pub members: Vec<String>,
    /// Merkle root of the members' digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merkle_root: Option<String>,
    /// Dynamic sampling: the round whose samples are the members (earlier zero-variance
    /// rounds stay in the file as traj records but are not members).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<usize>,
    /// Zero-variance rounds discarded before this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discarded_zero_variance_rounds: Option<usize>,
}

/// Which standard deviation and ε GRPO's `(r − μ)/(σ + ε)` uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrpoNorm {
    /// verl's `compute_grpo_outcome_advantage` (the default): unbiased std, ε 1e-6; a group
    /// of one gets r/(1+ε).
    #[default]
    Verl,
    /// TRL's GRPOTrainer: unbiased std, ε 1e-4.
    Trl,
    /// Population std, ε 1e-6 (records written before the convention was named).
    Population,
}

fn population() -> GrpoNorm {
    GrpoNorm::Population
}

/// Per-member advantages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Advantages {
    /// GRPO: `(r − μ)/(σ + ε)`, σ and ε as `grpo_norm` says.
    pub grpo: Vec<f64>,
    /// GRPO's ε.
    pub grpo_eps: f64,
    /// The convention of `grpo` (absent in older records: population).
    #[serde(default = "population")]
    pub grpo_norm: GrpoNorm,
    /// Dr. GRPO: `r − μ`.
    pub dr_grpo: Vec<f64>,
    /// RLOO: each reward minus the mean of the others.
    pub rloo: Vec<f64>,
}

/// The JSON Schema of a trajectory file's lines, generated from [`Record`]: what
/// `docs/trajectory.schema.json` holds.
pub fn json_schema() -> Value {
    let mut schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<Record>()
        .to_value();
    if let Value::Object(o) = &mut schema {
        o.insert(
            "$id".into(),
            Value::String("https://verity.dev/schemas/verity.traj/1".into()),
        );
        o.insert(
            "title".into(),
            Value::String("verity.traj/1 — one line of a trajectory JSONL file".into()),
        );
        o.insert(
            "description".into(),
            Value::String(
                "Written by `verity run --record`, `verity rollout` and `verity chat --record`. \
                 Lines form a hash chain: integrity.prev is the previous line's \
                 integrity.digest; integrity.digest is the SHA-256 of the canonical JSON (keys \
                 sorted, no whitespace, floats at 15 significant digits) of the record without \
                 integrity.digest. `verity verify FILE` checks it. Token ids are the engine's \
                 own, never re-tokenised. Generated from runtime/src/trajectory/record.rs."
                    .into(),
            ),
        );
    }
    schema
}

/// A real record (`docs/trajectory.example.json`: the README's first command, recorded) for
/// tests of what reads records.
#[cfg(test)]
pub(crate) fn example_record() -> TrajRecord {
    let text = include_str!("../../../docs/trajectory.example.json");
    match serde_json::from_str::<Record>(text) {
        Ok(Record::Traj(t)) => t,
        other => panic!("the example is not a traj record: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published schema is the one these types generate. Regenerate with
    /// `scripts/regenerate-docs.sh` (or `VERITY_UPDATE_SCHEMA=1` on this test).
    #[test]
    fn schema_file_is_generated_from_the_types() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/trajectory.schema.json");
        let want = format!(
            "{}\n",
            serde_json::to_string_pretty(&json_schema()).unwrap()
        );
        if std::env::var_os("VERITY_UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/trajectory.schema.json is stale: regenerate it with scripts/regenerate-docs.sh"
        );
    }

    #[test]
    fn the_example_record_parses_and_round_trips() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/trajectory.example.json");
        let text = std::fs::read_to_string(path).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        let record: Record = serde_json::from_value(value.clone()).unwrap();
        let back = serde_json::to_value(&record).unwrap();
        // Name the fields that differ rather than printing two whole records.
        let differ: Vec<&String> = value
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, v)| back.get(k.as_str()) != Some(v))
            .map(|(k, _)| k)
            .collect();
        assert!(
            differ.is_empty() && back.as_object().map(|o| o.len()) == value.as_object().map(|o| o.len()),
            "fields that do not round-trip: {differ:?} (regenerate the example: scripts/regenerate-docs.sh)"
        );
    }

    #[test]
    fn a_misspelt_or_mistyped_field_is_an_error_that_names_it() {
        let e = serde_json::from_str::<Outcome>(r#"{"stop": "answer", "truncated": "no"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a boolean"), "{e}");
        let e = serde_json::from_str::<Record>(r#"{"kind": "traj", "schema": "verity.traj/1"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field"), "{e}");
    }

    #[test]
    fn logprobs_of_minus_infinity_are_null() {
        let v = serde_json::to_string(&vec![Logprob(-0.5), Logprob(f64::NEG_INFINITY)]).unwrap();
        assert_eq!(v, "[-0.5,null]");
        let back: Vec<Logprob> = serde_json::from_str(&v).unwrap();
        assert_eq!(back[1].0, f64::NEG_INFINITY);
    }
}
