//! The TUI's [`Approver`]: an `ask` becomes an approval card and waits for a key. "Allow for
//! this session" adds a session rule (shown, listed by `/policy`, revocable) that answers
//! later `ask`s for the same tool. Session rules only ever turn an `ask` into a yes: the
//! policy's `deny` is decided before any approver is consulted, so they cannot widen it.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::{mpsc::UnboundedSender, oneshot};
use verity_runtime::{Approval, ApprovalRequest, Approver};

/// One "allow for this session" answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRule {
    /// `session-N`.
    pub id: String,
    /// Tool it allows (normalised name).
    pub tool: String,
}

/// The session's rules, shared by the approver and the UI.
#[derive(Debug, Clone, Default)]
pub struct SessionRules(Arc<Mutex<RulesInner>>);

#[derive(Debug, Default)]
struct RulesInner {
    rules: Vec<SessionRule>,
    next: usize,
}

impl SessionRules {
    /// Adds a rule allowing `tool`; returns it.
    pub fn allow(&self, tool: &str) -> SessionRule {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = g.rules.iter().find(|r| r.tool == tool) {
            return r.clone();
        }
        g.next += 1;
        let rule = SessionRule {
            id: format!("session-{}", g.next),
            tool: tool.to_owned(),
        };
        g.rules.push(rule.clone());
        rule
    }

    /// Removes a rule; whether it existed.
    pub fn revoke(&self, id: &str) -> Option<SessionRule> {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let i = g.rules.iter().position(|r| r.id == id)?;
        Some(g.rules.remove(i))
    }

    /// The rules, oldest first.
    pub fn list(&self) -> Vec<SessionRule> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rules
            .clone()
    }

    fn matching(&self, tool: &str) -> Option<SessionRule> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rules
            .iter()
            .find(|r| r.tool == tool)
            .cloned()
    }
}

/// An approval waiting for the person.
#[derive(Debug)]
pub struct PendingApproval {
    /// What is asked.
    pub request: ApprovalRequest,
    /// Where the answer goes (dropping it denies).
    pub reply: oneshot::Sender<Approval>,
}

/// Sends each `ask` to the UI and waits for the answer.
#[derive(Debug, Clone)]
pub struct TuiApprover {
    to_ui: UnboundedSender<PendingApproval>,
    rules: SessionRules,
}

impl TuiApprover {
    /// An approver feeding `to_ui`.
    pub fn new(to_ui: UnboundedSender<PendingApproval>, rules: SessionRules) -> Self {
        Self { to_ui, rules }
    }
}

impl Approver for TuiApprover {
    fn approve<'a>(&'a self, request: &'a ApprovalRequest) -> BoxFuture<'a, Approval> {
        Box::pin(async move {
            if let Some(rule) = self.rules.matching(&request.tool) {
                return Approval::Approved {
                    by: format!("user ({})", rule.id),
                };
            }
            let (tx, rx) = oneshot::channel();
            let pending = PendingApproval {
                request: request.clone(),
                reply: tx,
            };
            if self.to_ui.send(pending).is_err() {
                return Approval::Denied {
                    by: "tui".into(),
                    reason: "the chat window closed before anyone answered".into(),
                };
            }
            // The UI drops the sender when the turn is cancelled.
            rx.await.unwrap_or_else(|_| Approval::Denied {
                by: "user".into(),
                reason: "the turn was cancelled before the call was approved".into(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verity_runtime::{Caller, Decision};

    fn request(tool: &str) -> ApprovalRequest {
        ApprovalRequest {
            caller: Caller::cli(),
            tool: tool.into(),
            args: serde_json::json!({}),
            decision: Decision {
                verdict: verity_runtime::Verdict::Ask,
                rule_id: "default".into(),
                reason: String::new(),
                limits: Default::default(),
                tool: tool.into(),
                matched: Vec::new(),
            },
        }
    }

    #[tokio::test]
    async fn session_rule_answers_later_asks_and_can_be_revoked() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let rules = SessionRules::default();
        let approver = TuiApprover::new(tx, rules.clone());
        let rule = rules.allow("code");
        assert_eq!(rule.id, "session-1");
        assert_eq!(
            approver.approve(&request("code")).await,
            Approval::Approved {
                by: "user (session-1)".into()
            }
        );
        assert!(rules.revoke("session-1").is_some());
        // Now it asks; a dropped answer (cancelled turn) denies.
        let req = request("code");
        let ask = approver.approve(&req);
        let answer = tokio::spawn(async move {
            let p = rx.recv().await.unwrap();
            drop(p.reply);
        });
        let got = ask.await;
        answer.await.unwrap();
        assert!(matches!(got, Approval::Denied { .. }), "{got:?}");
    }
}
