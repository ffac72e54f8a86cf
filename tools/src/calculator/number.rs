//! Numbers: exact rationals (`num-rational` over `num-bigint`) where the value is exact,
//! arbitrary-precision binary floats (`astro-float`) where it cannot be, and the decimal
//! formatting of both.

use astro_float::{BigFloat, Consts, RoundingMode, Sign, Word};
use num_bigint::{BigInt, BigUint, Sign as BigSign};
use num_integer::Integer;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

use super::error::CalcError;

/// Largest number of decimal digits in any integer, numerator or denominator.
pub(crate) const MAX_DIGITS: u64 = 10_000;
/// `MAX_DIGITS` in bits (10,000 × log2 10, rounded up).
pub(crate) const MAX_BITS: u64 = 33_220;

pub(crate) const RM: RoundingMode = RoundingMode::ToEven;

/// A computed number.
#[derive(Debug, Clone)]
pub(crate) enum Num {
    Exact(BigRational),
    /// An approximation computed at the context's working precision.
    Approx(BigFloat),
}

thread_local! {
    /// Constant caches (pi, e, ln 2, ...) outlive a call: building them costs more than
    /// evaluating `2+2`, and later calls at the same precision reuse computed digits.
    static CONSTS: std::cell::RefCell<Option<Consts>> = const { std::cell::RefCell::new(None) };
}

/// Working precision and the cache of constants (pi, e, ln 2, ...).
pub(crate) struct Precision {
    /// Binary working precision: enough for the requested digits plus guard bits.
    pub bits: usize,
    consts: Option<Consts>,
}

impl Precision {
    pub(crate) fn new(digits: u32) -> Self {
        let bits = ((f64::from(digits) * std::f64::consts::LOG2_10).ceil() as usize + 64)
            .next_multiple_of(64);
        Self { bits, consts: None }
    }

    /// The constant cache, created on first use (exact arithmetic never needs it).
    pub(crate) fn consts(&mut self) -> Result<&mut Consts, CalcError> {
        if self.consts.is_none() {
            let cached = CONSTS.with(|c| c.borrow_mut().take());
            self.consts = Some(match cached {
                Some(c) => c,
                None => {
                    Consts::new().map_err(|e| CalcError::msg(format!("internal error: {e:?}")))?
                }
            });
        }
        self.consts
            .as_mut()
            .ok_or_else(|| CalcError::msg("internal error: no constant cache"))
    }
}

impl Drop for Precision {
    fn drop(&mut self) {
        if let Some(c) = self.consts.take() {
            CONSTS.with(|slot| *slot.borrow_mut() = Some(c));
        }
    }
}

impl Precision {
    /// Magnitudes below this fraction of the operands are rounding noise: 2^-(bits-16).
    pub(crate) fn noise_exponent(&self) -> i64 {
        -(self.bits as i64 - 16)
    }
}

/// Checks an exact value against the digit cap.
pub(crate) fn check_exact(r: BigRational) -> Result<Num, CalcError> {
    if r.numer().bits() > MAX_BITS || r.denom().bits() > MAX_BITS {
        return Err(CalcError::limit(format!(
            "an intermediate result has more than {MAX_DIGITS} digits"
        )));
    }
    Ok(Num::Exact(r))
}

/// Checks an approximate value: finite and within 10^±10000.
pub(crate) fn check_approx(f: BigFloat) -> Result<Num, CalcError> {
    if f.is_nan() {
        return Err(CalcError::msg("the result is not a real number"));
    }
    if f.is_inf() {
        return Err(CalcError::limit(format!(
            "the result is larger than 10^{MAX_DIGITS}"
        )));
    }
    if !f.is_zero() {
        let e = i64::from(f.exponent().unwrap_or(0));
        if e.unsigned_abs() > MAX_BITS {
            return Err(CalcError::limit(if e > 0 {
                format!("the result is larger than 10^{MAX_DIGITS}")
            } else {
                format!("the result is smaller than 10^-{MAX_DIGITS}")
            }));
        }
    }
    Ok(Num::Approx(f))
}

pub(crate) fn int_to_float(i: &BigInt, bits: usize) -> BigFloat {
    if i.is_zero() {
        return BigFloat::from_word(0, bits);
    }
    let words: Vec<Word> = i.magnitude().to_u64_digits();
    let sign = if i.is_negative() {
        Sign::Neg
    } else {
        Sign::Pos
    };
    let e = (words.len() * 64) as i32;
    let f = BigFloat::from_words(&words, sign, e);
    let mut f = f;
    // from_words keeps every bit; round to the working precision.
    let _ = f.set_precision(bits.max(f.precision().unwrap_or(bits)), RM);
    f
}

pub(crate) fn to_float(n: &Num, bits: usize) -> BigFloat {
    match n {
        Num::Approx(f) => f.clone(),
        Num::Exact(r) => {
            let num = int_to_float(r.numer(), bits);
            if r.denom().is_one() {
                let mut f = num;
                let _ = f.set_precision(bits, RM);
                f
            } else {
                num.div(&int_to_float(r.denom(), bits), bits, RM)
            }
        }
    }
}

/// The exact rational value of a (finite) binary float.
pub(crate) fn float_to_rational(f: &BigFloat) -> Option<BigRational> {
    if f.is_zero() {
        return Some(BigRational::zero());
    }
    let (words, _bits, sign, exp, _inexact) = f.as_raw_parts()?;
    let mantissa = BigUint::new(
        words
            .iter()
            .flat_map(|w| [(*w & 0xffff_ffff) as u32, (*w >> 32) as u32])
            .collect(),
    );
    let shift = i64::from(exp) - (words.len() as i64) * 64;
    let sign = if sign == Sign::Neg {
        BigSign::Minus
    } else {
        BigSign::Plus
    };
    let m = BigInt::from_biguint(sign, mantissa);
    Some(if shift >= 0 {
        BigRational::from_integer(m << (shift as usize))
    } else {
        BigRational::new(m, BigInt::one() << ((-shift) as usize))
    })
}

/// `10^k` as an integer.
pub(crate) fn pow10(k: u64) -> BigInt {
    num_traits::pow(BigInt::from(10u8), k as usize)
}

/// floor(log10 |x|) for x ≠ 0.
fn floor_log10(x: &BigRational) -> i64 {
    let x = x.abs();
    let est = ((x.numer().bits() as f64 - x.denom().bits() as f64) * std::f64::consts::LOG10_2)
        .floor() as i64;
    let mut k = est;
    // The estimate is within ±1; settle it exactly.
    loop {
        let lo = pow10_rational(k);
        if x < lo {
            k -= 1;
            continue;
        }
        let hi = pow10_rational(k + 1);
        if x >= hi {
            k += 1;
            continue;
        }
        return k;
    }
}

fn pow10_rational(k: i64) -> BigRational {
    if k >= 0 {
        BigRational::from_integer(pow10(k as u64))
    } else {
        BigRational::new(BigInt::one(), pow10(k.unsigned_abs()))
    }
}

/// Rounds to an integer, halves away from zero.
pub(crate) fn round_half_away(x: &BigRational) -> BigInt {
    let (q, r) = x.numer().div_mod_floor(x.denom());
    // x = q + r/d with 0 <= r < d.
    let twice = r * 2u8;
    match twice.cmp(x.denom()) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1u8,
        std::cmp::Ordering::Equal => {
            if x.is_negative() {
                q
            } else {
                q + 1u8
            }
        }
    }
}

/// Whether `x` has a terminating decimal expansion (denominator of the form 2^a 5^b).
fn terminates(x: &BigRational) -> bool {
    decimal_places(x.denom()).is_some()
}

/// For a denominator `d` = 2^a·5^b: max(a, b), the decimal places of any fraction over it;
/// `None` for any other `d`. The twos come off as one shift and the fives in blocks of
/// 5^13 (a u32), so a 10,000-digit denominator takes microseconds, not one big division per
/// factor.
fn decimal_places(d: &BigInt) -> Option<u64> {
    if d.is_zero() {
        return None;
    }
    let twos = d.trailing_zeros().unwrap_or(0);
    let mut rest = d.abs() >> twos;
    let mut fives = 0u64;
    const FIVE_13: u32 = 1_220_703_125;
    loop {
        let (q, r) = rest.div_rem(&BigInt::from(FIVE_13));
        if !r.is_zero() {
            break;
        }
        rest = q;
        fives += 13;
    }
    while (&rest % 5u8).is_zero() {
        rest /= 5u8;
        fives += 1;
    }
    rest.is_one().then_some(twos.max(fives))
}

/// Decimal rendering of an exact value: every digit when it terminates within `digits`
/// significant digits (and always for integers), otherwise rounded to `digits`.
pub(crate) fn exact_decimal(x: &BigRational, digits: u32) -> String {
    if x.is_integer() {
        return x.numer().to_string();
    }
    if terminates(x) {
        let plain = rounded_decimal(x, u32::MAX, true);
        if significant_digits(&plain) <= digits as usize {
            return plain;
        }
    }
    rounded_decimal(x, digits, false)
}

fn significant_digits(s: &str) -> usize {
    let mantissa = s.split('e').next().unwrap_or(s);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let trimmed = digits.trim_start_matches('0').trim_end_matches('0');
    trimmed.len().max(1)
}

/// `x` rounded to `digits` significant digits. With `exact_terminating`, prints the full
/// (finite) expansion instead, trailing zeros stripped.
pub(crate) fn rounded_decimal(x: &BigRational, digits: u32, exact_terminating: bool) -> String {
    if x.is_zero() {
        return "0".into();
    }
    let neg = x.is_negative();
    let ax = x.abs();
    let mut k = floor_log10(&ax);
    let (mut mantissa, n) = if exact_terminating {
        // Scaled by 10^s, s = its decimal places, in one exact step (the denominator
        // divides 10^s): multiplying by 10 until integral normalised a 10,000-digit
        // fraction once per digit — 43 s for `round(2/3, 9999)`.
        let s = decimal_places(ax.denom()).unwrap_or(0);
        let m = ax.numer() * (pow10(s) / ax.denom());
        let n = m.to_string().len() as u32;
        (m, n)
    } else {
        let shift = i64::from(digits) - 1 - k;
        let scaled = ax * pow10_rational(shift);
        let mut m = round_half_away(&scaled);
        if m == pow10(u64::from(digits)) {
            m /= 10u8;
            k += 1;
        }
        (m, digits)
    };
    if exact_terminating {
        // strip trailing zeros of the integer mantissa
        while (&mantissa % 10u8).is_zero() && !mantissa.is_zero() {
            mantissa /= 10u8;
        }
    }
    let digits_str = mantissa.to_string();
    let _ = n;
    let body = place_point(&digits_str, k, !exact_terminating);
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

/// Places the decimal point in significant digits `d` (value d.ddd × 10^k): positional for
/// 10^-7 < x < 10^21, scientific (`6.02e23`) otherwise.
fn place_point(d: &str, k: i64, rounded: bool) -> String {
    let n = d.len() as i64;
    // A rounded value never shows padding zeros it does not know (2.333e18, not
    // 2333000000000000000).
    if (-7..21).contains(&k) && !(rounded && k >= n) {
        if k >= n - 1 {
            format!("{d}{}", "0".repeat((k - n + 1) as usize))
        } else if k >= 0 {
            let (a, b) = d.split_at((k + 1) as usize);
            format!("{a}.{b}")
        } else {
            format!("0.{}{d}", "0".repeat((-k - 1) as usize))
        }
    } else {
        let (a, b) = d.split_at(1);
        if b.is_empty() {
            format!("{a}e{k}")
        } else {
            format!("{a}.{b}e{k}")
        }
    }
}

/// Exact rational of a numeric literal (`12`, `0.1`, `.5`, `6.02e23`, `1E-5`).
pub(crate) fn parse_literal(lit: &str) -> Result<BigRational, CalcError> {
    let (mantissa, exp) = match lit.find(['e', 'E']) {
        Some(i) => (&lit[..i], &lit[i + 1..]),
        None => (lit, ""),
    };
    let exp: i64 = if exp.is_empty() {
        0
    } else {
        exp.parse::<i64>()
            .map_err(|_| CalcError::limit(format!("exponent of '{lit}' is out of range")))?
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.len() as u64 > MAX_DIGITS {
        return Err(CalcError::limit(format!(
            "number literal has more than {MAX_DIGITS} digits"
        )));
    }
    let m: BigInt = if digits.is_empty() {
        BigInt::zero()
    } else {
        digits
            .parse()
            .map_err(|_| CalcError::msg(format!("invalid number '{lit}'")))?
    };
    if m.is_zero() {
        return Ok(BigRational::zero());
    }
    let scale = exp - frac_part.len() as i64;
    if scale.unsigned_abs() + digits.len() as u64 > MAX_DIGITS {
        return Err(CalcError::limit(format!(
            "'{lit}' is outside 10^-{MAX_DIGITS} .. 10^{MAX_DIGITS}"
        )));
    }
    Ok(if scale >= 0 {
        BigRational::from_integer(m * pow10(scale as u64))
    } else {
        BigRational::new(m, pow10(scale.unsigned_abs()))
    })
}

/// Integer value of an exact integer that fits in an `i64`.
pub(crate) fn small_int(r: &BigRational) -> Option<i64> {
    if r.is_integer() {
        r.numer().to_i64()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(n: i64, d: i64) -> BigRational {
        BigRational::new(n.into(), d.into())
    }

    #[test]
    fn decimals() {
        assert_eq!(exact_decimal(&q(17, 3), 15), "5.66666666666667");
        assert_eq!(exact_decimal(&q(3, 10), 15), "0.3");
        assert_eq!(exact_decimal(&q(-1, 8), 15), "-0.125");
        assert_eq!(exact_decimal(&q(2, 3), 3), "0.667");
        assert_eq!(exact_decimal(&q(1, 3_000_000_000), 3), "3.33e-10");
        assert_eq!(exact_decimal(&q(10_i64.pow(18) * 7, 3), 4), "2.333e18");
        assert_eq!(exact_decimal(&q(99_999, 100_000), 2), "1.0");
        assert_eq!(exact_decimal(&q(12, 1), 2), "12");
    }

    #[test]
    fn literals_are_exact() {
        assert_eq!(parse_literal("0.1").ok(), Some(q(1, 10)));
        assert_eq!(parse_literal(".5").ok(), Some(q(1, 2)));
        assert_eq!(
            parse_literal("6.02e23").ok(),
            Some(q(602, 1) * BigRational::from_integer(pow10(21)))
        );
        assert_eq!(parse_literal("1E-3").ok(), Some(q(1, 1000)));
        assert!(parse_literal("1e99999999999999999999").is_err());
        assert!(parse_literal("1e100000").is_err());
    }

    #[test]
    fn float_round_trip() {
        let x = q(3, 8);
        let f = to_float(&Num::Exact(x.clone()), 128);
        assert_eq!(float_to_rational(&f), Some(x));
        let big = BigRational::from_integer(BigInt::from(1u8) << 200usize);
        let f = to_float(&Num::Exact(big.clone()), 128);
        assert_eq!(float_to_rational(&f), Some(big));
    }
}
