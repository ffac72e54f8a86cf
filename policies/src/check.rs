//! Inline `[[test]]` examples of a policy, run by `verity policy check`.

use serde::Serialize;
use serde_json::Value;

use crate::{
    engine::Policy,
    model::{Annotations, Caller, Request, Verdict},
};

/// One inline example: a request and the decision it must get.
#[derive(Debug, Clone, Serialize)]
pub struct TestCase {
    /// Optional name.
    pub name: Option<String>,
    /// Line in the policy file.
    pub line: usize,
    /// Caller (default `cli`).
    pub caller: Caller,
    /// Tool name.
    pub tool: String,
    /// Arguments.
    pub args: Value,
    /// Annotations (default: unknown).
    pub annotations: Option<Annotations>,
    /// Expected verdict.
    pub expect: Verdict,
    /// Expected deciding rule, if given.
    pub rule: Option<String>,
}

/// The result of one example.
#[derive(Debug, Clone, Serialize)]
pub struct TestOutcome {
    /// The example.
    pub case: TestCase,
    /// What the policy decided.
    pub got: Verdict,
    /// Which rule decided.
    pub got_rule: String,
    /// Whether it matched the expectation.
    pub passed: bool,
}

impl Policy {
    /// Runs every inline example (budgets are not charged).
    pub fn run_tests(&self) -> Vec<TestOutcome> {
        self.tests
            .iter()
            .map(|case| {
                let mut req = Request::new(&case.caller, &case.tool, &case.args);
                req.annotations = case.annotations;
                let d = self.decide(&req);
                let passed =
                    d.verdict == case.expect && case.rule.as_ref().is_none_or(|r| *r == d.rule_id);
                TestOutcome {
                    case: case.clone(),
                    got: d.verdict,
                    got_rule: d.rule_id,
                    passed,
                }
            })
            .collect()
    }
}
