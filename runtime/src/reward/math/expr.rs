//! A small expression language for math answers (after LaTeX is turned into it by
//! `latex.rs`): numbers, variables, `+ - * / ^`, implicit products, `sqrt`, a few
//! functions and constants. Values are exact rationals while every step is rational
//! (`+ − × ÷`, integer powers, square roots of perfect squares) and f64 otherwise, so `1/3`
//! is not `0.333` but `x^2+2x+1` is `(x+1)^2` at every point.

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{Signed, ToPrimitive, Zero};

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal; `decimal`: written with a decimal point (compared at 6 decimals, as
    /// math-verify does).
    Num {
        value: BigRational,
        decimal: bool,
    },
    /// A variable (one letter, or a Greek name).
    Var(String),
    /// π, e, ∞.
    Const(f64),
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    Call(Func, Box<Expr>),
    /// `x%`: x/100.
    Percent(Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Sqrt,
    Sin,
    Cos,
    Tan,
    Ln,
    Log,
    Exp,
    Abs,
}

impl Func {
    fn named(s: &str) -> Option<Self> {
        Some(match s {
            "sqrt" => Func::Sqrt,
            "sin" => Func::Sin,
            "cos" => Func::Cos,
            "tan" => Func::Tan,
            "ln" => Func::Ln,
            "log" => Func::Log,
            "exp" => Func::Exp,
            "abs" => Func::Abs,
            _ => return None,
        })
    }
}

/// A value: exact when every step was.
#[derive(Debug, Clone, PartialEq)]
pub enum Num {
    Exact(BigRational),
    Approx(f64),
}

impl Num {
    pub fn to_f64(&self) -> f64 {
        match self {
            Num::Exact(r) => r.to_f64().unwrap_or(f64::NAN),
            Num::Approx(x) => *x,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(BigRational, bool),
    Ident(String),
    Op(char),
    Open,
    Close,
}

/// Most tokens an answer may have (answers are short; this bounds the parser's work).
const MAX_TOKENS: usize = 2000;
/// Deepest nesting of brackets and operators.
const MAX_DEPTH: usize = 64;

fn lex(s: &str) -> Option<Vec<Tok>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if out.len() > MAX_TOKENS {
            return None;
        }
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let mut decimal = false;
            if i < chars.len()
                && chars[i] == '.'
                && chars.get(i + 1).is_some_and(char::is_ascii_digit)
            {
                decimal = true;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let text: String = chars[start..i].iter().collect();
            out.push(Tok::Num(parse_decimal(&text)?, decimal));
        } else if c.is_ascii_alphabetic() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_alphabetic() {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if matches!(c, '+' | '-' | '*' | '/' | '^' | '%' | '!') {
            out.push(Tok::Op(c));
            i += 1;
        } else if matches!(c, '(' | '[') {
            out.push(Tok::Open);
            i += 1;
        } else if matches!(c, ')' | ']') {
            out.push(Tok::Close);
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

fn parse_decimal(text: &str) -> Option<BigRational> {
    match text.split_once('.') {
        None => Some(BigRational::from_integer(text.parse().ok()?)),
        Some((int, frac)) => {
            let digits: BigInt = format!("{int}{frac}").parse().ok()?;
            let scale = BigInt::from(10).pow(frac.len() as u32);
            Some(BigRational::new(digits, scale))
        }
    }
}

/// Words the expression language reads as one name: functions, constants, Greek letters.
pub fn is_word(w: &str) -> bool {
    Func::named(w).is_some()
        || matches!(
            w,
            "pi" | "inf"
                | "alpha"
                | "beta"
                | "gamma"
                | "theta"
                | "lambda"
                | "mu"
                | "sigma"
                | "omega"
                | "phi"
        )
}

/// Splits identifiers into what they mean: function names, constants, Greek variables, and
/// otherwise single-letter variables multiplied together (`xy` is x·y).
fn words(toks: Vec<Tok>) -> Vec<Tok> {
    let mut out = Vec::with_capacity(toks.len());
    for t in toks {
        match t {
            Tok::Ident(w) => {
                let keep = is_word(&w);
                if keep || w.chars().count() == 1 {
                    out.push(Tok::Ident(w));
                } else {
                    out.extend(w.chars().map(|c| Tok::Ident(c.to_string())));
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Parses an expression; `None` when it is not one.
pub fn parse(s: &str) -> Option<Expr> {
    let toks = words(lex(s)?);
    if toks.is_empty() {
        return None;
    }
    let mut p = Parser {
        toks,
        at: 0,
        depth: 0,
    };
    let e = p.sum()?;
    (p.at == p.toks.len()).then_some(e)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    fn sum(&mut self) -> Option<Expr> {
        self.enter()?;
        let mut left = self.product()?;
        while let Some(Tok::Op(c @ ('+' | '-'))) = self.peek() {
            let op = if *c == '+' { Op::Add } else { Op::Sub };
            self.at += 1;
            let right = self.product()?;
            left = Expr::Bin(op, Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Some(left)
    }

    fn product(&mut self) -> Option<Expr> {
        let mut left = self.unary()?;
        loop {
            match self.peek() {
                Some(Tok::Op(c @ ('*' | '/'))) => {
                    let op = if *c == '*' { Op::Mul } else { Op::Div };
                    self.at += 1;
                    let right = self.unary()?;
                    left = Expr::Bin(op, Box::new(left), Box::new(right));
                }
                // Implicit product: 2x, 2(x+1), x y, 3sqrt(2), (a)(b).
                Some(Tok::Num(..) | Tok::Ident(_) | Tok::Open) => {
                    let right = self.power()?;
                    left = Expr::Bin(Op::Mul, Box::new(left), Box::new(right));
                }
                _ => return Some(left),
            }
        }
    }

    fn unary(&mut self) -> Option<Expr> {
        match self.peek() {
            Some(Tok::Op('-')) => {
                self.at += 1;
                self.enter()?;
                let e = self.unary()?;
                self.depth -= 1;
                Some(Expr::Neg(Box::new(e)))
            }
            Some(Tok::Op('+')) => {
                self.at += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Option<Expr> {
        let base = self.postfix()?;
        if let Some(Tok::Op('^')) = self.peek() {
            self.at += 1;
            self.enter()?;
            // Right-associative; the exponent may carry a sign.
            let exp = self.unary()?;
            self.depth -= 1;
            return Some(Expr::Bin(Op::Pow, Box::new(base), Box::new(exp)));
        }
        Some(base)
    }

    fn postfix(&mut self) -> Option<Expr> {
        let mut e = self.atom()?;
        while let Some(Tok::Op('%')) = self.peek() {
            self.at += 1;
            e = Expr::Percent(Box::new(e));
        }
        Some(e)
    }

    fn atom(&mut self) -> Option<Expr> {
        let t = self.peek()?.clone();
        self.at += 1;
        match t {
            Tok::Num(value, decimal) => Some(Expr::Num { value, decimal }),
            Tok::Open => {
                self.enter()?;
                let e = self.sum()?;
                self.depth -= 1;
                match self.peek() {
                    Some(Tok::Close) => {
                        self.at += 1;
                        Some(e)
                    }
                    _ => None,
                }
            }
            Tok::Ident(w) => {
                if let Some(f) = Func::named(&w) {
                    self.enter()?;
                    // sin^2 x is not supported; sqrt 2 and sqrt(2) are.
                    let arg = self.power()?;
                    self.depth -= 1;
                    return Some(Expr::Call(f, Box::new(arg)));
                }
                Some(match w.as_str() {
                    "pi" => Expr::Const(std::f64::consts::PI),
                    "e" => Expr::Const(std::f64::consts::E),
                    "inf" => Expr::Const(f64::INFINITY),
                    _ => Expr::Var(w),
                })
            }
            Tok::Op(_) | Tok::Close => None,
        }
    }
}

impl Expr {
    /// The variables it uses, sorted.
    pub fn vars(&self, out: &mut Vec<String>) {
        match self {
            Expr::Var(v) => {
                if !out.contains(v) {
                    out.push(v.clone());
                    out.sort();
                }
            }
            Expr::Neg(a) | Expr::Call(_, a) | Expr::Percent(a) => a.vars(out),
            Expr::Bin(_, a, b) => {
                a.vars(out);
                b.vars(out);
            }
            Expr::Num { .. } | Expr::Const(_) => {}
        }
    }

    /// Whether a decimal literal appears (the comparison then allows rounding).
    pub fn has_decimal(&self) -> bool {
        match self {
            Expr::Num { decimal, .. } => *decimal,
            Expr::Neg(a) | Expr::Call(_, a) | Expr::Percent(a) => a.has_decimal(),
            Expr::Bin(_, a, b) => a.has_decimal() || b.has_decimal(),
            Expr::Var(_) | Expr::Const(_) => false,
        }
    }

    /// The value with each variable bound by `env`; `None`: undefined (division by zero,
    /// an exponent too large to be an answer).
    pub fn eval(&self, env: &dyn Fn(&str) -> Option<BigRational>) -> Option<Num> {
        Some(match self {
            Expr::Num { value, .. } => Num::Exact(value.clone()),
            Expr::Var(v) => Num::Exact(env(v)?),
            Expr::Const(c) => Num::Approx(*c),
            Expr::Neg(a) => match a.eval(env)? {
                Num::Exact(r) => Num::Exact(-r),
                Num::Approx(x) => Num::Approx(-x),
            },
            Expr::Percent(a) => match a.eval(env)? {
                Num::Exact(r) => Num::Exact(r / BigRational::from_integer(100.into())),
                Num::Approx(x) => Num::Approx(x / 100.0),
            },
            Expr::Call(f, a) => call(*f, a.eval(env)?)?,
            Expr::Bin(op, a, b) => binary(*op, a.eval(env)?, b.eval(env)?)?,
        })
    }
}

fn call(f: Func, x: Num) -> Option<Num> {
    if let (Func::Sqrt, Num::Exact(r)) = (f, &x) {
        if !r.is_negative() {
            if let (Some(n), Some(d)) = (exact_sqrt(r.numer()), exact_sqrt(r.denom())) {
                return Some(Num::Exact(BigRational::new(n, d)));
            }
        }
    }
    if let (Func::Abs, Num::Exact(r)) = (f, &x) {
        return Some(Num::Exact(r.abs()));
    }
    let v = x.to_f64();
    let y = match f {
        Func::Sqrt => v.sqrt(),
        Func::Sin => v.sin(),
        Func::Cos => v.cos(),
        Func::Tan => v.tan(),
        Func::Ln => v.ln(),
        Func::Log => v.log10(),
        Func::Exp => v.exp(),
        Func::Abs => v.abs(),
    };
    (!y.is_nan()).then_some(Num::Approx(y))
}

fn exact_sqrt(n: &BigInt) -> Option<BigInt> {
    let r = n.sqrt();
    (&r * &r == *n).then_some(r)
}

fn binary(op: Op, a: Num, b: Num) -> Option<Num> {
    if let (Num::Exact(x), Num::Exact(y)) = (&a, &b) {
        return match op {
            Op::Add => Some(Num::Exact(x + y)),
            Op::Sub => Some(Num::Exact(x - y)),
            Op::Mul => Some(Num::Exact(x * y)),
            Op::Div => (!y.is_zero()).then(|| Num::Exact(x / y)),
            // An integer power too large to compute exactly has no usable value: in f64 it
            // is ±inf or 0, where (1+x)^99999 and (1+x)^99998 would look equal.
            Op::Pow if y.is_integer() => pow_exact(x, y),
            Op::Pow => pow_exact(x, y).or_else(|| approx(op, a.to_f64(), b.to_f64())),
        };
    }
    approx(op, a.to_f64(), b.to_f64())
}

fn approx(op: Op, x: f64, y: f64) -> Option<Num> {
    let v = match op {
        Op::Add => x + y,
        Op::Sub => x - y,
        Op::Mul => x * y,
        Op::Div if y == 0.0 => return None,
        Op::Div => x / y,
        Op::Pow => x.powf(y),
    };
    (!v.is_nan()).then_some(Num::Approx(v))
}

/// `x^y` exactly when y is an integer of modest size (answers are not 10^10^10), or a
/// half-integer of a perfect square.
fn pow_exact(x: &BigRational, y: &BigRational) -> Option<Num> {
    if y.is_integer() {
        let n = y.to_integer().to_i64()?;
        if n.unsigned_abs() > 4096 {
            return None;
        }
        if n < 0 && x.is_zero() {
            return None;
        }
        // Bound the result's size (`(2^4096)^4096` would take gigabytes): approximate.
        let bits = x.numer().bits() + x.denom().bits();
        if bits.saturating_mul(n.unsigned_abs()) > 200_000 {
            return None;
        }
        let p = num_traits::pow::pow(x.clone(), n.unsigned_abs() as usize);
        return Some(Num::Exact(if n < 0 { p.recip() } else { p }));
    }
    if y.denom() == &BigInt::from(2) {
        if let Num::Exact(root) = call(Func::Sqrt, Num::Exact(x.clone()))? {
            return pow_exact(&root, &BigRational::from_integer(y.numer().clone()));
        }
    }
    None
}

/// Whether two values are the same answer: exactly equal when both are exact; else equal
/// to a relative 1e-9, or to 6 decimals when `rounded` (a decimal literal took part).
pub fn same_value(a: &Num, b: &Num, rounded: bool) -> bool {
    if let (Num::Exact(x), Num::Exact(y)) = (a, b) {
        if x == y {
            return true;
        }
        if !rounded {
            return false;
        }
    }
    let (x, y) = (a.to_f64(), b.to_f64());
    if x.is_infinite() || y.is_infinite() {
        return x == y;
    }
    let scale = x.abs().max(y.abs()).max(1.0);
    let tol = if rounded { 5e-7 } else { 1e-9 };
    (x - y).abs() <= tol * scale
}

/// Points at which expressions in variables are compared: rationals with no special
/// structure (not 0, ±1 or small integers), so equal values at all of them mean equal
/// polynomials and rational functions with overwhelming likelihood.
const POINTS: [(i64, i64); 4] = [(7, 3), (-5, 4), (11, 7), (23, 10)];

/// Whether `a` and `b` are equal as functions of their variables (as numbers, when they
/// have none).
pub fn equivalent(a: &Expr, b: &Expr) -> bool {
    let mut vars = Vec::new();
    a.vars(&mut vars);
    b.vars(&mut vars);
    let rounded = a.has_decimal() || b.has_decimal();
    let rounds = if vars.is_empty() { 1 } else { POINTS.len() };
    let mut defined = 0;
    for k in 0..rounds {
        let env = |v: &str| {
            let i = vars.iter().position(|x| x == v)?;
            let (n, d) = POINTS[(k + i) % POINTS.len()];
            // Each variable its own value at each point.
            Some(BigRational::new((n + i as i64 * 13).into(), d.into()))
        };
        // A value beyond f64's range says nothing about equality (exp(1000) and exp(1001)
        // are both inf): such a point is undefined, like a division by zero.
        let finite = |v: Option<Num>| v.filter(|n| n.to_f64().is_finite());
        match (finite(a.eval(&env)), finite(b.eval(&env))) {
            (Some(x), Some(y)) => {
                if !same_value(&x, &y, rounded) {
                    return false;
                }
                defined += 1;
            }
            (None, None) => {}
            _ => return false,
        }
    }
    defined > 0 || (vars.is_empty() && a == b)
}

/// Whether `e` is a one-letter variable (the `x` of `x = 3`).
pub fn is_variable(e: &Expr) -> bool {
    matches!(e, Expr::Var(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(a: &str, b: &str) -> bool {
        equivalent(&parse(a).unwrap(), &parse(b).unwrap())
    }

    #[test]
    fn exact_where_rational_and_identities_hold_at_every_point() {
        assert!(eq("1/2", "0.5"));
        assert!(!eq("1/3", "0.333"));
        assert!(eq("1/3", "0.3333333"));
        assert!(eq("x^2+2x+1", "(x+1)^2"));
        assert!(!eq("x^2+2x+1", "(x+1)^3"));
        assert!(eq("2xy", "y*x*2"));
        assert!(eq("sqrt(8)", "2sqrt(2)"));
        assert!(eq("sqrt(4)", "2"));
        assert!(eq("2^(-2)", "1/4"));
        assert!(eq("4^(1/2)", "2"));
        assert!(!eq("17", "18"));
        assert!(eq("50%", "1/2"));
        assert!(eq("2pi", "6.283185"));
        assert!(eq("inf", "inf") && !eq("inf", "-inf"));
        // Values beyond exact or f64 range are not evidence of equality.
        assert!(!eq("(1+x)^99999", "(1+x)^99998"));
        assert!(!eq("exp(1000)", "exp(1001)"));
        assert!(!eq("2^(2^40)", "4"));
        assert!(eq("2^5000", "2^5000"));
    }

    #[test]
    fn hostile_input_is_refused_not_slow() {
        assert!(parse(&"(".repeat(10_000)).is_none());
        assert!(parse(&"1+".repeat(5_000)).is_none());
        let huge = parse("10^(10^10)").unwrap();
        // Not computed (the exponent is too large to be exact): no value, and quickly.
        assert!(huge.eval(&|_| None).is_none());
        let tower = parse("((2^4096)^4096)^4096").unwrap();
        assert!(tower.eval(&|_| None).is_none());
        assert!(parse("1/0").unwrap().eval(&|_| None).is_none());
        assert!(parse("2 +").is_none() && parse("#").is_none());
    }
}
