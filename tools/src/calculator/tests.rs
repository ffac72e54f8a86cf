use std::{
    future::Future,
    time::{Duration, Instant},
};

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{Signed, Zero};
use pretty_assertions::assert_eq;
use proptest::prelude::*;

use super::*;

fn calc(expr: &str) -> CalculatorOutput {
    match Calculator.evaluate(expr, None) {
        Ok(out) => out,
        Err(e) => panic!("{expr:?} failed: {e}"),
    }
}

fn err(expr: &str) -> String {
    match Calculator.evaluate(expr, None) {
        Ok(out) => panic!("{expr:?} unexpectedly gave {out:?}"),
        Err(e) => e.message,
    }
}

fn exact(expr: &str) -> String {
    calc(expr)
        .exact
        .unwrap_or_else(|| panic!("{expr:?} has no exact form"))
}

fn decimal(expr: &str) -> String {
    calc(expr).decimal.unwrap_or_default()
}

#[test]
fn exact_rationals() {
    assert_eq!(exact("17/3*3"), "17");
    assert_eq!(exact("1/3 + 1/6"), "1/2");
    assert_eq!(exact("0.1 + 0.2"), "3/10");
    assert_eq!(decimal("0.1 + 0.2"), "0.3");
    assert_eq!(decimal("1.1*1.1"), "1.21");
    assert_eq!(
        exact("2^200"),
        "1606938044258990275541962092341162602522202993782792835301376"
    );
    assert_eq!(exact("2**10"), "1024");
    assert_eq!(exact("2^-2"), "1/4");
    assert_eq!(exact("-2^2"), "-4");
    assert_eq!(exact("(-2)^3"), "-8");
    assert_eq!(exact("2^3^2"), "512");
    assert_eq!(exact("6.02e23"), "602000000000000000000000");
    assert_eq!(decimal("6.02e23"), "602000000000000000000000");
    assert_eq!(exact("1e-3"), "1/1000");
}

#[test]
fn full_result_shape() {
    assert_eq!(
        calc("17/3"),
        CalculatorOutput {
            expression: "17/3".into(),
            value: "17/3".into(),
            exact: Some("17/3".into()),
            decimal: Some("5.66666666666667".into()),
            is_exact: true,
            precision: 15,
            boolean: None,
        }
    );
    assert_eq!(
        calc("sqrt(2)"),
        CalculatorOutput {
            expression: "sqrt(2)".into(),
            value: "1.41421356237310".into(),
            exact: None,
            decimal: Some("1.41421356237310".into()),
            is_exact: false,
            precision: 15,
            boolean: None,
        }
    );
}

#[test]
fn percent_and_modulo() {
    assert_eq!(exact("15% * 80"), "12");
    assert_eq!(exact("15%"), "3/20");
    assert_eq!(exact("17 % 5"), "2");
    assert_eq!(exact("-7 % 3"), "2"); // sign of the divisor, like Python
    assert_eq!(exact("mod(7.5, 2)"), "3/2");
    assert_eq!(exact("50% + 1"), "3/2");
}

#[test]
fn comparisons() {
    assert_eq!(calc("1/3 + 1/6 == 0.5").boolean, Some(true));
    assert_eq!(calc("0.1 + 0.2 == 0.3").value, "true");
    assert_eq!(calc("2 < 1").value, "false");
    assert_eq!(calc("sqrt(2)^2 == 2").value, "true");
    assert_eq!(calc("pi > 3.14159").value, "true");
    assert_eq!(calc("3 != 3").value, "false");
    assert_eq!(calc("2 >= 2").value, "true");
}

#[test]
fn functions() {
    assert_eq!(exact("abs(-5/2)"), "5/2");
    assert_eq!(exact("floor(-7/2)"), "-4");
    assert_eq!(exact("ceil(7/2)"), "4");
    assert_eq!(exact("round(2.5)"), "3");
    assert_eq!(exact("round(-2.5)"), "-3");
    assert_eq!(exact("round(3.14159, 2)"), "157/50");
    assert_eq!(
        exact("round(pi, 4)"),
        "31416/10000".replace("31416/10000", "3927/1250")
    );
    assert_eq!(exact("min(3, 1/2, 2)"), "1/2");
    assert_eq!(exact("max(3, 1/2, 2)"), "3");
    assert_eq!(exact("gcd(12, 18, 27)"), "3");
    assert_eq!(exact("lcm(4, 6)"), "12");
    assert_eq!(exact("sqrt(16/9)"), "4/3");
    assert_eq!(exact("cbrt(-27)"), "-3");
    assert_eq!(exact("8^(1/3)"), "2");
    assert_eq!(exact("4^1.5"), "8");
    assert_eq!(exact("factorial(20)"), "2432902008176640000");
    assert_eq!(exact("5!"), "120");
    assert_eq!(exact("-3!"), "-6");
    assert_eq!(exact("binomial(10, 3)"), "120");
    assert_eq!(exact("ncr(52, 5)"), "2598960");
    assert_eq!(exact("log10(1000)"), "3");
    assert_eq!(exact("log2(1/8)"), "-3");
    assert_eq!(exact("log(81, 3)"), "4");
    assert_eq!(exact("ln(1)"), "0");
    assert_eq!(exact("exp(0)"), "1");
    assert_eq!(exact("sin(0)"), "0");
    assert_eq!(exact("cos(0)"), "1");
    assert_eq!(exact("sin(pi)"), "0");
    assert_eq!(exact("sqrt(2)^2 - 2"), "0");
    assert_eq!(decimal("pi"), "3.14159265358979");
    assert_eq!(decimal("e"), "2.71828182845905");
    assert_eq!(decimal("ln(2)"), "0.693147180559945");
    assert_eq!(decimal("log(100)"), "4.60517018598809");
    assert_eq!(decimal("sin(1)"), "0.841470984807897");
    assert_eq!(decimal("atan2(1, -1)"), "2.35619449019234");
    assert_eq!(decimal("acos(-1)"), "3.14159265358979");
    assert_eq!(decimal("cbrt(2)"), "1.25992104989487");
    assert_eq!(decimal("2^0.5"), "1.41421356237310");
    assert_eq!(decimal("exp(1)"), "2.71828182845905");
    assert_eq!(decimal("(-8)^(1/3)"), "-2");
}

#[test]
fn precision_argument() {
    let out = Calculator
        .evaluate("pi", Some(50))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out.decimal.as_deref(),
        Some("3.1415926535897932384626433832795028841971693993751")
    );
    let out = Calculator
        .evaluate("sqrt(2)", Some(100))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out.decimal.as_deref(),
        Some("1.414213562373095048801688724209698078569671875376948073176679737990732478462107038850387534327641573")
    );
    let out = Calculator
        .evaluate("1/7", Some(3))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.decimal.as_deref(), Some("0.143"));
    assert!(Calculator.evaluate("1", Some(0)).is_err());
    assert!(Calculator.evaluate("1", Some(101)).is_err());
}

#[test]
fn errors_name_the_column_and_the_fix() {
    assert_eq!(err("(1 + 2))"), "unexpected ')' at column 8");
    assert_eq!(err("1 + 2)"), "unexpected ')' at column 6");
    assert_eq!(err("1/0"), "division by zero at column 2");
    assert_eq!(
        err("sqrt(-4)"),
        "sqrt of a negative number is not real at column 1"
    );
    assert_eq!(
        err("sine(1)"),
        "unknown function 'sine' at column 1 — did you mean 'sin'?"
    );
    assert_eq!(
        err("2x"),
        "missing operator before 'x' at column 2 — there is no implicit multiplication; write 2*x, not 2x"
    );
    assert!(err("2(3)").starts_with("missing operator before '(' at column 2"));
    assert!(err("(1 + 2").contains("expected ')' to close the '(' at column 1"));
    assert_eq!(err(""), "empty expression — write something like 2 + 2");
    assert!(err("1 +").starts_with("unexpected end of expression at column 4"));
    assert!(err("1 < 2 < 3").contains("cannot be chained"));
    assert!(err("x = 3").starts_with("unexpected '=' at column 3 — use '=='"));
    assert!(err("x + 3").starts_with("unknown name 'x' at column 1"));
    assert!(err("log(0)").contains("only defined for positive"));
    assert!(err("asin(2)").contains("between -1 and 1"));
    assert!(err("gcd(1.5, 3)").contains("integers"));
    assert!(err("(-1)^0.5").contains("not real"));
    assert!(err("0^-1").contains("division by zero"));
    assert!(err("sqrt(1, 2)").contains("takes 1 argument, got 2"));
    assert!(err("(1 < 2) + 1").contains("expected a number"));
    assert!(err("pi(2)").contains("unknown function 'pi'"));
    assert!(err("sqrt").contains("'sqrt' is a function"));
    assert!(err("tan(pi/2)").contains("undefined"));
}

/// Every cap answers fast, without building the huge value.
#[test]
fn caps_fail_fast() {
    let cases = [
        "9^9^9^9",
        "10000000!",
        "factorial(100000)",
        "2^(2^64)",
        "2^(2^64) - 1",
        "10^10001",
        "(1/3)^1000000",
        "1e100000",
        "exp(100000)",
        "2.5^(10^30)",
        "sin(10^200)",
        "binomial(10^9, 10^8)",
        "round(1, 100000)",
        "9^9^9",
        "10^5000 * 10^5001",
    ];
    for case in cases {
        let start = Instant::now();
        let result = Calculator.evaluate(case, None);
        let took = start.elapsed();
        match result {
            Err(e) => assert_eq!(e.kind, FailureKind::LimitExceeded, "{case}: {}", e.message),
            Ok(out) => panic!("{case} should hit a cap, gave {}", out.value),
        }
        assert!(took < Duration::from_millis(500), "{case} took {took:?}");
    }
    let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
    assert!(Calculator
        .evaluate(&deep, None)
        .is_err_and(|e| e.message.contains("nested deeper")));
    let unary = format!("{}1", "-".repeat(200));
    assert!(Calculator.evaluate(&unary, None).is_err());
    let long = "1+".repeat(3000) + "1";
    assert!(Calculator
        .evaluate(&long, None)
        .is_err_and(|e| e.kind == FailureKind::LimitExceeded));
}

#[test]
fn large_but_allowed_values_are_exact() {
    let out = calc("3000!");
    assert_eq!(out.exact.as_deref().map(str::len), Some(9131));
    let out = calc("2^33000");
    assert!(out.exact.is_some_and(|s| s.starts_with("976915")));
}

/// A second, independent evaluation path for the differential test: the same random
/// expression evaluated directly on `BigRational` while it is generated.
#[derive(Debug, Clone)]
enum Gen {
    Lit(i64, u32),
    Add(Box<Gen>, Box<Gen>),
    Sub(Box<Gen>, Box<Gen>),
    Mul(Box<Gen>, Box<Gen>),
    Div(Box<Gen>, Box<Gen>),
    Neg(Box<Gen>),
    Pow(Box<Gen>, i32),
}

impl Gen {
    fn text(&self) -> String {
        match self {
            Gen::Lit(n, places) => {
                if *places == 0 {
                    if *n < 0 {
                        format!("({n})")
                    } else {
                        format!("{n}")
                    }
                } else {
                    let s = format!("{:0>width$}", n.abs(), width = *places as usize + 1);
                    let (a, b) = s.split_at(s.len() - *places as usize);
                    if *n < 0 {
                        format!("(-{a}.{b})")
                    } else {
                        format!("{a}.{b}")
                    }
                }
            }
            Gen::Add(a, b) => format!("({} + {})", a.text(), b.text()),
            Gen::Sub(a, b) => format!("({} - {})", a.text(), b.text()),
            Gen::Mul(a, b) => format!("({} * {})", a.text(), b.text()),
            Gen::Div(a, b) => format!("({} / {})", a.text(), b.text()),
            Gen::Neg(a) => format!("(-{})", a.text()),
            Gen::Pow(a, k) => format!("({}^({k}))", a.text()),
        }
    }

    fn value(&self) -> Option<BigRational> {
        Some(match self {
            Gen::Lit(n, places) => BigRational::new(
                BigInt::from(*n),
                num_traits::pow(BigInt::from(10), *places as usize),
            ),
            Gen::Add(a, b) => a.value()? + b.value()?,
            Gen::Sub(a, b) => a.value()? - b.value()?,
            Gen::Mul(a, b) => a.value()? * b.value()?,
            Gen::Div(a, b) => {
                let d = b.value()?;
                if d.is_zero() {
                    return None;
                }
                a.value()? / d
            }
            Gen::Neg(a) => -a.value()?,
            Gen::Pow(a, k) => {
                let base = a.value()?;
                if base.is_zero() && *k < 0 {
                    return None;
                }
                let r = num_traits::pow(base, k.unsigned_abs() as usize);
                if *k < 0 {
                    r.recip()
                } else {
                    r
                }
            }
        })
    }
}

fn gen_strategy() -> impl Strategy<Value = Gen> {
    let leaf = (-1000i64..1000, 0u32..4).prop_map(|(n, p)| Gen::Lit(n, p));
    leaf.prop_recursive(5, 40, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Gen::Add(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Gen::Sub(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Gen::Mul(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Gen::Div(Box::new(a), Box::new(b))),
            inner.clone().prop_map(|a| Gen::Neg(Box::new(a))),
            (inner, -3i32..4).prop_map(|(a, k)| Gen::Pow(Box::new(a), k)),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_rational_expressions_match_direct_bigrational(g in gen_strategy()) {
        let text = g.text();
        match (g.value(), Calculator.evaluate(&text, None)) {
            (Some(v), Ok(out)) => {
                prop_assert_eq!(out.exact, Some(v.to_string()), "{}", text);
                prop_assert!(out.is_exact);
            }
            (None, Err(e)) => prop_assert!(e.message.contains("division by zero"), "{}: {}", text, e.message),
            (v, out) => prop_assert!(false, "{}: oracle {:?} vs calculator {:?}", text, v, out),
        }
    }

    /// The decimal form always rounds the exact value correctly.
    #[test]
    fn decimal_form_is_the_rounded_exact_value(n in -10_000_000i64..10_000_000, d in 1i64..100_000, digits in 1u32..30) {
        let out = Calculator.evaluate(&format!("{n}/{d}"), Some(digits)).map_err(|e| TestCaseError::fail(e.message))?;
        let decimal = out.decimal.unwrap_or_default();
        let back = Calculator.evaluate(&decimal, Some(digits)).map_err(|e| TestCaseError::fail(e.message))?;
        let parsed = back.exact.unwrap_or_default();
        let exact = BigRational::new(n.into(), d.into());
        let parsed: BigRational = parsed.parse().map_err(|_| TestCaseError::fail("parse"))?;
        let err = (parsed - &exact).abs();
        // Rounding to `digits` significant digits: error at most half a unit in the last place.
        if !exact.is_zero() {
            let rel = err / exact.abs();
            let bound = BigRational::new(1.into(), num_traits::pow(BigInt::from(10), digits as usize - 1)) / BigRational::from_integer(2.into());
            prop_assert!(rel <= bound, "{}/{} at {} digits gave {}", n, d, digits, decimal);
        }
    }

    /// Garbage never panics and always yields either a value or a readable error.
    #[test]
    fn arbitrary_input_never_panics(s in "[0-9a-z+*/^%!(),.<=>\\- ]{0,60}") {
        let _ = Calculator.evaluate(&s, None);
    }
}

#[test]
fn long_roundings_are_fast_and_exact() {
    // Multiplying by 10 until integral normalised the fraction once per digit: 43 s.
    let started = std::time::Instant::now();
    let out = Calculator.evaluate("round(2/3, 9999)", None).unwrap();
    let exact = out.exact.unwrap();
    let (num, den) = exact.split_once('/').unwrap();
    assert_eq!(num.len(), 9999);
    assert!(num.starts_with("6666") && num.ends_with("667"));
    assert_eq!(den.len(), 10_000, "10^9999");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn past_its_deadline_the_evaluator_stops_with_a_limit_error() {
    let past = std::time::Instant::now();
    let e = Calculator
        .evaluate_until("1+1", None, Some(past))
        .unwrap_err();
    assert_eq!(e.kind, verity_types::FailureKind::LimitExceeded, "{e:?}");
    assert!(e.message.contains("time limit"), "{e:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_call_runs_off_the_async_thread() {
    // The first poll hands the work to a blocking thread and returns Pending; evaluating
    // inline (as before) would have been Ready at once, holding the async worker.
    let mut call = Box::pin(Calculator.call(
        CalculatorParams {
            expression: "round(2/3, 9999)".into(),
            precision: None,
        },
        CallContext::default(),
    ));
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    assert!(call.as_mut().poll(&mut cx).is_pending());
    let out = call.await.unwrap();
    assert!(out.exact.is_some());
}
