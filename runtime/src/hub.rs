//! The MCP client hub: external MCP servers (stdio subprocesses or streamable-HTTP URLs)
//! whose tools join the agent's under `server.tool` names and pass through the same
//! policy gate as the built-in ones.
//!
//! Servers start concurrently, each under its own start timeout; one that fails is
//! reported and skipped, the others work. A server whose connection dies is restarted on
//! its next call (the failed call itself is reported, never silently retried — a tool
//! call may not be idempotent).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use futures::future::BoxFuture;
use rmcp::{
    model::CallToolRequestParams,
    service::RunningService,
    transport::{
        streamable_http_client::StreamableHttpClientTransportConfig, StreamableHttpClientTransport,
        TokioChildProcess,
    },
    RoleClient, ServiceExt,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;
use verity_tools::{
    Annotations, CallContext, DynTool, FailureKind, Limits, ToolFailure, ToolOutcome, ToolSpec,
};

/// How to reach one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Transport {
    /// A subprocess speaking MCP on stdin/stdout.
    Stdio {
        /// Program.
        command: String,
        /// Arguments.
        #[serde(default)]
        args: Vec<String>,
        /// Extra environment.
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Working directory.
        #[serde(default)]
        cwd: Option<PathBuf>,
    },
    /// A streamable-HTTP endpoint.
    Http {
        /// `http(s)://host:port/mcp`.
        url: String,
        /// Bearer token.
        #[serde(default)]
        token: Option<String>,
        /// Environment variable holding the bearer token (keeps secrets out of files).
        #[serde(default)]
        token_env: Option<String>,
    },
}

/// One external server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerConfig {
    /// Prefix of its tools' names.
    #[serde(skip)]
    pub name: String,
    /// How to reach it.
    #[serde(flatten)]
    pub transport: Transport,
    /// Seconds to connect and list tools.
    #[serde(default = "default_start_timeout")]
    pub start_timeout_s: u64,
    /// Seconds one call may take.
    #[serde(default = "default_call_timeout")]
    pub call_timeout_s: u64,
    /// Skip this server.
    #[serde(default)]
    pub disabled: bool,
}

fn default_start_timeout() -> u64 {
    30
}
fn default_call_timeout() -> u64 {
    120
}

/// A set of servers, from `--mcp FILE` or the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubConfig {
    /// Servers by name.
    pub servers: Vec<ServerConfig>,
}

/// A hub config that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct HubConfigError {
    /// The file.
    pub path: String,
    /// What is wrong (with the line and field where the parser knows them).
    pub message: String,
}

/// A server name that cannot prefix tool names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server name '{0}': use ASCII letters, digits, '_' or '-' (it prefixes tool names)")]
pub struct BadServerName(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    #[serde(default)]
    servers: BTreeMap<String, ServerConfig>,
}

#[derive(Deserialize)]
struct JsonFile {
    #[serde(rename = "mcpServers", alias = "servers")]
    servers: BTreeMap<String, ServerConfig>,
}

impl HubConfig {
    /// Reads a TOML file (`[servers.NAME]` tables) or a JSON file in the `mcpServers`
    /// format MCP clients such as Claude Desktop use.
    pub fn load(path: &Path) -> Result<Self, HubConfigError> {
        let err = |message: String| HubConfigError {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let servers = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str::<JsonFile>(&text)
                .map_err(|e| err(format!("line {} column {}: {e}", e.line(), e.column())))?
                .servers
        } else {
            toml::from_str::<TomlFile>(&text)
                .map_err(|e| err(e.to_string()))?
                .servers
        };
        Self::from_map(servers).map_err(|e| err(e.to_string()))
    }

    /// From `name → server` (also used for the config file's `[mcp.servers]`).
    pub fn from_map(servers: BTreeMap<String, ServerConfig>) -> Result<Self, BadServerName> {
        let mut out = Vec::new();
        for (name, mut s) in servers {
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                return Err(BadServerName(name));
            }
            s.name = name;
            if !s.disabled {
                out.push(s);
            }
        }
        Ok(Self { servers: out })
    }
}

/// How a server's start went.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    /// Server name.
    pub name: String,
    /// Tools it offers (prefixed names), empty when it failed.
    pub tools: Vec<String>,
    /// Why it is unavailable.
    pub error: Option<String>,
}

type Client = RunningService<RoleClient, ()>;

struct Server {
    config: ServerConfig,
    client: Mutex<Option<Arc<Client>>>,
}

impl Server {
    async fn connect(&self) -> Result<Arc<Client>, String> {
        let timeout = Duration::from_secs(self.config.start_timeout_s.max(1));
        let connect = async {
            match &self.config.transport {
                Transport::Stdio {
                    command,
                    args,
                    env,
                    cwd,
                } => {
                    let mut cmd = tokio::process::Command::new(command);
                    cmd.args(args).envs(env);
                    if let Some(cwd) = cwd {
                        cmd.current_dir(cwd);
                    }
                    let (transport, _stderr) = TokioChildProcess::builder(cmd)
                        .stderr(std::process::Stdio::inherit())
                        .spawn()
                        .map_err(|e| format!("starting `{command}`: {e}"))?;
                    ().serve(transport)
                        .await
                        .map_err(|e| format!("MCP handshake with `{command}` failed: {e}"))
                }
                Transport::Http {
                    url,
                    token,
                    token_env,
                } => {
                    let mut cfg = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                    let token = match token_env {
                        Some(var) => Some(std::env::var(var).map_err(|_| {
                            format!("token_env: environment variable {var} is not set")
                        })?),
                        None => token.clone(),
                    };
                    if let Some(t) = token {
                        cfg = cfg.auth_header(t);
                    }
                    let transport = StreamableHttpClientTransport::from_config(cfg);
                    ().serve(transport)
                        .await
                        .map_err(|e| format!("MCP handshake with {url} failed: {e}"))
                }
            }
        };
        let client = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| format!("did not start within {} s", timeout.as_secs()))??;
        let client = Arc::new(client);
        *self.client.lock().await = Some(client.clone());
        Ok(client)
    }

    /// The live connection, reconnecting if the last one died.
    async fn live(&self) -> Result<Arc<Client>, String> {
        let current = self.client.lock().await.clone();
        match current {
            Some(c) if !c.is_closed() => Ok(c),
            _ => {
                tracing::info!(server = %self.config.name, "(re)connecting MCP server");
                self.connect().await
            }
        }
    }
}

/// The running servers and their tools.
pub struct McpHub {
    tools: Vec<Arc<dyn DynTool>>,
    statuses: Vec<ServerStatus>,
}

impl std::fmt::Debug for McpHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpHub")
            .field("statuses", &self.statuses)
            .finish()
    }
}

impl McpHub {
    /// Starts every server concurrently and lists its tools. Never fails as a whole: a
    /// server that does not start shows up in [`McpHub::statuses`] with its error.
    pub async fn start(config: &HubConfig) -> Self {
        let starts = config.servers.iter().map(|cfg| async move {
            let server = Arc::new(Server {
                config: cfg.clone(),
                client: Mutex::new(None),
            });
            let listed = async {
                let client = server.connect().await?;
                let timeout = Duration::from_secs(cfg.start_timeout_s.max(1));
                tokio::time::timeout(timeout, client.list_all_tools())
                    .await
                    .map_err(|_| format!("listing tools took over {} s", timeout.as_secs()))?
                    .map_err(|e| format!("listing tools failed: {e}"))
            }
            .await;
            (server, listed)
        });
        let results = futures::future::join_all(starts).await;
        let mut tools: Vec<Arc<dyn DynTool>> = Vec::new();
        let mut statuses = Vec::new();
        for (server, listed) in results {
            let name = server.config.name.clone();
            match listed {
                Ok(remote) => {
                    let mut names = Vec::new();
                    for t in remote {
                        match RemoteTool::new(server.clone(), t) {
                            Ok(tool) => {
                                names.push(tool.spec.name.clone());
                                tools.push(Arc::new(tool));
                            }
                            Err(e) => tracing::warn!(server = %name, "skipping a tool: {e}"),
                        }
                    }
                    statuses.push(ServerStatus {
                        name,
                        tools: names,
                        error: None,
                    });
                }
                Err(error) => {
                    tracing::warn!(server = %name, %error, "MCP server unavailable");
                    statuses.push(ServerStatus {
                        name,
                        tools: Vec::new(),
                        error: Some(error),
                    });
                }
            }
        }
        Self { tools, statuses }
    }

    /// Tools of the servers that started (register them with the gate's registry).
    pub fn tools(&self) -> &[Arc<dyn DynTool>] {
        &self.tools
    }

    /// How each server's start went.
    pub fn statuses(&self) -> &[ServerStatus] {
        &self.statuses
    }
}

/// One external tool, callable like a built-in.
struct RemoteTool {
    server: Arc<Server>,
    remote_name: String,
    spec: ToolSpec,
}

impl RemoteTool {
    fn new(server: Arc<Server>, t: rmcp::model::Tool) -> Result<Self, String> {
        let full = format!("{}.{}", server.config.name, t.name);
        let name = verity_policies::normalize_tool_name(&full).map_err(|e| e.to_string())?;
        let a = t.annotations.clone().unwrap_or_default();
        // MCP's defaults for missing hints: not read-only, destructive, not idempotent,
        // open-world — the cautious reading, so policies treat unknown tools as risky.
        let annotations = Annotations {
            read_only: a.read_only_hint.unwrap_or(false),
            destructive: a.destructive_hint.unwrap_or(true),
            idempotent: a.idempotent_hint.unwrap_or(false),
            open_world: a.open_world_hint.unwrap_or(true),
        };
        let call_ms = server.config.call_timeout_s.max(1) * 1000;
        let spec = ToolSpec {
            name,
            title: t.title.clone(),
            description: t
                .description
                .as_deref()
                .map(str::to_owned)
                .unwrap_or_default(),
            input_schema: Value::Object((*t.input_schema).clone()),
            output_schema: t
                .output_schema
                .as_ref()
                .map(|s| Value::Object((**s).clone())),
            annotations,
            limits: Limits {
                wall_ms: Some(call_ms),
                ..Limits::default()
            },
            enforces_wall_limit: false,
            // Remote progress notifications are not forwarded (yet).
            reports_progress: false,
        };
        Ok(Self {
            remote_name: t.name.to_string(),
            server,
            spec,
        })
    }

    async fn call(&self, args: Value, _ctx: CallContext) -> ToolOutcome {
        let Value::Object(arguments) = args else {
            return ToolOutcome::failed(ToolFailure::invalid_arguments(
                "arguments must be a JSON object",
            ));
        };
        let client = match self.server.live().await {
            Ok(c) => c,
            Err(e) => {
                return ToolOutcome::failed(ToolFailure::execution(format!(
                    "MCP server '{}' is unavailable: {e}",
                    self.server.config.name
                )))
            }
        };
        let params = CallToolRequestParams::new(self.remote_name.clone()).with_arguments(arguments);
        match client.call_tool(params).await {
            Ok(result) => {
                let text: Vec<String> = result
                    .content
                    .iter()
                    .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                    .collect();
                let mut text = text.join("\n");
                if text.is_empty() {
                    if let Some(s) = &result.structured_content {
                        text = s.to_string();
                    }
                }
                if result.is_error == Some(true) {
                    ToolOutcome {
                        text,
                        structured: None,
                        failure: Some(FailureKind::Execution),
                    }
                } else {
                    ToolOutcome {
                        text,
                        structured: result.structured_content,
                        failure: None,
                    }
                }
            }
            Err(e) => ToolOutcome::failed(ToolFailure::execution(format!(
                "MCP server '{}': {e}",
                self.server.config.name
            ))),
        }
    }
}

impl DynTool for RemoteTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call_json(&self, args: Value, ctx: CallContext) -> BoxFuture<'_, ToolOutcome> {
        Box::pin(self.call(args, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_claude_desktop_json_configs() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("mcp.toml");
        std::fs::write(
            &toml_path,
            "[servers.local]\ncommand = \"verity\"\nargs = [\"serve\"]\n\n\
             [servers.remote]\nurl = \"http://127.0.0.1:1/mcp\"\ntoken_env = \"T\"\ncall_timeout_s = 5\n",
        )
        .unwrap();
        let c = HubConfig::load(&toml_path).unwrap();
        assert_eq!(c.servers.len(), 2);
        assert!(matches!(c.servers[0].transport, Transport::Stdio { .. }));
        assert_eq!(c.servers[1].call_timeout_s, 5);

        let json_path = dir.path().join("claude.json");
        std::fs::write(
            &json_path,
            r#"{"mcpServers": {"fs": {"command": "npx", "args": ["x"], "env": {"A": "b"}}}}"#,
        )
        .unwrap();
        let c = HubConfig::load(&json_path).unwrap();
        assert_eq!(c.servers[0].name, "fs");

        std::fs::write(&toml_path, "[servers.\"bad name\"]\ncommand = \"x\"\n").unwrap();
        let e = HubConfig::load(&toml_path).unwrap_err().to_string();
        assert!(e.contains("bad name"), "{e}");
        std::fs::write(&toml_path, "[servers.x]\nnothing = 1\n").unwrap();
        assert!(HubConfig::load(&toml_path).is_err());
    }
}
