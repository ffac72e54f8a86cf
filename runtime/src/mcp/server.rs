//! The MCP `ServerHandler`: lists the gated tools and routes `tools/call` through the
//! [`ToolGate`] with the client as caller.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use rmcp::{
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
        InputRequest, InputRequests, InputRequiredResult, ListToolsResult, PaginatedRequestParams,
        ProgressNotificationParam, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
    },
    service::{ElicitationMode, RequestContext},
    ErrorData as McpError, Peer, RoleServer, ServerHandler, ServiceExt,
};
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use verity_policies::{Caller, CallerKind};
use verity_tools::{CallContext, Progress, ToolSpec};

use crate::{
    approver::{Approval, ApprovalRequest, Approver},
    error::{Error, Result},
    gate::{CallEvent, CallObserver, CallRequest, ToolGate},
    mcp::http::Authenticated,
};

/// How long an elicitation (approval question to the client's user) may take.
const APPROVAL_TIMEOUT: Duration = Duration::from_secs(120);

/// Serves a [`ToolGate`] to one MCP client (stdio) or many (HTTP: one handler per session,
/// sharing the gate). Cheap to clone.
#[derive(Clone)]
pub struct McpServer {
    gate: ToolGate,
    tools: Arc<Vec<Tool>>,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("gate", &self.gate)
            .finish()
    }
}

fn to_mcp_tool(spec: &ToolSpec) -> Tool {
    let object = |v: &Value| match v {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    let a = spec.annotations;
    let mut annotations = ToolAnnotations::new()
        .read_only(a.read_only)
        .destructive(a.destructive)
        .idempotent(a.idempotent)
        .open_world(a.open_world);
    annotations.title = spec.title.clone();
    let mut tool = Tool::new(
        spec.name.clone(),
        spec.description.clone(),
        Arc::new(object(&spec.input_schema)),
    )
    .with_annotations(annotations);
    if let Some(title) = &spec.title {
        tool = tool.with_title(title.clone());
    }
    if let Some(out) = &spec.output_schema {
        tool = tool.with_raw_output_schema(Arc::new(object(out)));
    }
    tool
}

impl McpServer {
    /// A server over the gate's tools.
    pub fn new(gate: ToolGate) -> Self {
        let tools = gate.specs().iter().map(to_mcp_tool).collect();
        Self {
            gate,
            tools: Arc::new(tools),
        }
    }

    /// Who is calling, for policies and budgets: `mcp-client:TOKEN_NAME` when the request
    /// carried a bearer token, else plain `mcp-client`. The name a client gives itself
    /// (`initialize`, or `_meta` on the stateless protocol) is whatever the client claims —
    /// a client calling itself "ops" must not match `mcp-client:ops` rules, nor reset its
    /// budget by picking a fresh name — so it is only a label in the logs.
    fn caller(ctx: &RequestContext<RoleServer>) -> Caller {
        let token_name = ctx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<Authenticated>())
            .map(|a| a.token_name.clone());
        let claimed = ctx
            .peer
            .peer_info()
            .map(|i| i.client_info.name.clone())
            .or_else(|| ctx.meta.client_info().map(|i| i.name));
        tracing::debug!(
            token = token_name.as_deref().unwrap_or("-"),
            client_name = claimed.as_deref().unwrap_or("-"),
            "MCP request"
        );
        Caller::new(CallerKind::McpClient, token_name.unwrap_or_default())
    }
}

/// The answer form shown by clients that support elicitation.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct ApprovalForm {
    /// Allow this tool call to run?
    approve: bool,
}
rmcp::elicit_safe!(ApprovalForm);

/// Approves `ask` decisions by asking the client's user (MCP elicitation), or denies with
/// a reason when the client cannot be asked.
struct ElicitApprover {
    peer: Peer<RoleServer>,
    caller: Caller,
}

impl Approver for ElicitApprover {
    fn approve<'a>(&'a self, r: &'a ApprovalRequest) -> BoxFuture<'a, Approval> {
        Box::pin(async move {
            let by = self.caller.to_string();
            if !self
                .peer
                .supported_elicitation_modes()
                .contains(&ElicitationMode::Form)
            {
                return Approval::Denied {
                    by,
                    reason: no_elicitation_reason(r),
                };
            }
            let message = approval_message(r);
            match self
                .peer
                .elicit_with_timeout::<ApprovalForm>(message, Some(APPROVAL_TIMEOUT))
                .await
            {
                Ok(Some(ApprovalForm { approve: true })) => Approval::Approved { by },
                Ok(_) => Approval::Denied {
                    by,
                    reason: "the user did not approve the call".into(),
                },
                Err(e) => Approval::Denied {
                    by,
                    reason: format!("approval could not be obtained: {e}"),
                },
            }
        })
    }
}

/// Key of Verity's approval question in a 2026-07-28 `InputRequiredResult`.
const APPROVAL_INPUT_KEY: &str = "verity/approval";

/// Approval on the stateless 2026-07-28 protocol, where a server may not send requests to
/// the client: the answer arrives in the retried call's `inputResponses`; without one,
/// the approver notes that it must ask (and the call is answered with an
/// `InputRequiredResult`) or, if the client cannot elicit, denies.
struct StatelessApprover {
    caller: Caller,
    answer: Option<Value>,
    can_elicit: bool,
    needs_input: std::sync::Mutex<Option<String>>,
}

impl Approver for StatelessApprover {
    fn approve<'a>(&'a self, r: &'a ApprovalRequest) -> BoxFuture<'a, Approval> {
        Box::pin(async move {
            let by = self.caller.to_string();
            match &self.answer {
                Some(answer) => {
                    let accepted =
                        answer["action"] == "accept" && answer["content"]["approve"] == true;
                    if accepted {
                        Approval::Approved { by }
                    } else {
                        Approval::Denied {
                            by,
                            reason: "the user did not approve the call".into(),
                        }
                    }
                }
                None if self.can_elicit => {
                    if let Ok(mut slot) = self.needs_input.lock() {
                        *slot = Some(approval_message(r));
                    }
                    Approval::Denied {
                        by,
                        reason: "awaiting the user's approval".into(),
                    }
                }
                None => Approval::Denied {
                    by,
                    reason: no_elicitation_reason(r),
                },
            }
        })
    }
}

fn approval_message(r: &ApprovalRequest) -> String {
    let args = serde_json::to_string_pretty(&r.args).unwrap_or_default();
    format!(
        "Allow the tool call '{}'?\nArguments:\n{args}\nPolicy rule '{}': {}",
        r.tool, r.decision.rule_id, r.decision.reason
    )
}

fn no_elicitation_reason(r: &ApprovalRequest) -> String {
    format!(
        "policy rule '{}' requires approval for '{}', and this client does not support elicitation, so it cannot be asked",
        r.decision.rule_id, r.tool
    )
}

/// The `InputRequiredResult` asking the client's user to approve.
fn approval_input_required(message: String) -> std::result::Result<InputRequiredResult, McpError> {
    let request = serde_json::json!({
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": message,
            "requestedSchema": {
                "type": "object",
                "properties": {"approve": {"type": "boolean", "description": "Allow this tool call to run?"}},
                "required": ["approve"]
            }
        }
    });
    let request: InputRequest = serde_json::from_value(request).map_err(|e| {
        McpError::internal_error(format!("cannot build the approval request: {e}"), None)
    })?;
    let mut requests = InputRequests::new();
    requests.insert(APPROVAL_INPUT_KEY.to_owned(), request);
    Ok(InputRequiredResult::from_input_requests(requests))
}

/// One MCP call's life: tool progress goes to the client as `notifications/progress`
/// (in order, when the request carried a progress token), the finished call to the log.
struct McpCallObserver {
    caller: Caller,
    progress: Option<tokio::sync::mpsc::UnboundedSender<Progress>>,
}

impl McpCallObserver {
    fn new(caller: Caller, ctx: &RequestContext<RoleServer>) -> Self {
        let progress = ctx.meta.get_progress_token().map(|token| {
            let peer = ctx.peer.clone();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
            tokio::spawn(async move {
                while let Some(p) = rx.recv().await {
                    let mut param = ProgressNotificationParam::new(token.clone(), p.progress);
                    param.total = p.total;
                    param.message = p.message;
                    if peer.notify_progress(param).await.is_err() {
                        break;
                    }
                }
            });
            tx
        });
        Self { caller, progress }
    }
}

impl CallObserver for McpCallObserver {
    fn observe(&self, _call_id: &str, event: CallEvent<'_>) {
        match event {
            CallEvent::Progress(p) => {
                if let Some(tx) = &self.progress {
                    let _ = tx.send(p.clone());
                }
            }
            CallEvent::Finished(call) => tracing::info!(
                caller = %self.caller,
                tool = %call.decision.tool,
                decision = %call.decision.verdict,
                rule = %call.decision.rule_id,
                error = call.outcome.is_error(),
                ms = call.duration.as_millis() as u64,
                "tools/call"
            ),
            _ => {}
        }
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("verity", env!("CARGO_PKG_VERSION"))
                    .with_title("Verity sandboxed tools"),
            )
            .with_instructions(
                "Sandboxed, policy-gated tools. `calculator` evaluates math exactly. Every call \
                 is checked against a permission policy; a denied call returns an error result \
                 that names the rule.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools.as_ref().clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        let known = verity_policies::normalize_tool_name(&name)
            .ok()
            .is_some_and(|n| self.gate.registry().get(&n).is_some());
        if !known {
            let available: Vec<String> = self.tools.iter().map(|t| t.name.to_string()).collect();
            return Err(McpError::invalid_params(
                format!("unknown tool '{name}'; available: {}", available.join(", ")),
                None,
            ));
        }
        let caller = Self::caller(&context);
        let args = Value::Object(request.arguments.unwrap_or_default());
        let ctx = CallContext {
            cancel: context.ct.child_token(),
            ..CallContext::default()
        };
        let observer: Arc<dyn CallObserver> =
            Arc::new(McpCallObserver::new(caller.clone(), &context));
        // Handshake-era sessions get a server-to-client elicitation; the stateless protocol
        // (no `initialize`) gets an InputRequiredResult and the answer on the retry.
        let stateless = context.peer.peer_info().is_none();
        let (call, needs_input) = if stateless {
            let can_elicit = context
                .meta
                .client_capabilities()
                .is_some_and(|c| c.elicitation.is_some());
            let approver = StatelessApprover {
                caller: caller.clone(),
                answer: request
                    .input_responses
                    .as_ref()
                    .and_then(|r| r.get(APPROVAL_INPUT_KEY))
                    .cloned(),
                can_elicit,
                needs_input: std::sync::Mutex::new(None),
            };
            let request = CallRequest {
                id: "",
                caller: &caller,
                name: &name,
                args,
            };
            let call = self.gate.call(request, &approver, ctx, &observer).await;
            let needs = approver.needs_input.lock().ok().and_then(|mut s| s.take());
            (call, needs)
        } else {
            let approver = ElicitApprover {
                peer: context.peer.clone(),
                caller: caller.clone(),
            };
            (
                self.gate
                    .call(
                        CallRequest {
                            id: "",
                            caller: &caller,
                            name: &name,
                            args,
                        },
                        &approver,
                        ctx,
                        &observer,
                    )
                    .await,
                None,
            )
        };
        if let Some(message) = needs_input {
            return Ok(approval_input_required(message)?.into());
        }
        let result = match (call.outcome.failure, call.outcome.structured) {
            (None, Some(structured)) => CallToolResult::structured(structured),
            (None, None) => CallToolResult::success(vec![ContentBlock::text(call.outcome.text)]),
            (Some(_), _) => CallToolResult::error(vec![ContentBlock::text(call.outcome.text)]),
        };
        Ok(result.into())
    }
}

/// Serves over stdin/stdout until the client disconnects or `shutdown` fires.
pub async fn serve_stdio(server: McpServer, shutdown: CancellationToken) -> Result<()> {
    let running = server
        .serve(rmcp::transport::io::stdio_pipes())
        .await
        .map_err(|e| Error::Mcp(format!("stdio handshake failed: {e}")))?;
    let ct = running.cancellation_token();
    tokio::select! {
        r = running.waiting() => {
            r.map_err(|e| Error::Mcp(e.to_string()))?;
        }
        () = shutdown.cancelled() => ct.cancel(),
    }
    Ok(())
}
