//! Verity's permission policies: may *this caller* call *this tool* with *these arguments*
//! now? The answer is `allow`, `ask` or `deny`, with the rule that decided, a reason for
//! the caller, and the resource limits that apply.
//!
//! Pure and synchronous: a policy is parsed and compiled once (globs, regexes, paths);
//! [`Policy::decide`] does no I/O and no compilation. [`PolicyEngine`] adds what needs
//! state — budgets per caller, atomic reload, the audit log.
//!
//! Semantics: deny beats ask beats allow whatever the rule order; tool names are matched
//! after Unicode NFKC and case folding, and names with invisible or non-ASCII characters
//! are denied outright; an invalid policy is refused at load with `file:line:column` — never
//! a fallback to "allow everything".
//!
//! ```
//! use verity_policies::{Caller, Policy, Request, Verdict};
//!
//! let policy = Policy::from_toml_str(r#"
//!     default = "ask"
//!     [[rule]]
//!     id = "calc-free"
//!     tool = "calculator"
//!     decision = "allow"
//! "#, "inline.toml").unwrap();
//! let caller = Caller::cli();
//! let args = serde_json::json!({"expression": "1+1"});
//! let decision = policy.decide(&Request::new(&caller, "Calculator", &args));
//! assert_eq!(decision.verdict, Verdict::Allow);
//! assert_eq!(decision.rule_id, "calc-free");
//! ```
#![deny(missing_docs)]

mod audit;
mod budget;
mod check;
mod condition;
mod engine;
mod error;
mod load;
mod model;
mod name;
mod presets;

pub use audit::{AuditRecord, AuditSink};
pub use check::{TestCase, TestOutcome};
pub use engine::{Policy, PolicyEngine};
pub use error::{PolicyError, Result};
pub use model::{
    Annotations, Budget, Caller, CallerKind, Decision, Limits, Request, RuleMatch, Verdict,
};
pub use name::{normalize_tool_name, InvalidToolName};
pub use presets::PRESETS;
