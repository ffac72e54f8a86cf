//! Evaluation of the AST: exact where exact is possible, approximate (at the working
//! precision) where it is not, and bounded everywhere.

use astro_float::BigFloat;
use num_bigint::BigInt;
use num_integer::Integer;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

use super::{
    error::CalcError,
    number::{
        check_approx, check_exact, float_to_rational, parse_literal, pow10, round_half_away,
        small_int, to_float, Num, Precision, MAX_BITS, MAX_DIGITS, RM,
    },
    parser::{BinOp, CmpOp, Expr},
};

/// Largest denominator of a rational exponent tried as an exact root (`8^(1/3)` = 2).
const MAX_EXACT_ROOT: u64 = 64;

/// A value: a number or the outcome of a comparison.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Num(Num),
    Bool(bool),
}

pub(crate) const FUNCTIONS: &[&str] = &[
    "abs",
    "floor",
    "ceil",
    "round",
    "min",
    "max",
    "gcd",
    "lcm",
    "mod",
    "sqrt",
    "cbrt",
    "exp",
    "ln",
    "log",
    "log10",
    "log2",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "atan2",
    "factorial",
    "binomial",
    "ncr",
];
pub(crate) const CONSTANTS: &[&str] = &["pi", "e", "tau"];

pub(crate) struct Evaluator {
    pub prec: Precision,
    /// Past this instant every step fails with a limit error (the calculator runs on a
    /// blocking thread that a timed-out call leaves behind: it stops at its next step).
    pub deadline: Option<std::time::Instant>,
}

fn q(n: i64) -> BigRational {
    BigRational::from_integer(BigInt::from(n))
}

impl Evaluator {
    pub(crate) fn eval(&mut self, e: &Expr) -> Result<Value, CalcError> {
        if self
            .deadline
            .is_some_and(|d| std::time::Instant::now() >= d)
        {
            return Err(CalcError::limit("the calculation ran over its time limit"));
        }
        match e {
            Expr::Compare { op, lhs, rhs, col } => {
                let a = self.number(lhs)?;
                let b = self.number(rhs)?;
                let ord = self.compare(&a, &b);
                let r = match op {
                    CmpOp::Lt => ord.is_lt(),
                    CmpOp::Le => ord.is_le(),
                    CmpOp::Gt => ord.is_gt(),
                    CmpOp::Ge => ord.is_ge(),
                    CmpOp::Eq => ord.is_eq(),
                    CmpOp::Ne => ord.is_ne(),
                };
                let _ = col;
                Ok(Value::Bool(r))
            }
            other => Ok(Value::Num(self.num(other)?)),
        }
    }

    /// Evaluates a sub-expression that must be a number.
    fn number(&mut self, e: &Expr) -> Result<Num, CalcError> {
        match self.eval(e)? {
            Value::Num(n) => Ok(n),
            Value::Bool(_) => Err(CalcError::at(e.col(), "expected a number, got true/false")),
        }
    }

    fn num(&mut self, e: &Expr) -> Result<Num, CalcError> {
        match e {
            Expr::Number { literal, col } => Ok(Num::Exact(
                parse_literal(literal).map_err(|err| err.or_at(*col))?,
            )),
            Expr::Name { name, col } => self.constant(name, *col),
            Expr::Call { name, args, col } => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push((self.number(a)?, a.col()));
                }
                self.call(name, &vals, *col).map_err(|err| err.or_at(*col))
            }
            Expr::Neg { operand, .. } => Ok(match self.number(operand)? {
                Num::Exact(r) => Num::Exact(-r),
                Num::Approx(f) => Num::Approx(f.neg()),
            }),
            Expr::Binary { op, lhs, rhs, col } => {
                let a = self.number(lhs)?;
                let b = self.number(rhs)?;
                self.binary(*op, a, b).map_err(|err| err.or_at(*col))
            }
            Expr::Factorial { operand, col } => {
                let n = self.number(operand)?;
                factorial(&n).map_err(|err| err.or_at(*col))
            }
            Expr::Percent { operand, .. } => {
                let n = self.number(operand)?;
                self.binary(BinOp::Div, n, Num::Exact(q(100)))
            }
            Expr::Compare { col, .. } => Err(CalcError::at(
                *col,
                "a comparison can only be the whole expression",
            )),
        }
    }

    fn constant(&mut self, name: &str, col: usize) -> Result<Num, CalcError> {
        let bits = self.prec.bits;
        match name {
            "pi" | "π" => Ok(Num::Approx(self.prec.consts()?.pi(bits, RM))),
            "tau" => {
                let pi = self.prec.consts()?.pi(bits, RM);
                Ok(Num::Approx(pi.mul(&BigFloat::from_word(2, 64), bits, RM)))
            }
            "e" => Ok(Num::Approx(self.prec.consts()?.e(bits, RM))),
            _ => {
                let known: Vec<&str> = FUNCTIONS.iter().chain(CONSTANTS).copied().collect();
                let mut err = if FUNCTIONS.contains(&name) {
                    CalcError::at(col, format!("'{name}' is a function"))
                        .hint(format!("call it as {name}(...)"))
                } else {
                    CalcError::at(col, format!("unknown name '{name}'"))
                };
                if err.hint.is_none() {
                    if let Some(s) = suggest(name, &known) {
                        err = err.hint(format!("did you mean '{s}'?"));
                    } else {
                        err = err.hint("there are no variables; constants are pi, e and tau");
                    }
                }
                Err(err)
            }
        }
    }

    /// Total order on numbers; approximate values closer than the working precision's
    /// noise are equal (so `sqrt(2)^2 == 2`).
    fn compare(&mut self, a: &Num, b: &Num) -> std::cmp::Ordering {
        match (a, b) {
            (Num::Exact(x), Num::Exact(y)) => x.cmp(y),
            _ => {
                let bits = self.prec.bits;
                let fa = to_float(a, bits);
                let fb = to_float(b, bits);
                let diff = fa.sub(&fb, bits, RM);
                if self.is_noise(&diff, &[&fa, &fb]) {
                    return std::cmp::Ordering::Equal;
                }
                if diff.is_negative() {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                }
            }
        }
    }

    /// Whether `x` is indistinguishable from zero relative to the magnitudes it came from.
    fn is_noise(&self, x: &BigFloat, from: &[&BigFloat]) -> bool {
        if x.is_zero() {
            return true;
        }
        let scale = from
            .iter()
            .filter(|f| !f.is_zero())
            .filter_map(|f| f.exponent())
            .map(i64::from)
            .max()
            .unwrap_or(0)
            .max(1);
        let ex = i64::from(x.exponent().unwrap_or(0));
        ex < scale + self.prec.noise_exponent()
    }

    fn approx(&self, f: BigFloat, from: &[&BigFloat]) -> Result<Num, CalcError> {
        if !f.is_nan() && !f.is_inf() && self.is_noise(&f, from) {
            return Ok(Num::Exact(BigRational::zero()));
        }
        check_approx(f)
    }

    fn binary(&mut self, op: BinOp, a: Num, b: Num) -> Result<Num, CalcError> {
        let bits = self.prec.bits;
        if let (Num::Exact(x), Num::Exact(y)) = (&a, &b) {
            return match op {
                BinOp::Add => check_exact(x + y),
                BinOp::Sub => check_exact(x - y),
                BinOp::Mul => {
                    if x.numer().bits() + y.numer().bits() > MAX_BITS + 64
                        || x.denom().bits() + y.denom().bits() > MAX_BITS + 64
                    {
                        return Err(too_many_digits());
                    }
                    check_exact(x * y)
                }
                BinOp::Div => {
                    if y.is_zero() {
                        return Err(CalcError::msg("division by zero"));
                    }
                    check_exact(x / y)
                }
                BinOp::Mod => {
                    if y.is_zero() {
                        return Err(CalcError::msg("modulo by zero"));
                    }
                    check_exact(x - y * (x / y).floor())
                }
                BinOp::Pow => self.pow_exact(x, y),
            };
        }
        let fa = to_float(&a, bits);
        let fb = to_float(&b, bits);
        match op {
            BinOp::Add => self.approx(fa.add(&fb, bits, RM), &[&fa, &fb]),
            BinOp::Sub => self.approx(fa.sub(&fb, bits, RM), &[&fa, &fb]),
            BinOp::Mul => check_approx(fa.mul(&fb, bits, RM)),
            BinOp::Div => {
                if fb.is_zero() {
                    return Err(CalcError::msg("division by zero"));
                }
                check_approx(fa.div(&fb, bits, RM))
            }
            BinOp::Mod => {
                if fb.is_zero() {
                    return Err(CalcError::msg("modulo by zero"));
                }
                let q = fa.div(&fb, bits, RM).floor();
                self.approx(fa.sub(&q.mul(&fb, bits, RM), bits, RM), &[&fa, &fb])
            }
            BinOp::Pow => self.pow_approx(&a, &b),
        }
    }

    fn pow_exact(&mut self, x: &BigRational, y: &BigRational) -> Result<Num, CalcError> {
        if y.is_integer() {
            return int_pow(x, y.numer());
        }
        // Rational exponent p/q: exact when x is a perfect q-th power.
        let p = y.numer();
        let qd = y.denom();
        if x.is_negative() {
            if qd.is_even() {
                return Err(CalcError::msg(
                    "a negative number to a fractional power with an even denominator is not real",
                ));
            }
            let pos = self.pow_exact(&-x, y)?;
            return Ok(match pos {
                Num::Exact(r) => Num::Exact(-r),
                Num::Approx(f) => Num::Approx(f.neg()),
            });
        }
        if x.is_zero() {
            return if y.is_negative() {
                Err(CalcError::msg("division by zero (0 to a negative power)"))
            } else {
                Ok(Num::Exact(BigRational::zero()))
            };
        }
        if let Some(qs) = qd.to_u64().filter(|q| *q <= MAX_EXACT_ROOT) {
            if let Some(root) = exact_root(x, qs as u32) {
                return int_pow(&root, p);
            }
        }
        self.pow_approx(&Num::Exact(x.clone()), &Num::Exact(y.clone()))
    }

    fn pow_approx(&mut self, a: &Num, b: &Num) -> Result<Num, CalcError> {
        let bits = self.prec.bits;
        let fa = to_float(a, bits);
        let fb = to_float(b, bits);
        if fa.is_zero() {
            return if fb.is_negative() {
                Err(CalcError::msg("division by zero (0 to a negative power)"))
            } else if fb.is_zero() {
                Ok(Num::Exact(BigRational::one()))
            } else {
                Ok(Num::Exact(BigRational::zero()))
            };
        }
        // Bound the work before doing it: |b| * log2|a| must stay within the cap.
        let log2a = f64::from(fa.exponent().unwrap_or(0)).abs() + 1.0;
        let bmag = 2f64.powi(fb.exponent().unwrap_or(0).clamp(-1000, 1000));
        if log2a * bmag > MAX_BITS as f64 * 1.01 && !is_near_one(&fa) {
            return Err(CalcError::limit(format!(
                "the result would be beyond 10^±{MAX_DIGITS}"
            )));
        }
        let b_int = match b {
            Num::Exact(r) if r.is_integer() => true,
            Num::Approx(f) => f.is_int(),
            _ => false,
        };
        if fa.is_negative() {
            if !b_int {
                return Err(CalcError::msg(
                    "a negative number to a non-integer power is not real",
                ));
            }
            let pos = fa.abs().pow(&fb, bits, RM, self.prec.consts()?);
            let odd = float_to_rational(&fb).is_some_and(|r| r.numer().is_odd());
            return check_approx(if odd { pos.neg() } else { pos });
        }
        check_approx(fa.pow(&fb, bits, RM, self.prec.consts()?))
    }

    /// A function call: arity checked against [`SIGNATURES`], then one small method each.
    fn call(&mut self, name: &str, args: &[(Num, usize)], col: usize) -> Result<Num, CalcError> {
        let Some(&(_, min, max)) = SIGNATURES.iter().find(|s| s.0 == name) else {
            return Err(unknown_function(name, col));
        };
        if args.len() < min || args.len() > max {
            return Err(arity_error(name, min, max, args.len(), col));
        }
        // Every function takes at least one argument (checked above).
        let x = args[0].0.clone();
        let second = || args.get(1).map(|a| a.0.clone());
        match name {
            "abs" => Ok(match x {
                Num::Exact(r) => Num::Exact(r.abs()),
                Num::Approx(f) => Num::Approx(f.abs()),
            }),
            "floor" => Ok(Num::Exact(self.exactish(&x)?.floor())),
            "ceil" => Ok(Num::Exact(self.exactish(&x)?.ceil())),
            "round" => self.round(&x, args.get(1)),
            "min" => Ok(self.extreme(args, std::cmp::Ordering::is_lt)),
            "max" => Ok(self.extreme(args, std::cmp::Ordering::is_gt)),
            "gcd" | "lcm" => gcd_lcm(name, args),
            "mod" => self.binary(BinOp::Mod, x, args[1].0.clone()),
            "sqrt" => self.root(x, 2),
            "cbrt" => self.root(x, 3),
            "exp" => self.exp(x),
            "ln" => self.log(x, None),
            "log" => self.log(x, second()),
            "log10" => self.log(x, Some(Num::Exact(q(10)))),
            "log2" => self.log(x, Some(Num::Exact(q(2)))),
            "sin" | "cos" | "tan" => self.trig(name, x),
            "asin" | "acos" | "atan" => self.inverse_trig(name, x),
            "atan2" => self.atan2(x, args[1].0.clone()),
            "factorial" => factorial(&x),
            "binomial" | "ncr" => {
                let n = big_int_arg(&args[0].0, name, args[0].1)?;
                let k = big_int_arg(&args[1].0, name, args[1].1)?;
                binomial(&n, &k)
            }
            // SIGNATURES and this match list the same names (a unit test checks).
            _ => Err(unknown_function(name, col)),
        }
    }

    /// `round(x[, digits])`: half away from zero, exactly.
    fn round(&mut self, x: &Num, digits: Option<&(Num, usize)>) -> Result<Num, CalcError> {
        let r = self.exactish(x)?;
        let places = match digits {
            None => 0,
            Some((n, c)) => int_arg(n, "round() digits", *c)?,
        };
        if places.unsigned_abs() > MAX_DIGITS {
            return Err(CalcError::limit("round() digits out of range"));
        }
        let scale = if places >= 0 {
            BigRational::from_integer(pow10(places as u64))
        } else {
            BigRational::new(BigInt::one(), pow10(places.unsigned_abs()))
        };
        check_exact(BigRational::from_integer(round_half_away(&(&r * &scale))) / scale)
    }

    /// `min`/`max`: the first argument that beats all others under `better`.
    fn extreme(&mut self, args: &[(Num, usize)], better: fn(std::cmp::Ordering) -> bool) -> Num {
        let mut best = args[0].0.clone();
        for (n, _) in &args[1..] {
            if better(self.compare(n, &best)) {
                best = n.clone();
            }
        }
        best
    }

    fn exp(&mut self, a: Num) -> Result<Num, CalcError> {
        if let Num::Exact(r) = &a {
            if r.is_zero() {
                return Ok(Num::Exact(BigRational::one()));
            }
        }
        let bits = self.prec.bits;
        let f = to_float(&a, bits);
        if f.exponent().unwrap_or(0) > 15 {
            // |x| >= 2^15 ≈ 32768 > ln(10^10000) ≈ 23026.
            return Err(CalcError::limit(format!(
                "exp() of that argument is beyond 10^±{MAX_DIGITS}"
            )));
        }
        check_approx(f.exp(bits, RM, self.prec.consts()?))
    }

    /// `asin`, `acos`, `atan`: exact at the points where the answer is 0.
    fn inverse_trig(&mut self, name: &str, a: Num) -> Result<Num, CalcError> {
        if let Num::Exact(r) = &a {
            if (name == "asin" || name == "atan") && r.is_zero() {
                return Ok(Num::Exact(BigRational::zero()));
            }
            if name == "acos" && r.is_one() {
                return Ok(Num::Exact(BigRational::zero()));
            }
        }
        let bits = self.prec.bits;
        let f = to_float(&a, bits);
        if name != "atan" && f.abs().cmp(&BigFloat::from_word(1, 64)) == Some(1) {
            return Err(CalcError::msg(format!(
                "{name}() is only real for arguments between -1 and 1"
            )));
        }
        let c = self.prec.consts()?;
        let r = match name {
            "asin" => f.asin(bits, RM, c),
            "acos" => f.acos(bits, RM, c),
            _ => f.atan(bits, RM, c),
        };
        self.approx(r, &[&BigFloat::from_word(1, 64)])
    }

    /// The exact value, or the exact binary value of an approximation (for floor/round).
    fn exactish(&self, n: &Num) -> Result<BigRational, CalcError> {
        match n {
            Num::Exact(r) => Ok(r.clone()),
            Num::Approx(f) => float_to_rational(f)
                .ok_or_else(|| CalcError::msg("the value is not a finite number")),
        }
    }

    fn root(&mut self, a: Num, k: u32) -> Result<Num, CalcError> {
        let bits = self.prec.bits;
        if let Num::Exact(r) = &a {
            if r.is_negative() && k.is_multiple_of(2) {
                return Err(CalcError::msg("sqrt of a negative number is not real"));
            }
            let (neg, mag) = (r.is_negative(), r.abs());
            if let Some(root) = exact_root(&mag, k) {
                return Ok(Num::Exact(if neg { -root } else { root }));
            }
        }
        let f = to_float(&a, bits);
        if f.is_negative() && k.is_multiple_of(2) {
            return Err(CalcError::msg("sqrt of a negative number is not real"));
        }
        check_approx(if k == 2 {
            f.sqrt(bits, RM)
        } else {
            f.cbrt(bits, RM)
        })
    }

    fn log(&mut self, a: Num, base: Option<Num>) -> Result<Num, CalcError> {
        let bits = self.prec.bits;
        let not_positive = |n: &Num| match n {
            Num::Exact(r) => !r.is_positive(),
            Num::Approx(f) => !f.is_positive() || f.is_zero(),
        };
        if not_positive(&a) {
            return Err(CalcError::msg(
                "the logarithm is only defined for positive numbers",
            ));
        }
        if let Some(b) = &base {
            if not_positive(b) {
                return Err(CalcError::msg("a logarithm's base must be positive"));
            }
            if let Num::Exact(rb) = b {
                if rb.is_one() {
                    return Err(CalcError::msg("a logarithm's base cannot be 1"));
                }
                if let Num::Exact(ra) = &a {
                    if let Some(k) = exact_log(ra, rb) {
                        return Ok(Num::Exact(q(k)));
                    }
                }
            }
        } else if let Num::Exact(r) = &a {
            if r.is_one() {
                return Ok(Num::Exact(BigRational::zero()));
            }
        }
        let fa = to_float(&a, bits);
        let c = self.prec.consts()?;
        let ln_a = fa.ln(bits, RM, c);
        match base {
            None => check_approx(ln_a),
            Some(b) => {
                let fb = to_float(&b, bits);
                let ln_b = fb.ln(bits, RM, c);
                check_approx(ln_a.div(&ln_b, bits, RM))
            }
        }
    }

    fn trig(&mut self, name: &str, a: Num) -> Result<Num, CalcError> {
        let bits = self.prec.bits;
        if let Num::Exact(r) = &a {
            if r.is_zero() {
                return Ok(Num::Exact(if name == "cos" {
                    BigRational::one()
                } else {
                    BigRational::zero()
                }));
            }
        }
        let f = to_float(&a, bits);
        if f.exponent().unwrap_or(0) > 332 {
            return Err(CalcError::limit(format!(
                "{name}() argument is too large (above 10^100) for a meaningful result"
            )));
        }
        let r = match name {
            "sin" => f.sin(bits, RM, self.prec.consts()?),
            "cos" => f.cos(bits, RM, self.prec.consts()?),
            _ => {
                let cos = f.cos(bits, RM, self.prec.consts()?);
                if self.is_noise(&cos, &[&f]) {
                    return Err(CalcError::msg("tan() is undefined where cos() is 0"));
                }
                f.tan(bits, RM, self.prec.consts()?)
            }
        };
        self.approx(r, &[&f])
    }

    fn atan2(&mut self, y: Num, x: Num) -> Result<Num, CalcError> {
        let bits = self.prec.bits;
        let fy = to_float(&y, bits);
        let fx = to_float(&x, bits);
        if fy.is_zero() && fx.is_zero() {
            return Err(CalcError::msg("atan2(0, 0) is undefined"));
        }
        if fy.is_zero() && fx.is_positive() {
            return Ok(Num::Exact(BigRational::zero()));
        }
        let c = self.prec.consts()?;
        let pi = c.pi(bits, RM);
        let r = if fx.is_zero() {
            let half = pi.div(&BigFloat::from_word(2, 64), bits, RM);
            if fy.is_negative() {
                half.neg()
            } else {
                half
            }
        } else {
            let base = fy.div(&fx, bits, RM).atan(bits, RM, c);
            if fx.is_positive() {
                base
            } else if fy.is_negative() {
                base.sub(&pi, bits, RM)
            } else {
                base.add(&pi, bits, RM)
            }
        };
        check_approx(r)
    }
}

/// Every function: its name, fewest and most arguments.
const SIGNATURES: &[(&str, usize, usize)] = &[
    ("abs", 1, 1),
    ("floor", 1, 1),
    ("ceil", 1, 1),
    ("round", 1, 2),
    ("min", 1, usize::MAX),
    ("max", 1, usize::MAX),
    ("gcd", 2, usize::MAX),
    ("lcm", 2, usize::MAX),
    ("mod", 2, 2),
    ("sqrt", 1, 1),
    ("cbrt", 1, 1),
    ("exp", 1, 1),
    ("ln", 1, 1),
    ("log", 1, 2),
    ("log10", 1, 1),
    ("log2", 1, 1),
    ("sin", 1, 1),
    ("cos", 1, 1),
    ("tan", 1, 1),
    ("asin", 1, 1),
    ("acos", 1, 1),
    ("atan", 1, 1),
    ("atan2", 2, 2),
    ("factorial", 1, 1),
    ("binomial", 2, 2),
    ("ncr", 2, 2),
];

fn arity_error(name: &str, min: usize, max: usize, got: usize, col: usize) -> CalcError {
    let want = match (min, max) {
        (a, b) if a == b => format!("{a}"),
        (a, usize::MAX) => format!("at least {a}"),
        (a, b) => format!("{a} or {b}"),
    };
    CalcError::at(
        col,
        format!(
            "{name}() takes {want} argument{}, got {got}",
            if want == "1" { "" } else { "s" },
        ),
    )
}

fn unknown_function(name: &str, col: usize) -> CalcError {
    let known: Vec<&str> = FUNCTIONS.iter().chain(CONSTANTS).copied().collect();
    let err = CalcError::at(col, format!("unknown function '{name}'"));
    match suggest(name, &known) {
        Some(s) => err.hint(format!("did you mean '{s}'?")),
        None => err.hint(format!("available functions: {}", FUNCTIONS.join(", "))),
    }
}

/// `gcd`/`lcm` of integer arguments.
fn gcd_lcm(name: &str, args: &[(Num, usize)]) -> Result<Num, CalcError> {
    let mut acc = big_int_arg(&args[0].0, name, args[0].1)?;
    for (n, c) in &args[1..] {
        let v = big_int_arg(n, name, *c)?;
        acc = if name == "gcd" {
            acc.gcd(&v)
        } else {
            acc.lcm(&v)
        };
    }
    check_exact(BigRational::from_integer(acc))
}

fn too_many_digits() -> CalcError {
    CalcError::limit(format!(
        "an intermediate result has more than {MAX_DIGITS} digits"
    ))
}

fn is_near_one(f: &BigFloat) -> bool {
    matches!(f.exponent(), Some(0 | 1)) && {
        let d = f.sub(&BigFloat::from_word(1, 64), 128, RM);
        d.is_zero() || d.exponent().unwrap_or(0) < -20
    }
}

/// `x^n` exactly, with the size checked before the work is done.
fn int_pow(x: &BigRational, n: &BigInt) -> Result<Num, CalcError> {
    if x.is_zero() {
        return if n.is_negative() {
            Err(CalcError::msg("division by zero (0 to a negative power)"))
        } else if n.is_zero() {
            Ok(Num::Exact(BigRational::one()))
        } else {
            Ok(Num::Exact(BigRational::zero()))
        };
    }
    let ax = x.abs();
    if ax.is_one() {
        let odd = n.is_odd();
        return Ok(Num::Exact(if x.is_negative() && odd { -ax } else { ax }));
    }
    let big = ax
        .numer()
        .bits()
        .max(ax.denom().bits())
        .saturating_sub(1)
        .max(1);
    let e = n.magnitude().to_u64().unwrap_or(u64::MAX);
    if e.saturating_mul(big) > MAX_BITS {
        let digits = (e as f64) * (big as f64) * std::f64::consts::LOG10_2;
        return Err(CalcError::limit(format!(
            "the result would have about {digits:.3e} digits; the limit is {MAX_DIGITS}"
        )));
    }
    let r = num_traits::pow(x.clone(), e as usize);
    check_exact(if n.is_negative() { r.recip() } else { r })
}

/// The exact k-th root of a non-negative rational, if it has one.
fn exact_root(x: &BigRational, k: u32) -> Option<BigRational> {
    if x.is_negative() {
        return None;
    }
    let n = x.numer().nth_root(k);
    let d = x.denom().nth_root(k);
    if num_traits::pow(n.clone(), k as usize) == *x.numer()
        && num_traits::pow(d.clone(), k as usize) == *x.denom()
    {
        Some(BigRational::new(n, d))
    } else {
        None
    }
}

/// `k` with `b^k == a` exactly, if there is one.
fn exact_log(a: &BigRational, b: &BigRational) -> Option<i64> {
    if a.is_one() {
        return Some(0);
    }
    let (a, b, sign) = if (*b > BigRational::one()) == (*a > BigRational::one()) {
        (a.clone(), b.clone(), 1)
    } else {
        (a.recip(), b.clone(), -1)
    };
    let (a, b) = if b < BigRational::one() {
        (a.recip(), b.recip())
    } else {
        (a, b)
    };
    // now b > 1 and a > 1
    let mut acc = b.clone();
    let mut k = 1i64;
    while acc < a && acc.numer().bits() <= MAX_BITS {
        acc = &acc * &b;
        k += 1;
    }
    (acc == a).then_some(k * sign)
}

fn int_arg(n: &Num, what: &str, col: usize) -> Result<i64, CalcError> {
    match n {
        Num::Exact(r) => small_int(r),
        Num::Approx(_) => None,
    }
    .ok_or_else(|| CalcError::at(col, format!("{what} must be an integer")))
}

fn big_int_arg(n: &Num, fname: &str, col: usize) -> Result<BigInt, CalcError> {
    match n {
        Num::Exact(r) if r.is_integer() => Ok(r.to_integer()),
        _ => Err(CalcError::at(col, format!("{fname}() takes integers"))),
    }
}

/// log10(n!) by Stirling's series (accurate to far better than one digit here).
fn log10_factorial(n: f64) -> f64 {
    if n < 2.0 {
        return 0.0;
    }
    let ln = n * n.ln() - n + 0.5 * (2.0 * std::f64::consts::PI * n).ln() + 1.0 / (12.0 * n);
    ln / std::f64::consts::LN_10
}

fn factorial(n: &Num) -> Result<Num, CalcError> {
    let k = match n {
        Num::Exact(r) if r.is_integer() && !r.is_negative() => r.to_integer(),
        _ => {
            return Err(CalcError::msg(
                "factorial is defined for non-negative integers only",
            ))
        }
    };
    let kf = k.to_f64().unwrap_or(f64::INFINITY);
    let digits = log10_factorial(kf);
    if digits > MAX_DIGITS as f64 {
        return Err(CalcError::limit(format!(
            "{k}! would have about {digits:.3e} digits; the limit is {MAX_DIGITS}"
        )));
    }
    let k = k.to_u64().unwrap_or(0);
    let mut acc = BigInt::one();
    for i in 2..=k {
        acc *= i;
    }
    check_exact(BigRational::from_integer(acc))
}

fn binomial(n: &BigInt, k: &BigInt) -> Result<Num, CalcError> {
    if n.is_negative() || k.is_negative() {
        return Err(CalcError::msg("binomial(n, k) takes non-negative integers"));
    }
    if k > n {
        return Ok(Num::Exact(BigRational::zero()));
    }
    let k = std::cmp::min(k.clone(), n - k);
    let (Some(nf), Some(kf)) = (n.to_f64(), k.to_f64()) else {
        return Err(too_many_digits());
    };
    let digits = log10_factorial(nf) - log10_factorial(kf) - log10_factorial(nf - kf);
    if digits > MAX_DIGITS as f64 || kf > 1e7 {
        return Err(CalcError::limit(format!(
            "binomial({n}, {k}) would have about {digits:.3e} digits; the limit is {MAX_DIGITS}"
        )));
    }
    let k = k.to_u64().unwrap_or(0);
    let mut acc = BigInt::one();
    for i in 0..k {
        acc = acc * (n - i) / (i + 1);
    }
    check_exact(BigRational::from_integer(acc))
}

/// The closest known name within edit distance 2, if any.
pub(crate) fn suggest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_lowercase();
    if let Some(k) = known.iter().find(|k| **k == lower) {
        return Some(k);
    }
    known
        .iter()
        .map(|k| (edit_distance(&lower, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod dispatch_tests {
    use super::*;

    /// The signature table, the list the parser and error hints use, and the dispatch
    /// agree: every listed function is known, and none is left unknown by `call`.
    #[test]
    fn every_function_is_listed_once_and_dispatched() {
        let names: Vec<&str> = SIGNATURES.iter().map(|s| s.0).collect();
        assert_eq!(names, FUNCTIONS);
        for (name, min, _) in SIGNATURES {
            let mut ev = Evaluator {
                prec: Precision::new(15),
                deadline: None,
            };
            let args: Vec<(Num, usize)> = (0..*min).map(|_| (Num::Exact(q(1)), 1)).collect();
            if let Err(e) = ev.call(name, &args, 1) {
                assert!(!e.to_string().contains("unknown function"), "{name}: {e}");
            }
        }
    }
}
