//! Audit records: one JSON line per decision.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::Path,
    sync::{Arc, Mutex},
};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    engine::Policy,
    model::{Caller, Decision, Limits, Request, RuleMatch, Verdict},
};

/// What was decided, for whom, under which policy.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// RFC 3339 UTC time.
    pub time: String,
    /// Who asked.
    pub caller: Caller,
    /// Normalised tool name.
    pub tool: String,
    /// SHA-256 of the arguments' JSON text (the arguments themselves may be secret).
    pub args_digest: String,
    /// The verdict.
    pub decision: Verdict,
    /// The deciding rule.
    pub rule_id: String,
    /// The reason given to the caller.
    pub reason: String,
    /// Limits applied.
    pub limits: Limits,
    /// Rules that matched.
    pub matched: Vec<RuleMatch>,
    /// Policy name.
    pub policy: String,
    /// SHA-256 of the policy source.
    pub policy_digest: String,
}

impl AuditRecord {
    /// Builds the record of one decision.
    pub fn new(req: &Request<'_>, d: &Decision, policy: &Policy) -> Self {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let args_digest = hex::encode(Sha256::digest(req.args.to_string().as_bytes()));
        Self {
            time,
            caller: req.caller.clone(),
            tool: d.tool.clone(),
            args_digest,
            decision: d.verdict,
            rule_id: d.rule_id.clone(),
            reason: d.reason.clone(),
            limits: d.limits,
            matched: d.matched.clone(),
            policy: policy.name.clone(),
            policy_digest: policy.digest.clone(),
        }
    }
}

/// Where audit records go: an append-only JSONL file, and/or an in-memory subscriber
/// (the trajectory recorder).
#[derive(Clone)]
pub struct AuditSink {
    file: Option<Arc<Mutex<File>>>,
    subscriber: Option<Subscriber>,
}

type Subscriber = Arc<dyn Fn(&AuditRecord) + Send + Sync>;

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink")
            .field("file", &self.file.is_some())
            .finish()
    }
}

impl AuditSink {
    /// Appends to a JSONL file (created if missing).
    pub fn file(path: &Path) -> std::io::Result<Self> {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file: Some(Arc::new(Mutex::new(f))),
            subscriber: None,
        })
    }

    /// Calls `f` with every record.
    pub fn subscriber(f: impl Fn(&AuditRecord) + Send + Sync + 'static) -> Self {
        Self {
            file: None,
            subscriber: Some(Arc::new(f)),
        }
    }

    pub(crate) fn write(&self, record: &AuditRecord) {
        if let Some(sub) = &self.subscriber {
            sub(record);
        }
        if let Some(file) = &self.file {
            if let Ok(mut line) = serde_json::to_vec(record) {
                line.push(b'\n');
                let mut f = match file.lock() {
                    Ok(f) => f,
                    Err(poisoned) => poisoned.into_inner(),
                };
                // One write call per line: concurrent processes appending to the same
                // file never interleave within a record.
                if let Err(e) = f.write_all(&line) {
                    eprintln!("verity: cannot write audit record: {e}");
                }
            }
        }
    }
}
