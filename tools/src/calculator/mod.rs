//! The calculator tool: exact rational arithmetic where an exact answer exists, an
//! arbitrary-precision decimal approximation where it does not, bounded work always.
//!
//! `17/3*3` is `17`, `0.1 + 0.2` is `0.3`, `2^200` is every digit of it, `sqrt(2)` is
//! `1.41421356237310` to 15 significant digits (up to 100 on request), and `9^9^9^9`
//! is an error in microseconds.

mod error;
mod eval;
mod lexer;
mod number;
mod parser;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    error::{FailureKind, ToolFailure},
    tool::{Annotations, CallContext, Limits, Tool},
};
use error::CalcError;
use eval::{Evaluator, Value};
use number::{exact_decimal, float_to_rational, rounded_decimal, Num, Precision};

/// Longest expression accepted, in characters.
pub const MAX_INPUT_CHARS: usize = 4_096;
/// Default significant digits of a decimal result.
pub const DEFAULT_PRECISION: u32 = 15;
/// Largest `precision` a caller may ask for.
pub const MAX_PRECISION: u32 = 100;

/// Arguments of the calculator.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalculatorParams {
    /// The expression, e.g. `17/3*3`, `sqrt(2)`, `15% * 80`, `binomial(10, 3)`,
    /// `2^0.5 < 1.5`. Operators: + - * / ^ (or **) % (modulo between operands, percent
    /// after a number) ! (factorial); comparisons < <= > >= == != give true/false.
    /// Functions: abs floor ceil round(x[,digits]) min max gcd lcm mod sqrt cbrt exp ln
    /// log(x[,base]) (natural log with one argument) log10 log2 sin cos tan asin acos atan
    /// atan2(y,x) factorial binomial (alias ncr); constants pi e tau. Angles in radians.
    pub expression: String,
    /// Significant digits of the decimal form, 1 to 100 (default 15).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    pub precision: Option<u32>,
}

/// The value of an expression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CalculatorOutput {
    /// The expression as given.
    pub expression: String,
    /// The answer in one string: the exact form when there is one, otherwise the decimal
    /// form; `true`/`false` for comparisons.
    pub value: String,
    /// Exact form: an integer (`17`) or a reduced fraction (`17/3`); `null` when the value
    /// is irrational or was computed approximately (`sqrt(2)`).
    pub exact: Option<String>,
    /// Decimal form: all digits when it terminates within `precision` significant digits,
    /// otherwise rounded to `precision` significant digits. `null` for comparisons.
    pub decimal: Option<String>,
    /// Whether `value` is exact.
    pub is_exact: bool,
    /// Significant digits used for a rounded decimal form.
    pub precision: u32,
    /// The truth value when the expression is a comparison.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boolean: Option<bool>,
}

/// The calculator tool.
#[derive(Debug, Default, Clone, Copy)]
pub struct Calculator;

impl Calculator {
    /// Evaluates an expression synchronously (the tool's whole work; it never blocks long).
    pub fn evaluate(
        &self,
        expression: &str,
        precision: Option<u32>,
    ) -> Result<CalculatorOutput, ToolFailure> {
        self.evaluate_until(expression, precision, None)
    }

    /// [`Self::evaluate`], failing with `limit_exceeded` once `deadline` passes.
    pub fn evaluate_until(
        &self,
        expression: &str,
        precision: Option<u32>,
        deadline: Option<std::time::Instant>,
    ) -> Result<CalculatorOutput, ToolFailure> {
        let precision = precision.unwrap_or(DEFAULT_PRECISION);
        if !(1..=MAX_PRECISION).contains(&precision) {
            return Err(ToolFailure::invalid_arguments(format!(
                "precision must be between 1 and {MAX_PRECISION}, got {precision}"
            )));
        }
        let chars = expression.chars().count();
        if chars > MAX_INPUT_CHARS {
            return Err(ToolFailure::new(
                FailureKind::LimitExceeded,
                format!("expression is {chars} characters long; the limit is {MAX_INPUT_CHARS}"),
            ));
        }
        evaluate(expression, precision, deadline).map_err(|e| {
            ToolFailure::new(
                if e.limit {
                    FailureKind::LimitExceeded
                } else {
                    FailureKind::Execution
                },
                e.to_string(),
            )
        })
    }
}

fn evaluate(
    expression: &str,
    precision: u32,
    deadline: Option<std::time::Instant>,
) -> Result<CalculatorOutput, CalcError> {
    let tokens = lexer::lex(expression)?;
    let ast = parser::parse(&tokens, expression.chars().count())?;
    let mut ev = Evaluator {
        prec: Precision::new(precision),
        deadline,
    };
    let value = ev.eval(&ast)?;
    let base = CalculatorOutput {
        expression: expression.to_owned(),
        value: String::new(),
        exact: None,
        decimal: None,
        is_exact: true,
        precision,
        boolean: None,
    };
    Ok(match value {
        Value::Bool(b) => CalculatorOutput {
            value: b.to_string(),
            exact: Some(b.to_string()),
            boolean: Some(b),
            ..base
        },
        Value::Num(Num::Exact(r)) => {
            let exact = r.to_string();
            CalculatorOutput {
                value: exact.clone(),
                decimal: Some(exact_decimal(&r, precision)),
                exact: Some(exact),
                ..base
            }
        }
        Value::Num(Num::Approx(f)) => {
            let r = float_to_rational(&f)
                .ok_or_else(|| CalcError::msg("the result is not a finite number"))?;
            let decimal = rounded_decimal(&r, precision, false);
            CalculatorOutput {
                value: decimal.clone(),
                decimal: Some(decimal),
                is_exact: false,
                ..base
            }
        }
    })
}

impl Tool for Calculator {
    type Params = CalculatorParams;
    type Output = CalculatorOutput;

    fn name(&self) -> &str {
        "calculator"
    }

    fn title(&self) -> Option<&str> {
        Some("Exact calculator")
    }

    fn description(&self) -> &str {
        "Evaluates a math expression exactly. Integers and fractions are exact at any size \
         (up to 10,000 digits): 17/3*3 = 17, 0.1+0.2 = 0.3, 2^200 in full. Irrational \
         results (sqrt(2), pi, ln 3, sin 1) come as a decimal with `precision` significant \
         digits (default 15, max 100). Returns `exact` (integer or reduced fraction, null \
         if irrational), `decimal`, and `value` (the best single answer). Supports + - * / \
         ^ ** % ! and comparisons; functions abs floor ceil round min max gcd lcm mod sqrt \
         cbrt exp ln log log10 log2 sin cos tan asin acos atan atan2 factorial binomial; \
         constants pi e tau. No variables and no implicit multiplication (write 2*pi). \
         Errors name the column and what was expected."
    }

    fn annotations(&self) -> Annotations {
        Annotations::PURE
    }

    fn limits(&self) -> Limits {
        Limits {
            wall_ms: Some(1_000),
            ..Limits::default()
        }
    }

    /// Runs on a blocking thread, never on the async workers: a pathological expression
    /// must not delay another client's call. The evaluator stops itself at the wall limit
    /// (checked at every step); the gate's backstop timeout covers a single step that runs
    /// past it. Needs a Tokio runtime, not its timer.
    async fn call(
        &self,
        params: CalculatorParams,
        ctx: CallContext,
    ) -> Result<CalculatorOutput, ToolFailure> {
        let this = *self;
        let deadline = ctx
            .limits
            .wall_ms
            .map(|ms| std::time::Instant::now() + std::time::Duration::from_millis(ms));
        let job = tokio::task::spawn_blocking(move || {
            this.evaluate_until(&params.expression, params.precision, deadline)
        });
        let joined = tokio::select! {
            r = job => r,
            () = ctx.cancel.cancelled() => {
                return Err(ToolFailure::new(FailureKind::Cancelled, "cancelled"))
            }
        };
        joined.map_err(|e| ToolFailure::execution(format!("the calculator failed: {e}")))?
    }

    fn render(&self, out: &CalculatorOutput) -> String {
        match (&out.boolean, &out.exact, &out.decimal) {
            (Some(b), _, _) => b.to_string(),
            (None, Some(exact), Some(decimal)) if exact == decimal => format!("exact: {exact}"),
            (None, Some(exact), Some(decimal)) => format!("exact: {exact}\ndecimal: {decimal}"),
            (None, _, Some(decimal)) => format!(
                "decimal: {decimal} ({} significant digits; no exact form)",
                out.precision
            ),
            _ => out.value.clone(),
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
