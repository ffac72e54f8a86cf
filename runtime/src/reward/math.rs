//! Math answer equivalence: pull the answer out of prose (`\boxed{}` first, then "the
//! answer is …", then the last number), turn simple LaTeX into calculator syntax, and
//! compare *values* with Verity's exact calculator — `\frac12`, `0.5` and `1/2` are the
//! same number; `1,234` is 1234; `{1, 2}` equals `{2, 1}`; 17 is not 18.

use std::sync::OnceLock;

use regex::Regex;
use verity_tools::calculator::Calculator;

/// A constant pattern, compiled once (the patterns are literals in this file; a bad one is
/// a bug caught by the tests, never an input error).
fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| {
        Regex::new(pattern).unwrap_or_else(|e| panic!("bad pattern {pattern}: {e}"))
    })
}

/// The content of the last `\boxed{…}` (balanced braces), if any.
fn last_boxed(s: &str) -> Option<String> {
    let start = s.rfind("\\boxed")?;
    let rest = &s[start + "\\boxed".len()..];
    let open = rest.find('{')?;
    if !rest[..open].trim().is_empty() {
        return None;
    }
    let mut depth = 0usize;
    for (i, c) in rest[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(rest[open + 1..open + i].to_owned());
                }
            }
            _ => {}
        }
    }
    None
}

/// The answer a response gives.
pub fn extract_answer(text: &str) -> Option<String> {
    if let Some(b) = last_boxed(text) {
        return Some(b.trim().to_owned());
    }
    static ANSWER_IS: OnceLock<Regex> = OnceLock::new();
    let answer_is = re(
        &ANSWER_IS,
        r"(?i)(?:final answer|the answer)\s*(?:is|:)\s*\$?([^\n$]+?)\$?\s*(?:\.\s*)?$",
    );
    for line in text.lines().rev() {
        if let Some(c) = answer_is.captures(line.trim()) {
            return Some(c[1].trim().to_owned());
        }
    }
    static NUMBER: OnceLock<Regex> = OnceLock::new();
    let number = re(&NUMBER, r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?");
    number
        .find_iter(text)
        .last()
        .map(|m| m.as_str().trim_end_matches(',').to_owned())
}

/// LaTeX-ish math → calculator syntax.
fn to_expression(s: &str) -> String {
    let mut t = s
        .trim()
        .trim_matches('$')
        .trim()
        .trim_end_matches('.')
        .to_owned();
    for (from, to) in [
        ("\\left", ""),
        ("\\right", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\cdot", "*"),
        ("\\times", "*"),
        ("\\div", "/"),
        ("\\pi", "pi"),
        ("\\%", ""),
        ("%", ""),
        ("^\\circ", ""),
        ("\\{", "{"),
        ("\\}", "}"),
    ] {
        t = t.replace(from, to);
    }
    static TEXT: OnceLock<Regex> = OnceLock::new();
    t = re(&TEXT, r"\\(?:text|mathrm|mbox)\{[^}]*\}")
        .replace_all(&t, "")
        .into_owned();
    // \frac{a}{b}, \frac12, \frac1{b}, \sqrt{x}, \sqrt2
    static FRAC: OnceLock<Regex> = OnceLock::new();
    static FRAC_SHORT: OnceLock<Regex> = OnceLock::new();
    static SQRT: OnceLock<Regex> = OnceLock::new();
    let frac = re(&FRAC, r"\\frac\{([^{}]*)\}\{([^{}]*)\}");
    let frac_short = re(&FRAC_SHORT, r"\\frac\s*(\d|\{[^{}]*\})\s*(\d|\{[^{}]*\})");
    let sqrt = re(&SQRT, r"\\sqrt\s*(\d+|\{[^{}]*\})");
    for _ in 0..8 {
        let before = t.clone();
        t = frac.replace_all(&t, "(($1)/($2))").into_owned();
        t = frac_short
            .replace_all(&t, |c: &regex::Captures<'_>| {
                format!("(({})/({}))", unbrace(&c[1]), unbrace(&c[2]))
            })
            .into_owned();
        t = sqrt
            .replace_all(&t, |c: &regex::Captures<'_>| {
                format!("sqrt({})", unbrace(&c[1]))
            })
            .into_owned();
        if t == before {
            break;
        }
    }
    // Thousands separators: 1,234,567 → 1234567.
    static THOUSANDS: OnceLock<Regex> = OnceLock::new();
    let thousands = re(&THOUSANDS, r"\b(\d{1,3})((?:,\d{3})+)\b");
    t = thousands
        .replace_all(&t, |c: &regex::Captures<'_>| {
            format!("{}{}", &c[1], c[2].replace(',', ""))
        })
        .into_owned();
    let t = t.replace('{', "(").replace('}', ")");
    // Implicit products: 2pi, 3sqrt(2), 2(3+1).
    static IMPLICIT: OnceLock<Regex> = OnceLock::new();
    re(&IMPLICIT, r"(\d)\s*(pi|sqrt|\()")
        .replace_all(&t, "$1*$2")
        .into_owned()
}

fn unbrace(s: &str) -> &str {
    s.trim_start_matches('{').trim_end_matches('}')
}

/// Top-level comma-separated elements of a set/tuple answer (`(1, 2)`, `{1,2}`, `1, 2`).
fn elements(expr: &str) -> Vec<String> {
    let inner = expr.trim();
    let inner = if (inner.starts_with('(') && inner.ends_with(')'))
        || (inner.starts_with('[') && inner.ends_with(']'))
    {
        let body = &inner[1..inner.len() - 1];
        // Only strip if the brackets enclose the whole thing.
        let mut depth = 0i32;
        let whole = body.chars().all(|c| {
            match c {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                _ => {}
            }
            depth >= 0
        });
        if whole && body.contains(',') {
            body
        } else {
            inner
        }
    } else {
        inner
    };
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in inner.chars() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur).trim().to_owned());
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur.trim().to_owned());
    out
}

/// The value of one element: exact text when exact, else the decimal.
fn value(expr: &str) -> Result<(Option<String>, f64), String> {
    let out = Calculator
        .evaluate(expr, Some(30))
        .map_err(|e| format!("cannot evaluate {expr:?}: {e}"))?;
    let approx = out
        .decimal
        .as_deref()
        .unwrap_or(&out.value)
        .parse::<f64>()
        .map_err(|_| format!("{expr:?} is not a number"))?;
    Ok((out.exact, approx))
}

fn same(a: &str, b: &str) -> bool {
    if a.replace(' ', "") == b.replace(' ', "") {
        return true;
    }
    match (value(a), value(b)) {
        (Ok((Some(x), _)), Ok((Some(y), _))) => x == y,
        (Ok((_, x)), Ok((_, y))) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

/// Whether `answer` and `gold` are the same mathematical answer (sets order-insensitive).
pub fn math_equal(answer: &str, gold: &str) -> bool {
    let (a, g) = (to_expression(answer), to_expression(gold));
    let (ea, eg) = (elements(&a), elements(&g));
    if ea.len() != eg.len() {
        return false;
    }
    if ea.len() == 1 {
        if value(&g).is_err() {
            // A gold answer that is not a number: compare as normalised text.
            return a.replace(' ', "").eq_ignore_ascii_case(&g.replace(' ', ""));
        }
        return same(&a, &g);
    }
    let mut used = vec![false; eg.len()];
    for x in &ea {
        match eg
            .iter()
            .enumerate()
            .position(|(i, y)| !used[i] && same(x, y))
        {
            Some(i) => used[i] = true,
            None => return false,
        }
    }
    true
}
