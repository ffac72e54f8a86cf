//! Options shared by `verity run` (and later `chat` and `rollout`): which model, which
//! policy, which external MCP servers, which budgets — from flags, else the config file
//! (`~/.config/verity/config.toml` or `$VERITY_CONFIG`), else built-in defaults.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use serde::Deserialize;
use verity_policies::PolicyEngine;
use verity_runtime::{
    agent::AgentConfig,
    hub::{HubConfig, McpHub, ServerConfig},
    model::{
        callformat::CallFormat, ComputeDtype, EmbeddedModel, LoadOptions, ModelBackend,
        ModelSource, OpenAiConfig, OpenAiModel, Sampling, TeacherModel, ToolChoice,
    },
    rollout::LoadedTask,
    Caller, ToolGate,
};

#[derive(Debug, Clone, clap::Args)]
pub struct AgentOpts {
    /// Model: `tiny` (the generated test model), a model folder, a .gguf file, a Hugging
    /// Face id (`Qwen/Qwen3-4B`), or — with --base-url — the server's model name.
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// Use an OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama) at this URL
    /// (up to `/v1`) instead of the embedded engine.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Environment variable holding the server's API key [default: OPENAI_API_KEY].
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Ask the server for vLLM's token-id extensions (exact token ids for RL).
    #[arg(long)]
    pub vllm: bool,
    /// With --base-url: what the server's logprobs are (vLLM's `--logprobs-mode`, e.g.
    /// `processed_logprobs`), recorded with every trajectory; unset, records say unknown.
    #[arg(long)]
    pub logprobs_mode: Option<String>,
    /// Embedded engine: compute dtype — auto, f32, bf16 or f16 (default: f32 on the CPU,
    /// where the engine's own choice, f16, is several times slower; auto on a GPU).
    #[arg(long)]
    pub dtype: Option<String>,
    /// With --base-url: a JSON object merged into every request body, for server options
    /// the OpenAI schema lacks (e.g. llama.cpp's `{"logit_bias": {"151657": 5},
    /// "repeat_last_n": 1}`, vLLM's `{"chat_template_kwargs": {"enable_thinking": false}}`).
    /// Recorded with every trajectory.
    #[arg(long, value_name = "JSON")]
    pub extra_body: Option<String>,
    /// The tool-call layout replies are read in: hermes (Qwen, Hermes), llama3, mistral
    /// (default: detected from the model's chat template, or from the call markers).
    #[arg(long)]
    pub tool_format: Option<String>,
    /// Seconds to wait for the server's first byte, and at most between two chunks.
    #[arg(long)]
    pub http_timeout: Option<f64>,
    /// Retries of a request that failed before the reply started (connection, 429, 5xx).
    #[arg(long)]
    pub http_retries: Option<u32>,
    /// Permission policy: a preset (default, strict, trusted) or a TOML file.
    #[arg(long, env = "VERITY_POLICY")]
    pub policy: Option<String>,
    /// Append an audit record of every policy decision to this JSONL file.
    #[arg(long, env = "VERITY_AUDIT")]
    pub audit: Option<PathBuf>,
    /// External MCP servers: a TOML file (`[servers.NAME]`) or an `mcpServers` JSON file.
    #[arg(long)]
    pub mcp: Option<PathBuf>,
    /// Most model calls.
    #[arg(long)]
    pub max_turns: Option<usize>,
    /// Most generated tokens in the whole run.
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// Most tokens one model call may generate.
    #[arg(long)]
    pub max_tokens_per_call: Option<usize>,
    /// Wall-clock budget in seconds.
    #[arg(long)]
    pub max_time: Option<f64>,
    /// Constrain decoding so every tool call is a valid call of an offered tool.
    #[arg(long)]
    pub strict: bool,
    /// First call's tool choice: auto, none, required, or a tool name.
    #[arg(long)]
    pub tool_choice: Option<ToolChoice>,
    /// With --strict and a required/named first call: exactly this many calls.
    #[arg(long)]
    pub calls_per_turn: Option<usize>,
    /// A Lark grammar file every reply must follow (embedded engine; overrides --strict).
    #[arg(long)]
    pub grammar: Option<PathBuf>,
    /// Offer only these tools (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    pub tools: Option<Vec<String>>,
    /// Sampling temperature (omit for greedy decoding).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Top-k sampling (0: off).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sampling seed: the same seed draws the same run again (embedded engine: exactly;
    /// servers: as far as they honour seeds). Without one a sampled run draws a fresh
    /// seed and records it.
    #[arg(long)]
    pub seed: Option<u64>,
    /// System prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Approve every call the policy would ask about.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Config file (default: $VERITY_CONFIG or ~/.config/verity/config.toml).
    #[arg(long, env = "VERITY_CONFIG")]
    pub config: Option<PathBuf>,
}

/// `config.toml`: defaults for every option above.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub model: Option<String>,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub vllm: bool,
    pub logprobs_mode: Option<String>,
    pub dtype: Option<String>,
    /// A TOML table (`[extra_body]`) merged into every HTTP request body.
    pub extra_body: Option<toml::Table>,
    pub tool_format: Option<String>,
    pub http_timeout: Option<f64>,
    pub http_retries: Option<u32>,
    pub policy: Option<String>,
    pub audit: Option<PathBuf>,
    pub mcp: Option<PathBuf>,
    pub max_turns: Option<usize>,
    pub max_tokens: Option<u64>,
    pub max_tokens_per_call: Option<usize>,
    pub max_time: Option<f64>,
    #[serde(default)]
    pub strict: bool,
    pub tool_choice: Option<String>,
    pub tools: Option<Vec<String>>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub seed: Option<u64>,
    pub system: Option<String>,
    #[serde(default)]
    pub yes: bool,
    /// Sign every record written (run/chat `--record`, rollout) with this key, as
    /// `--sign` does (`~/` is the home directory).
    pub sign: Option<PathBuf>,
    /// Servers inline: `[mcp_servers.NAME]`.
    #[serde(default)]
    pub mcp_servers: BTreeMap<String, ServerConfig>,
}

impl ConfigFile {
    fn load(explicit: Option<&Path>) -> anyhow::Result<(Self, Option<PathBuf>)> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => match dirs::config_dir() {
                Some(d) => d.join("verity").join("config.toml"),
                None => return Ok((Self::default(), None)),
            },
        };
        if !path.exists() {
            anyhow::ensure!(
                explicit.is_none(),
                "config file {} does not exist",
                path.display()
            );
            return Ok((Self::default(), None));
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let cfg = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok((cfg, Some(path)))
    }
}

/// Everything resolved: flags over config over defaults.
pub struct Resolved {
    pub model: String,
    pub base_url: Option<String>,
    pub api_key_env: String,
    pub vllm: bool,
    pub logprobs_mode: Option<String>,
    pub extra_body: serde_json::Map<String, serde_json::Value>,
    pub dtype: Option<ComputeDtype>,
    pub tool_format: Option<CallFormat>,
    pub http_timeout: Option<f64>,
    pub http_retries: Option<u32>,
    pub policy: String,
    pub audit: Option<PathBuf>,
    pub hub: HubConfig,
    pub agent: AgentConfig,
    pub system: Option<String>,
    pub yes: bool,
    /// The config file's signing key, if it names one (a command's `--sign` wins).
    pub sign: Option<PathBuf>,
}

impl AgentOpts {
    pub fn resolve(self, caller: Caller) -> anyhow::Result<Resolved> {
        let (cfg, cfg_path) = ConfigFile::load(self.config.as_deref())?;
        let from = cfg_path
            .as_ref()
            .map(|p| format!(" (or `model` in {})", p.display()))
            .unwrap_or_default();
        let model = self.model.or(cfg.model).with_context(|| {
            format!(
                "no model given: pass --model (e.g. `--model tiny` for the generated test \
                 model, or a Hugging Face id like Qwen/Qwen3-4B){from}"
            )
        })?;
        let mut hub = match self.mcp.or(cfg.mcp) {
            Some(p) => HubConfig::load(&p)?,
            None => HubConfig::default(),
        };
        let inline = HubConfig::from_map(cfg.mcp_servers)
            .map_err(|e| anyhow::anyhow!("config mcp_servers: {e}"))?;
        hub.servers.extend(inline.servers);
        let tool_choice = match self.tool_choice {
            Some(c) => c,
            None => match cfg.tool_choice {
                Some(s) => s
                    .parse()
                    .map_err(|e: verity_runtime::model::EmptyToolChoice| {
                        anyhow::anyhow!("config tool_choice: {e}")
                    })?,
                None => ToolChoice::Auto,
            },
        };
        let temperature = self.temperature.or(cfg.temperature);
        let mut sampling = Sampling {
            temperature,
            top_p: self.top_p.or(cfg.top_p),
            top_k: self.top_k.or(cfg.top_k),
            seed: self.seed.or(cfg.seed),
            greedy: temperature.is_none_or(|t| t <= 0.0),
            ..Sampling::default()
        };
        if let Some(n) = self.max_tokens_per_call.or(cfg.max_tokens_per_call) {
            sampling.max_tokens = n;
        }
        let defaults = AgentConfig::default();
        let wall = self.max_time.or(cfg.max_time);
        if let Some(w) = wall {
            anyhow::ensure!(
                w > 0.0 && w.is_finite(),
                "--max-time must be a positive number of seconds"
            );
        }
        let agent = AgentConfig {
            max_turns: self
                .max_turns
                .or(cfg.max_turns)
                .unwrap_or(defaults.max_turns),
            max_tokens: self
                .max_tokens
                .or(cfg.max_tokens)
                .unwrap_or(defaults.max_tokens),
            wall_time: wall.map(Duration::from_secs_f64),
            strict: self.strict || cfg.strict,
            tool_choice,
            calls_per_turn: self.calls_per_turn.unwrap_or(1).max(1),
            parallel_tools: defaults.parallel_tools,
            sampling,
            caller,
            tool_allow_list: self.tools.or(cfg.tools),
            grammar: match &self.grammar {
                Some(p) => Some(
                    std::fs::read_to_string(p)
                        .with_context(|| format!("reading --grammar {}", p.display()))?,
                ),
                None => None,
            },
            call_only: Vec::new(),
        };
        Ok(Resolved {
            model,
            base_url: self.base_url.or(cfg.base_url),
            // Flags beat the config file, which beats the default.
            api_key_env: self
                .api_key_env
                .or(cfg.api_key_env)
                .unwrap_or_else(|| "OPENAI_API_KEY".into()),
            vllm: self.vllm || cfg.vllm,
            logprobs_mode: self.logprobs_mode.or(cfg.logprobs_mode),
            dtype: match self.dtype.or(cfg.dtype) {
                Some(d) => Some(d.parse().map_err(|e| anyhow::anyhow!("--dtype: {e}"))?),
                None => None,
            },
            extra_body: match (self.extra_body, cfg.extra_body) {
                (Some(flag), _) => match serde_json::from_str(&flag) {
                    Ok(serde_json::Value::Object(m)) => m,
                    Ok(other) => anyhow::bail!(
                        "--extra-body: expected a JSON object such as '{{\"repeat_last_n\": 1}}', \
                         not {other}"
                    ),
                    Err(e) => anyhow::bail!("--extra-body: not JSON ({e})"),
                },
                (None, Some(table)) => match serde_json::to_value(table)? {
                    serde_json::Value::Object(m) => m,
                    _ => serde_json::Map::new(),
                },
                (None, None) => serde_json::Map::new(),
            },
            tool_format: match self.tool_format.or(cfg.tool_format) {
                Some(f) => Some(
                    f.parse()
                        .map_err(|e| anyhow::anyhow!("--tool-format: {e}"))?,
                ),
                None => None,
            },
            http_timeout: self.http_timeout.or(cfg.http_timeout),
            http_retries: self.http_retries.or(cfg.http_retries),
            policy: self
                .policy
                .or(cfg.policy)
                .unwrap_or_else(|| "default".into()),
            audit: self.audit.or(cfg.audit),
            hub,
            agent,
            system: self.system.or(cfg.system),
            yes: self.yes || cfg.yes,
            sign: cfg.sign.map(|p| expand_home(&p)),
        })
    }
}

impl Resolved {
    pub fn policy_engine(&self) -> anyhow::Result<Arc<PolicyEngine>> {
        super::PolicyOpts {
            policy: self.policy.clone(),
            audit: self.audit.clone(),
        }
        .engine()
    }

    /// Loads (or connects to) the model. `concurrent`: several requests will run at once.
    pub async fn backend(&self, concurrent: bool) -> anyhow::Result<Arc<dyn ModelBackend>> {
        self.load_backend(concurrent, true).await
    }

    /// [`Self::backend`]; `spinner` draws a progress spinner on stderr (not under the TUI,
    /// which shows its own).
    pub async fn load_backend(
        &self,
        concurrent: bool,
        spinner: bool,
    ) -> anyhow::Result<Arc<dyn ModelBackend>> {
        if let Some(url) = &self.base_url {
            let mut cfg = OpenAiConfig::new(url.clone(), self.model.clone());
            cfg.api_key = std::env::var(&self.api_key_env).ok();
            cfg.vllm_extensions = self.vllm;
            cfg.logprobs_mode = self.logprobs_mode.clone();
            cfg.extra_body = self.extra_body.clone();
            cfg.tool_format = self.tool_format;
            if let Some(t) = self.http_timeout {
                anyhow::ensure!(t > 0.0 && t.is_finite(), "--http-timeout must be positive");
                cfg.first_byte_timeout = Duration::from_secs_f64(t);
                cfg.idle_timeout = Duration::from_secs_f64(t);
            }
            if let Some(r) = self.http_retries {
                cfg.max_retries = r;
            }
            return Ok(Arc::new(OpenAiModel::new(cfg)?));
        }
        Ok(Arc::new(self.load_embedded(concurrent, spinner).await?))
    }

    /// The scripted teacher over the embedded engine: it writes each of `tasks`' plans
    /// (`meta.solution`; a task without one is refused, the error prefixed with `flag`)
    /// and the model scores them. No prefix cache: on the CPU mistral.rs 0.8.1 never evicts
    /// it, and a bulk run of demonstrations grew to GBs and slowed ~2×
    /// (docs/engine-notes.md).
    pub async fn teacher(
        &self,
        tasks: &[LoadedTask],
        flag: &str,
        spinner: bool,
    ) -> anyhow::Result<Arc<TeacherModel>> {
        let plans = tasks
            .iter()
            .map(|t| t.task.teacher_plan())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
        let student = self.load_embedded(true, spinner).await?;
        Ok(Arc::new(TeacherModel::new(Arc::new(student), plans)))
    }

    /// The embedded engine (refused with --base-url). `no_prefix_cache`: needed for
    /// batched requests, exact logprobs of later turns, and bulk runs on the CPU
    /// (docs/engine-notes.md).
    pub async fn load_embedded(
        &self,
        no_prefix_cache: bool,
        spinner: bool,
    ) -> anyhow::Result<EmbeddedModel> {
        anyhow::ensure!(
            self.base_url.is_none(),
            "this needs the embedded engine; --base-url names an HTTP server"
        );
        anyhow::ensure!(
            self.extra_body.is_empty(),
            "--extra-body / extra_body is for HTTP servers (--base-url); the embedded engine \
             takes its settings as flags"
        );
        let source = ModelSource::parse(&self.model)?;
        let spinner = if spinner {
            let s = indicatif::ProgressBar::new_spinner()
                .with_message(format!("loading {}", self.model));
            s.enable_steady_tick(Duration::from_millis(100));
            s
        } else {
            indicatif::ProgressBar::hidden()
        };
        let started = std::time::Instant::now();
        let options = LoadOptions {
            no_prefix_cache,
            tool_format: self.tool_format,
            dtype: self.dtype,
            ..LoadOptions::default()
        };
        let model = EmbeddedModel::load(source, options).await;
        spinner.finish_and_clear();
        let model = model?;
        tracing::info!(
            "loaded {} in {:.2} s",
            self.model,
            started.elapsed().as_secs_f64()
        );
        Ok(model)
    }

    /// Built-in tools plus those of the external servers that started.
    pub async fn gate(&self) -> anyhow::Result<(ToolGate, McpHub)> {
        let hub = McpHub::start(&self.hub).await;
        let engine = self.policy_engine()?;
        let mut registry = super::builtin_tools(&engine)?;
        for t in hub.tools() {
            registry.register_dyn(t.clone());
        }
        Ok((ToolGate::new(registry, engine), hub))
    }
}

/// `~/x` → `$HOME/x` (a path in a config file is written by hand).
fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), dirs::home_dir()) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => p.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        opts: AgentOpts,
    }

    fn resolve(config: &str, args: &[&str]) -> Resolved {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config).unwrap();
        let mut argv = vec!["verity", "--config", path.to_str().unwrap()];
        argv.extend_from_slice(args);
        Cli::parse_from(argv).opts.resolve(Caller::cli()).unwrap()
    }

    /// A flag beats the config file; the config file beats the default.
    #[test]
    fn flags_beat_the_config_file() {
        let config = "model = \"from-config\"\napi_key_env = \"CONFIG_KEY\"\nmax_turns = 3\n";
        let r = resolve(config, &[]);
        assert_eq!(
            (r.model.as_str(), r.api_key_env.as_str(), r.agent.max_turns),
            ("from-config", "CONFIG_KEY", 3)
        );
        let r = resolve(
            config,
            &[
                "--model",
                "tiny",
                "--api-key-env",
                "FLAG_KEY",
                "--max-turns",
                "5",
            ],
        );
        assert_eq!(
            (r.model.as_str(), r.api_key_env.as_str(), r.agent.max_turns),
            ("tiny", "FLAG_KEY", 5)
        );
        let r = resolve("model = \"m\"\n", &[]);
        assert_eq!(r.api_key_env, "OPENAI_API_KEY");
    }
}
