//! Deciding: [`Policy::decide`] is pure; [`PolicyEngine`] adds budgets, atomic reload and
//! the audit log around it.

use std::{
    io,
    path::{Path as FsPath, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use globset::{GlobMatcher, GlobSet};

use crate::{
    audit::{AuditRecord, AuditSink},
    budget::Budgets,
    check::TestCase,
    condition::{AnnotationCondition, ArgCondition, Polarity},
    error::{PolicyError, Result},
    model::{
        Annotations, Budget, Caller, CallerKind, Decision, Limits, Request, RuleMatch, Verdict,
    },
    name::normalize_tool_name,
};

#[derive(Debug, Clone)]
pub(crate) struct CallerMatcher {
    pub kind: Option<CallerKind>,
    pub id: Option<GlobMatcher>,
}

impl CallerMatcher {
    fn matches(&self, c: &Caller) -> bool {
        self.kind.is_none_or(|k| k == c.kind) && self.id.as_ref().is_none_or(|g| g.is_match(&c.id))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub id: String,
    pub line: usize,
    pub verdict: Verdict,
    pub reason: Option<String>,
    pub callers: Vec<CallerMatcher>,
    pub conditions: Vec<ArgCondition>,
    pub annotations: Vec<AnnotationCondition>,
    pub limits: Limits,
}

impl Rule {
    fn matches(&self, req: &Request<'_>, annotations: &Annotations) -> bool {
        let polarity = match self.verdict {
            Verdict::Allow => Polarity::Narrow,
            Verdict::Ask | Verdict::Deny => Polarity::Widen,
        };
        (self.callers.is_empty() || self.callers.iter().any(|c| c.matches(req.caller)))
            && self.annotations.iter().all(|a| a.matches(annotations))
            && self
                .conditions
                .iter()
                .all(|c| c.matches(req.args, polarity))
    }
}

/// A compiled policy. Cheap to share (`Arc<Policy>`); deciding does no I/O and compiles
/// nothing.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The policy's name (`name =` in the file, else the file name).
    pub name: String,
    /// Free-text description.
    pub description: Option<String>,
    /// Where it came from (a path or `preset:NAME`).
    pub source: String,
    /// SHA-256 of the source text: which policy decided, in audit records.
    pub digest: String,
    pub(crate) default: Verdict,
    pub(crate) rules: Vec<Rule>,
    pub(crate) tool_globs: GlobSet,
    pub(crate) glob_owner: Vec<usize>,
    pub(crate) budget: Budget,
    pub(crate) max_args_bytes: u64,
    pub(crate) tests: Vec<TestCase>,
}

impl Policy {
    /// Parses and compiles a policy from TOML text; `file` names it in errors.
    pub fn from_toml_str(src: &str, file: &str) -> Result<Policy> {
        crate::load::parse(src, file)
    }

    /// Reads and compiles a policy file.
    pub fn from_file(path: &FsPath) -> Result<Policy> {
        let src = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&src, &path.display().to_string())
    }

    /// A preset by name, or a file if `name_or_path` is not a preset name.
    pub fn load(name_or_path: &str) -> Result<Policy> {
        match crate::presets::preset_source(name_or_path) {
            Some(src) => Self::from_toml_str(src, &format!("preset:{name_or_path}")),
            None if name_or_path.ends_with(".toml") || FsPath::new(name_or_path).exists() => {
                Self::from_file(FsPath::new(name_or_path))
            }
            None => Err(PolicyError::UnknownPreset(name_or_path.to_owned())),
        }
    }

    /// The decision when no rule matches.
    pub fn default_verdict(&self) -> Verdict {
        self.default
    }

    /// Budgets per caller.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The inline `[[test]]` examples.
    pub fn tests(&self) -> &[TestCase] {
        &self.tests
    }

    /// Decides a request. Deny beats ask beats allow regardless of rule order; the
    /// deciding rule is the first (in file order) with the winning verdict; limits are the
    /// tightest of every matching rule's.
    pub fn decide(&self, req: &Request<'_>) -> Decision {
        let tool = match normalize_tool_name(req.tool) {
            Ok(t) => t,
            Err(why) => {
                return Decision {
                    verdict: Verdict::Deny,
                    rule_id: "name.invalid".into(),
                    reason: format!("denied: {why}"),
                    limits: Limits::default(),
                    tool: req.tool.escape_default().to_string(),
                    matched: Vec::new(),
                }
            }
        };
        let size = args_size(req.args);
        if size > self.max_args_bytes {
            return Decision {
                verdict: Verdict::Deny,
                rule_id: "args.too-large".into(),
                reason: format!(
                    "denied: the arguments are {size} bytes; this policy allows at most {}",
                    self.max_args_bytes
                ),
                limits: Limits::default(),
                tool,
                matched: Vec::new(),
            };
        }
        let annotations = req.annotations.unwrap_or(Annotations::UNKNOWN);
        let mut candidates: Vec<usize> = self
            .tool_globs
            .matches(&tool)
            .into_iter()
            .map(|g| self.glob_owner[g])
            .collect();
        candidates.sort_unstable();
        candidates.dedup();

        let mut matched = Vec::new();
        let mut best: Option<&Rule> = None;
        let mut limits = Limits::default();
        for i in candidates {
            let rule = &self.rules[i];
            if !rule.matches(req, &annotations) {
                continue;
            }
            matched.push(RuleMatch {
                rule_id: rule.id.clone(),
                verdict: rule.verdict,
                line: rule.line,
            });
            limits = limits.tighten(rule.limits);
            if best.is_none_or(|b| rule.verdict > b.verdict) {
                best = Some(rule);
            }
        }
        match best {
            Some(rule) => Decision {
                verdict: rule.verdict,
                rule_id: rule.id.clone(),
                reason: rule.reason.clone().unwrap_or_else(|| {
                    format!(
                        "{} by rule '{}' ({}:{})",
                        past_tense(rule.verdict),
                        rule.id,
                        self.source,
                        rule.line
                    )
                }),
                limits,
                tool,
                matched,
            },
            None => Decision {
                verdict: self.default,
                rule_id: "default".into(),
                reason: format!(
                    "{}: no rule of policy '{}' matches '{tool}', and the default is {}",
                    past_tense(self.default),
                    self.name,
                    self.default
                ),
                limits,
                tool,
                matched,
            },
        }
    }
}

fn past_tense(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "allowed",
        Verdict::Ask => "needs approval",
        Verdict::Deny => "denied",
    }
}

/// Serialised size of the arguments without allocating the text.
fn args_size(v: &serde_json::Value) -> u64 {
    struct Count(u64);
    impl io::Write for Count {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// A policy in force plus its state: budgets per caller, an optional audit sink, and
/// atomic reload (in-flight decisions keep the policy they started with).
pub struct PolicyEngine {
    current: RwLock<Arc<Policy>>,
    path: Option<PathBuf>,
    budgets: Budgets,
    audit: Option<AuditSink>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("policy", &self.policy().name)
            .field("path", &self.path)
            .finish()
    }
}

impl PolicyEngine {
    /// An engine over a compiled policy; `path` (if any) is what [`Self::reload`] re-reads.
    pub fn new(policy: Policy, path: Option<PathBuf>) -> Self {
        Self {
            current: RwLock::new(Arc::new(policy)),
            path,
            budgets: Budgets::default(),
            audit: None,
        }
    }

    /// Loads a preset name or a file path.
    pub fn load(name_or_path: &str) -> Result<Self> {
        let policy = Policy::load(name_or_path)?;
        let path = crate::presets::preset_source(name_or_path)
            .is_none()
            .then(|| PathBuf::from(name_or_path));
        Ok(Self::new(policy, path))
    }

    /// Writes an audit record of every decision to `sink`.
    #[must_use]
    pub fn with_audit(mut self, sink: AuditSink) -> Self {
        self.audit = Some(sink);
        self
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        match self.current.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The file this engine reloads from, if any.
    pub fn path(&self) -> Option<&FsPath> {
        self.path.as_deref()
    }

    /// Re-reads the policy file and swaps it in atomically. On error the old policy stays
    /// in force and the error is returned.
    pub fn reload(&self) -> Result<Arc<Policy>> {
        let Some(path) = &self.path else {
            return Ok(self.policy());
        };
        let fresh = Arc::new(Policy::from_file(path)?);
        match self.current.write() {
            Ok(mut p) => *p = Arc::clone(&fresh),
            Err(poisoned) => *poisoned.into_inner() = Arc::clone(&fresh),
        }
        Ok(fresh)
    }

    /// Decides a request, charges the caller's budget for allowed and asked calls, and
    /// writes the audit record.
    pub fn decide(&self, req: &Request<'_>) -> Decision {
        self.decide_at(req, Instant::now())
    }

    /// [`Self::decide`] at a given instant (for tests of rate limits).
    pub fn decide_at(&self, req: &Request<'_>, now: Instant) -> Decision {
        let policy = self.policy();
        let mut decision = policy.decide(req);
        if decision.verdict != Verdict::Deny {
            if let Err((rule, reason)) =
                self.budgets
                    .charge(req.caller, &decision.tool, &policy.budget, now)
            {
                decision.verdict = Verdict::Deny;
                decision.rule_id = rule.into();
                decision.reason = reason;
            }
        }
        if let Some(sink) = &self.audit {
            sink.write(&AuditRecord::new(req, &decision, &policy));
        }
        decision
    }

    /// Records execution time of a `code` call against the caller's session budget.
    pub fn record_code_time(&self, caller: &Caller, took: Duration) {
        self.budgets.record_code_time(caller, took);
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
