//! The single path of every tool call: policy → approval → tool, with limits and budgets.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Serialize;
use serde_json::Value;
use verity_policies::{Caller, Decision, PolicyEngine, Request, Verdict};
use verity_tools::{
    Annotations, CallContext, FailureKind, Limits, ToolFailure, ToolOutcome, ToolRegistry, ToolSpec,
};

use crate::approver::{Approval, ApprovalRequest, Approver};

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

impl GatedCall {
    /// Whether the tool ran.
    pub fn ran(&self) -> bool {
        self.outcome.failure != Some(FailureKind::Denied)
            && self.outcome.failure != Some(FailureKind::UnknownTool)
    }
}

/// A tool's annotations as policies see them.
pub fn to_policy_annotations(a: Annotations) -> verity_policies::Annotations {
    verity_policies::Annotations {
        read_only: a.read_only,
        destructive: a.destructive,
        idempotent: a.idempotent,
        open_world: a.open_world,
    }
}

fn to_tool_limits(l: verity_policies::Limits) -> Limits {
    Limits {
        wall_ms: l.wall_ms,
        memory_mb: l.memory_mb,
        output_kb: l.output_kb,
        fuel: l.fuel,
    }
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

    /// Decides, asks if needed, runs. Never panics on input; every refusal is a
    /// [`ToolOutcome`] failure the caller (or model) can read.
    pub async fn call(
        &self,
        caller: &Caller,
        name: &str,
        args: Value,
        approver: &dyn Approver,
        ctx: CallContext,
    ) -> GatedCall {
        // The policy normalises the name; the tool looked up is the one it judged.
        let normalized = verity_policies::normalize_tool_name(name).ok();
        let tool = normalized
            .as_deref()
            .and_then(|n| self.registry.get(n))
            .cloned();
        let mut request = Request::new(caller, name, &args);
        if let Some(t) = &tool {
            request = request.with_annotations(to_policy_annotations(t.spec().annotations));
        }
        let decision = self.policy.decide(&request);
        let denied = |decision: Decision, approval: Option<Approval>, message: String| GatedCall {
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
                return denied(decision, None, msg);
            }
            Verdict::Allow => None,
            Verdict::Ask => {
                let req = ApprovalRequest {
                    caller: caller.clone(),
                    tool: decision.tool.clone(),
                    args: args.clone(),
                    decision: decision.clone(),
                };
                let answer = approver.approve(&req).await;
                if let Approval::Denied { reason, .. } = &answer {
                    let msg = format!("not approved: {reason}");
                    return denied(decision, Some(answer), msg);
                }
                Some(answer)
            }
        };
        let limits = tool
            .spec()
            .limits
            .tighten(to_tool_limits(decision.limits))
            .tighten(ctx.limits);
        let ctx = CallContext {
            limits,
            caller: Some(caller_tag(caller).into()),
            ..ctx
        };
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

/// A caller as `kind:id` (what [`CallContext::caller`] carries).
pub fn caller_tag(caller: &Caller) -> String {
    format!("{}:{}", caller.kind.as_str(), caller.id)
}

/// The caller back from its tag; unknown tags read as the command line.
pub fn caller_from_tag(tag: Option<&str>) -> Caller {
    tag.and_then(|t| {
        let (kind, id) = t.split_once(':')?;
        Some(Caller::new(kind.parse().ok()?, id))
    })
    .unwrap_or_else(Caller::cli)
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
