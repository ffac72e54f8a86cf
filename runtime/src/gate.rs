//! The single path of every tool call: policy → approval → tool, with limits and budgets.
//! The gate also reports each call's whole life, in order, to a [`CallObserver`]: the
//! decision, the approval question and its answer, the start, every progress report, and
//! the result. The agent turns these into events for the TUI, `run --json` and the
//! recorder; the MCP server into progress notifications and its log; `tools call` into
//! progress lines on stderr.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Serialize;
use serde_json::Value;
use verity_policies::{Caller, Decision, PolicyEngine, Request, Verdict};
use verity_tools::{
    CallContext, FailureKind, Limits, Progress, ProgressSink, ToolFailure, ToolOutcome,
    ToolRegistry, ToolSpec,
};

use crate::approver::{Approval, ApprovalRequest, Approver};

/// One step in the life of a gated call. A call goes through them in this order:
/// `Decided`, then for an `ask` `ApprovalRequested` and `ApprovalResolved`, then — only if
/// the tool runs — `Started` and any number of `Progress`, and always last `Finished`.
#[derive(Debug, Clone, Copy)]
pub enum CallEvent<'a> {
    /// The policy decided.
    Decided(&'a Decision),
    /// The policy asked; the approver is being asked.
    ApprovalRequested(&'a ApprovalRequest),
    /// The approver answered.
    ApprovalResolved(&'a Approval),
    /// The tool starts, under these limits (the tool's own, tightened by the policy).
    Started(&'a Limits),
    /// The tool reported progress.
    Progress(&'a Progress),
    /// The call is over (ran, failed, or refused); this is what the caller gets back.
    Finished(&'a GatedCall),
}

/// Watches calls go through the gate. Called synchronously, in order, from the task that
/// runs the call (progress from wherever the tool reports it): keep it cheap — send to a
/// channel. One observer can watch many calls: each step names its call by the id the
/// caller gave in [`CallRequest::id`].
pub trait CallObserver: Send + Sync {
    /// One step of the call `call_id`.
    fn observe(&self, call_id: &str, event: CallEvent<'_>);
}

impl<F: Fn(&str, CallEvent<'_>) + Send + Sync> CallObserver for F {
    fn observe(&self, call_id: &str, event: CallEvent<'_>) {
        self(call_id, event)
    }
}

/// One call as the gate receives it.
#[derive(Debug, Clone)]
pub struct CallRequest<'a> {
    /// The caller's name for the call (the model's call id; any label elsewhere), handed
    /// back with every [`CallEvent`].
    pub id: &'a str,
    /// Who calls.
    pub caller: &'a Caller,
    /// The tool as the caller named it (the policy normalises it).
    pub name: &'a str,
    /// The arguments.
    pub args: Value,
}

/// An observer that ignores everything (a caller that only wants the result).
#[derive(Debug, Default, Clone, Copy)]
pub struct Unobserved;

impl CallObserver for Unobserved {
    fn observe(&self, _call_id: &str, _event: CallEvent<'_>) {}
}

/// Tools behind a policy. Cheap to clone.
#[derive(Clone)]
pub struct ToolGate {
    registry: ToolRegistry,
    policy: Arc<PolicyEngine>,
}

impl std::fmt::Debug for ToolGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolGate")
            .field("tools", &self.registry)
            .field("policy", &self.policy)
            .finish()
    }
}

/// Everything that happened to one call.
#[derive(Debug, Clone, Serialize)]
pub struct GatedCall {
    /// The policy's decision.
    pub decision: Decision,
    /// The approver's answer, when the policy asked.
    pub approval: Option<Approval>,
    /// The result the caller sees (a failure value when denied).
    pub outcome: ToolOutcome,
    /// Limits the tool ran under (tool defaults tightened by policy).
    pub limits: Limits,
    /// Wall time of the tool itself (zero when it did not run); `duration_ms` in JSON.
    #[serde(rename = "duration_ms", serialize_with = "as_millis")]
    pub duration: Duration,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_micros() as f64 / 1000.0)
}

impl ToolGate {
    /// Tools behind a policy engine.
    pub fn new(registry: ToolRegistry, policy: Arc<PolicyEngine>) -> Self {
        Self { registry, policy }
    }

    /// The tools.
    pub fn registry(&self) -> &ToolRegistry {
        &self.registry
    }

    /// The policy engine.
    pub fn policy(&self) -> &Arc<PolicyEngine> {
        &self.policy
    }

    /// Tool specs, sorted by name.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.registry.specs().cloned().collect()
    }

    /// Decides, asks if needed, runs; reports every step to `observer` (see [`CallEvent`]
    /// for the order). Never panics on input; every refusal is a [`ToolOutcome`] failure
    /// the caller (or model) can read. A tool's progress reports go to the observer
    /// (whatever `ctx.progress` held is replaced).
    pub async fn call(
        &self,
        request: CallRequest<'_>,
        approver: &dyn Approver,
        ctx: CallContext,
        observer: &Arc<dyn CallObserver>,
    ) -> GatedCall {
        let id = request.id;
        let call = self.decide_and_run(request, approver, ctx, observer).await;
        observer.observe(id, CallEvent::Finished(&call));
        call
    }

    async fn decide_and_run(
        &self,
        request: CallRequest<'_>,
        approver: &dyn Approver,
        ctx: CallContext,
        observer: &Arc<dyn CallObserver>,
    ) -> GatedCall {
        let CallRequest {
            id,
            caller,
            name,
            args,
        } = request;
        // The policy normalises the name; the tool looked up is the one it judged.
        let normalized = verity_policies::normalize_tool_name(name).ok();
        let tool = normalized
            .as_deref()
            .and_then(|n| self.registry.get(n))
            .cloned();
        let mut request = Request::new(caller, name, &args);
        if let Some(t) = &tool {
            request = request.with_annotations(t.spec().annotations);
        }
        let decision = self.policy.decide(&request);
        observer.observe(id, CallEvent::Decided(&decision));
        let refused = |decision: Decision, approval: Option<Approval>, message: String| GatedCall {
            decision,
            approval,
            outcome: ToolOutcome::failed(ToolFailure::new(FailureKind::Denied, message)),
            limits: Limits::default(),
            duration: Duration::ZERO,
        };
        let Some(tool) = tool else {
            // Nothing to approve or run; the decision is still made (and audited).
            let outcome = self.registry.call(&decision.tool, args, ctx).await;
            return GatedCall {
                decision,
                approval: None,
                outcome,
                limits: Limits::default(),
                duration: Duration::ZERO,
            };
        };
        let approval = match decision.verdict {
            Verdict::Deny => {
                let msg = format!(
                    "permission denied by policy rule '{}': {}",
                    decision.rule_id, decision.reason
                );
                return refused(decision, None, msg);
            }
            Verdict::Allow => None,
            Verdict::Ask => {
                let req = ApprovalRequest {
                    caller: caller.clone(),
                    tool: decision.tool.clone(),
                    args: args.clone(),
                    decision: decision.clone(),
                };
                observer.observe(id, CallEvent::ApprovalRequested(&req));
                let answer = approver.approve(&req).await;
                observer.observe(id, CallEvent::ApprovalResolved(&answer));
                if let Approval::Denied { reason, .. } = &answer {
                    let msg = format!("not approved: {reason}");
                    return refused(decision, Some(answer), msg);
                }
                Some(answer)
            }
        };
        let limits = tool
            .spec()
            .limits
            .tighten(decision.limits)
            .tighten(ctx.limits);
        // Only tools that report progress get a sink (it costs two allocations a call).
        let progress: Option<ProgressSink> = tool.spec().reports_progress.then(|| {
            let observer = Arc::clone(observer);
            let id: Arc<str> = id.into();
            Arc::new(move |p: Progress| observer.observe(&id, CallEvent::Progress(&p))) as _
        });
        let ctx = CallContext {
            limits,
            caller: Some(caller.clone()),
            progress,
            ..ctx
        };
        observer.observe(id, CallEvent::Started(&limits));
        let started = Instant::now();
        let backstop = (!tool.spec().enforces_wall_limit)
            .then_some(limits.wall_ms)
            .flatten();
        let outcome = run_with_wall_limit(tool.call_json(args, ctx.clone()), &ctx, backstop).await;
        let duration = started.elapsed();
        if decision.tool == "code" {
            self.policy.record_code_time(caller, duration);
        }
        GatedCall {
            decision,
            approval,
            outcome,
            limits,
            duration,
        }
    }
}

/// Extra time the backstop gives a tool past its wall-clock limit, so a tool that enforces
/// its own limit (and reports what it had so far) gets to answer first.
const BACKSTOP_GRACE: Duration = Duration::from_millis(1_000);

/// Enforces the wall-clock limit and cancellation around any tool (the tool may enforce
/// them more precisely itself; this is the backstop).
async fn run_with_wall_limit(
    fut: futures::future::BoxFuture<'_, ToolOutcome>,
    ctx: &CallContext,
    wall_ms: Option<u64>,
) -> ToolOutcome {
    let cancelled = ctx.cancel.clone();
    let limited = async {
        match wall_ms {
            Some(ms) => {
                match tokio::time::timeout(Duration::from_millis(ms) + BACKSTOP_GRACE, fut).await {
                    Ok(o) => o,
                    Err(_) => ToolOutcome::failed(ToolFailure::new(
                        FailureKind::Timeout,
                        format!("the call exceeded its wall-clock limit of {ms} ms"),
                    )),
                }
            }
            None => fut.await,
        }
    };
    tokio::select! {
        o = limited => o,
        () = cancelled.cancelled() => ToolOutcome::failed(ToolFailure::new(
            FailureKind::Cancelled,
            "the call was cancelled",
        )),
    }
}
