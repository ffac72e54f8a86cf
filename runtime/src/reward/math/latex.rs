//! LaTeX as models write answers → the plain syntax `expr.rs` parses: `\frac{a}{b}` →
//! `((a)/(b))`, `\sqrt[3]{x}` → `((x)^(1/3))`, `\cdot` → `*`, units and `\text{}` dropped,
//! thousands separators (`1,000`, `1{,}000`, `1\,000`) removed.

use std::sync::OnceLock;

use regex::Regex;

/// A constant pattern, compiled once (the patterns are literals in this file; a bad one is
/// a bug caught by the tests, never an input error).
pub fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| {
        Regex::new(pattern).unwrap_or_else(|e| panic!("bad pattern {pattern}: {e}"))
    })
}

/// The balanced `{…}` group starting at byte `open` of `s` (which must be `{`): its content
/// and the index just past it.
pub fn group(s: &str, open: usize) -> Option<(&str, usize)> {
    if !s[open..].starts_with('{') {
        return None;
    }
    let mut depth = 0usize;
    for (i, c) in s[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some((&s[open + 1..open + i], open + i + 1));
                }
            }
            _ => {}
        }
    }
    None
}

/// One argument of a macro at `at`: a `{group}` or a single character (`\frac12`).
fn argument(s: &str, at: usize) -> Option<(String, usize)> {
    let at = at + s[at..].len() - s[at..].trim_start().len();
    if s[at..].starts_with('{') {
        let (inner, end) = group(s, at)?;
        return Some((inner.to_owned(), end));
    }
    let c = s[at..].chars().next()?;
    if c == '\\' {
        // A macro as the argument: `\frac\pi2`.
        let name_len = s[at + 1..]
            .char_indices()
            .find(|(_, c)| !c.is_ascii_alphabetic())
            .map_or(s.len() - at - 1, |(i, _)| i);
        let end = at + 1 + name_len;
        return Some((s[at..end].to_owned(), end));
    }
    Some((c.to_string(), at + c.len_utf8()))
}

/// Replaces `\name{a}{b}` (with `args` arguments) using `f`, innermost content first.
fn replace_macro(s: &str, name: &str, args: usize, f: &dyn Fn(&[String]) -> String) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find(name) {
        let after = pos + name.len();
        // `\frac` must not match `\fracture`.
        if rest[after..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
        {
            out.push_str(&rest[..after]);
            rest = &rest[after..];
            continue;
        }
        let mut at = after;
        let mut got = Vec::new();
        let mut ok = true;
        for _ in 0..args {
            match argument(rest, at) {
                Some((a, end)) => {
                    got.push(to_plain(&a));
                    at = end;
                }
                None => {
                    ok = false;
                    break;
                }
            }
        }
        out.push_str(&rest[..pos]);
        if ok {
            out.push_str(&f(&got));
            rest = &rest[at..];
        } else {
            out.push_str(&rest[pos..after]);
            rest = &rest[after..];
        }
    }
    out.push_str(rest);
    out
}

/// LaTeX → plain expression syntax. Best effort: what it cannot read stays as it is, and
/// the parser then refuses it.
pub fn to_plain(s: &str) -> String {
    let mut t = s.trim().to_owned();
    // Thousands separators written the LaTeX way, before `\,` becomes nothing.
    static THIN: OnceLock<Regex> = OnceLock::new();
    t = re(&THIN, r"(\d)(?:\{,\}|\\,|\\ )(\d{3})")
        .replace_all(&t, "$1$2")
        .into_owned();
    t = re(&THIN, r"(\d)(?:\{,\}|\\,|\\ )(\d{3})")
        .replace_all(&t, "$1$2")
        .into_owned();
    for (from, to) in [
        ("\\left", ""),
        ("\\right", ""),
        ("\\displaystyle", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\:", ""),
        ("\\quad", " "),
        ("\\ ", " "),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\cdot", "*"),
        ("\\times", "*"),
        ("\\ast", "*"),
        ("\\div", "/"),
        ("\\pi", " pi "),
        ("\\infty", " inf "),
        ("\\%", "%"),
        ("\\$", ""),
        ("^\\circ", ""),
        ("^{\\circ}", ""),
        ("\\circ", ""),
        ("\\degree", ""),
        ("\\{", "{"),
        ("\\}", "}"),
        ("\\lbrace", "{"),
        ("\\rbrace", "}"),
        ("\\lvert", "|"),
        ("\\rvert", "|"),
        ("\\mid", "|"),
        ("\\le", "<="),
        ("\\ge", ">="),
    ] {
        t = t.replace(from, to);
    }
    // `\text{…}` and friends: a unit or a word — dropped (a choice letter is read before
    // this runs).
    static TEXT: OnceLock<Regex> = OnceLock::new();
    t = re(
        &TEXT,
        r"\\(?:text|textbf|mathrm|mbox|mathbf|operatorname)\s*\{([^{}]*)\}",
    )
    .replace_all(&t, |c: &regex::Captures<'_>| {
        let inner = c[1].trim();
        // `\mathrm{e}`, `\operatorname{sin}` keep their letters.
        if inner.len() <= 3 && inner.chars().all(|ch| ch.is_ascii_alphabetic()) && !is_unit(inner) {
            format!(" {inner} ")
        } else {
            " ".into()
        }
    })
    .into_owned();
    t = replace_macro(&t, "\\frac", 2, &|a| format!("(({})/({}))", a[0], a[1]));
    // `\sqrt[n]{x}`.
    static ROOT: OnceLock<Regex> = OnceLock::new();
    let root = re(&ROOT, r"\\sqrt\s*\[([^\]]*)\]");
    while let Some(m) = root.captures(&t) {
        let (whole, n) = (m.get(0).map_or(0..0, |g| g.range()), m[1].to_owned());
        let Some((arg, end)) = argument(&t, whole.end) else {
            break;
        };
        let plain = to_plain(&arg);
        t = format!(
            "{}((({}))^(1/({}))){}",
            &t[..whole.start],
            plain,
            n,
            &t[end..]
        );
    }
    t = replace_macro(&t, "\\sqrt", 1, &|a| format!("sqrt({})", a[0]));
    for f in ["sin", "cos", "tan", "ln", "log", "exp"] {
        t = t.replace(&format!("\\{f}"), &format!(" {f} "));
    }
    for g in [
        "alpha", "beta", "gamma", "theta", "lambda", "mu", "sigma", "omega", "phi",
    ] {
        t = t.replace(&format!("\\{g}"), &format!(" {g} "));
    }
    // Grouping braces: `x^{2}` → `x^(2)` (sets were read before this runs).
    t.replace('{', "(").replace('}', ")")
}

/// Words that are units (dropped after a number: `5 cm`, `12 apples` is handled by the
/// caller's trailing-word rule).
pub fn is_unit(w: &str) -> bool {
    matches!(
        w.trim().to_ascii_lowercase().as_str(),
        "cm" | "m"
            | "km"
            | "mm"
            | "kg"
            | "g"
            | "mg"
            | "s"
            | "sec"
            | "min"
            | "h"
            | "hr"
            | "units"
            | "unit"
            | "degrees"
            | "degree"
            | "dollars"
            | "cents"
            | "inches"
            | "feet"
            | "ft"
            | "in"
            | "meters"
            | "miles"
            | "hours"
            | "minutes"
            | "seconds"
            | "days"
            | "years"
            | "l"
            | "ml"
            | "mph"
            | "sq"
            | "square"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latex_becomes_plain_syntax() {
        assert_eq!(to_plain("\\frac{1}{2}"), "((1)/(2))");
        assert_eq!(to_plain("\\frac12"), "((1)/(2))");
        assert_eq!(to_plain("\\dfrac{\\sqrt{3}}{2}"), "((sqrt(3))/(2))");
        assert_eq!(to_plain("1{,}000"), "1000");
        assert_eq!(to_plain("1\\,000\\,000"), "1000000");
        assert_eq!(to_plain("x^{2}"), "x^(2)");
        assert_eq!(to_plain("5\\text{ cm}").trim(), "5");
        assert!(to_plain("\\sqrt[3]{8}").contains("^(1/(3))"));
        // Unbalanced input does not panic.
        let _ = to_plain("\\frac{1}{");
        let _ = to_plain("\\sqrt[3]{");
    }
}
