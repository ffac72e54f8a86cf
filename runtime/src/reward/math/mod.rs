//! Math answer equivalence, checked against `math-verify` (tests/suite/math_verify.rs).
//!
//! Extraction takes the answer a reply *states* — the last `\boxed{}`, then "the answer is
//! …", then the last inline math, then a reply that is itself an answer, then the last
//! number standing alone as a word — never digits out of the middle of a word (`Up7ߢ` has
//! no answer). Comparison reads both sides as one of: a choice letter (`B`, `(B)`,
//! `\text{B}`), an equation (`x = 3`, compared by its right side when the left is a
//! variable), an ordered tuple or interval (`(1,2)` ≠ `(2,1)` ≠ `[1,2]`), an unordered set
//! or list (`\{1,2\}` = `\{2,1\}`), a value, or text. Values and expressions compare by
//! exact rational evaluation — at random rational points when they have variables, so
//! `x^2+2x+1` = `(x+1)^2` — and decimals to 6 places; `50\%` equals both `0.5` and `50`.

mod expr;
mod latex;

use std::sync::OnceLock;

use expr::Expr;
use latex::re;
use regex::Regex;

/// What an answer is.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    /// A multiple-choice letter, A–J.
    Choice(char),
    /// `lhs = rhs`.
    Equation(Expr, Expr),
    /// `(a, b)`, `[a, b)`, …: ordered, brackets matter (a tuple or an interval).
    Tuple(char, Vec<Expr>, char),
    /// `{a, b}` or a bare list `a, b`: order does not matter.
    Set(Vec<Expr>),
    /// One value or expression.
    Value(Expr),
    /// Anything else, normalised (lower case, no spaces or punctuation).
    Text(String),
}

/// The content of the last `\boxed{…}` or `\fbox{…}` (balanced braces), if any.
fn last_boxed(s: &str) -> Option<String> {
    let start = s
        .rfind("\\boxed")
        .into_iter()
        .chain(s.rfind("\\fbox"))
        .max()?;
    let name_end = start
        + if s[start..].starts_with("\\boxed") {
            6
        } else {
            5
        };
    let open = name_end + s[name_end..].find('{')?;
    if !s[name_end..open].trim().is_empty() {
        return None;
    }
    latex::group(s, open).map(|(inner, _)| inner.trim().to_owned())
}

/// The answer a reply states, if it states one (see the module docs for the order).
pub fn extract_answer(text: &str) -> Option<String> {
    if let Some(b) = last_boxed(text) {
        return Some(b);
    }
    static ANSWER_IS: OnceLock<Regex> = OnceLock::new();
    let answer_is = re(
        &ANSWER_IS,
        r"(?i)\b(?:final answer|the answer|answer)\s*(?:is\b|:|=)\s*:?\s*(.+)$",
    );
    for line in text.lines().rev() {
        if let Some(c) = answer_is.captures(line.trim()) {
            let phrase = sentence(&c[1]);
            if !phrase.is_empty() {
                return Some(phrase);
            }
        }
    }
    static INLINE: OnceLock<Regex> = OnceLock::new();
    let inline = re(
        &INLINE,
        r"(?s)\$\$(.+?)\$\$|\$([^$]+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]",
    );
    if let Some(c) = inline.captures_iter(text).last() {
        let m = c.iter().skip(1).flatten().next().map(|m| m.as_str().trim());
        if let Some(m) = m.filter(|m| !m.is_empty()) {
            return Some(m.to_owned());
        }
    }
    let whole = text.trim().trim_end_matches('.');
    if whole.len() <= 60
        && !whole.contains('\n')
        && !has_prose(whole)
        && !matches!(read(whole), Answer::Text(_))
    {
        return Some(whole.to_owned());
    }
    last_standalone_number(text)
}

/// Whether text has words in it (runs of two or more letters that are neither LaTeX
/// commands nor math words): then it is prose, not an answer on its own.
fn has_prose(s: &str) -> bool {
    static WORD: OnceLock<Regex> = OnceLock::new();
    re(&WORD, r"\\?[A-Za-z]{2,}")
        .find_iter(s)
        .any(|m| !m.as_str().starts_with('\\') && !is_math_word(m.as_str()))
        || s.chars().any(|c| c.is_alphabetic() && !c.is_ascii())
}

/// A stated phrase up to the end of its sentence, without `$` delimiters.
fn sentence(s: &str) -> String {
    let s = s.trim();
    // ". " ends the sentence; a decimal point has no space after it.
    let cut = s.find(". ").unwrap_or(s.len());
    let phrase = s[..cut].trim().trim_end_matches('.').trim();
    // `$0.5$` → `0.5`; a lone `$5` (currency) is kept for `read`, which drops it.
    match phrase.strip_prefix('$').and_then(|p| p.strip_suffix('$')) {
        Some(inner) if !inner.is_empty() => inner.trim().to_owned(),
        _ => phrase.to_owned(),
    }
}

/// The last number that stands alone as a word: after the start, a space, `=`, `(` or `:`;
/// before the end, a space or sentence punctuation.
fn last_standalone_number(text: &str) -> Option<String> {
    static NUMBER: OnceLock<Regex> = OnceLock::new();
    let number = re(&NUMBER, r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?");
    number
        .find_iter(text)
        .filter(|m| {
            let before = text[..m.start()].chars().next_back();
            let after = text[m.end()..].chars().next();
            let before_ok = before.is_none_or(|c| c.is_whitespace() || "=(:$".contains(c));
            let after_ok = match after {
                None => true,
                Some(c) if c.is_whitespace() || ")$%".contains(c) => true,
                // Punctuation ends a word only if a space or the end follows it.
                Some(c) if ".,;:!?".contains(c) => text[m.end() + c.len_utf8()..]
                    .chars()
                    .next()
                    .is_none_or(char::is_whitespace),
                _ => false,
            };
            before_ok && after_ok
        })
        .last()
        .map(|m| m.as_str().to_owned())
}

/// Splits at commas outside brackets.
fn top_level_split(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            c if c == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Whether the bracket opening at the first char closes at the last.
fn wraps(s: &str) -> bool {
    let mut depth = 0i32;
    let n = s.chars().count();
    for (k, c) in s.chars().enumerate() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        if depth == 0 && k + 1 < n {
            return false;
        }
    }
    depth == 0
}

/// Words that belong to expressions (kept), as opposed to units and nouns (dropped after a
/// number: `12 apples`, `5 cm`).
fn is_math_word(w: &str) -> bool {
    expr::is_word(w)
}

fn has_vars(e: &Expr) -> bool {
    let mut v = Vec::new();
    e.vars(&mut v);
    !v.is_empty()
}

/// Text for comparison: `\text{…}`-style wrappers dropped, lower case, letters and digits
/// only.
fn normalise_text(s: &str) -> String {
    let s = s
        .replace("\\textbf", "")
        .replace("\\text", "")
        .replace("\\mathrm", "")
        .replace("\\mbox", "");
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Reads an answer (LaTeX or plain).
fn read(raw: &str) -> Answer {
    let mut s = raw.trim().trim_end_matches('.').trim().to_owned();
    for (open, close) in [("\\(", "\\)"), ("\\[", "\\]")] {
        if let Some(inner) = s.strip_prefix(open).and_then(|x| x.strip_suffix(close)) {
            s = inner.trim().to_owned();
        }
    }
    // Currency and math delimiters: `\$5`, `$5`, `$x$`.
    s = s.replace("\\$", "").replace('$', "");
    let s = s.trim();
    static CHOICE: OnceLock<Regex> = OnceLock::new();
    let choice = re(
        &CHOICE,
        r"^(?:\\text(?:bf)?\s*\{\s*)?\(?\s*([A-J])\s*\)?(?:\s*\})?(?:\s*[:.)]?\s*.*)?$",
    );
    if let Some(c) = choice.captures(s) {
        // `B`, `(B)`, `\text{B}`, `(B) 12`; not `Bx` or `B + 1`.
        let letter = c[1].chars().next().unwrap_or('A');
        let rest = s.trim_start_matches(|ch: char| "\\textbf{( ".contains(ch));
        let bare = s.replace("\\textbf", "").replace("\\text", "");
        let whole_is_letter = bare.len() <= 8 && normalise_text(&bare).len() == 1;
        let parenthesised = rest.starts_with(letter) && s.contains(&format!("({letter})"));
        if whole_is_letter || parenthesised {
            return Answer::Choice(letter);
        }
    }
    // `x \in [1, 2]`: the set it names.
    static MEMBER: OnceLock<Regex> = OnceLock::new();
    let s = re(&MEMBER, r"^[a-zA-Z]\s*\\in\s*")
        .replace(s, "")
        .into_owned();
    let plain = latex::to_plain(&s);
    let plain = drop_trailing_words(plain.trim());
    let plain = plain.trim();
    // Empty once units and `\\text{}` are gone, or words rather than math: text.
    if plain.is_empty() || has_prose(plain) {
        return Answer::Text(normalise_text(raw));
    }
    // Equations (one `=`, not `<=`/`>=`).
    let eqs: Vec<&str> = top_level_split(plain, '=');
    if eqs.len() == 2 && !eqs[0].ends_with(['<', '>', '!']) {
        if let (Some(l), Some(r)) = (expr::parse(eqs[0]), expr::parse(eqs[1])) {
            return Answer::Equation(l, r);
        }
    }
    let parts = top_level_split(plain, ',');
    if parts.len() > 1 {
        // 1,234,567.5 is one number.
        static THOUSANDS: OnceLock<Regex> = OnceLock::new();
        let thousands = re(&THOUSANDS, r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$");
        if thousands.is_match(plain) {
            if let Some(e) = expr::parse(&plain.replace(',', "")) {
                return Answer::Value(e);
            }
        }
        let elements: Option<Vec<Expr>> = parts.iter().map(|p| expr::parse(p)).collect();
        return match elements {
            Some(e) => Answer::Set(e),
            None => Answer::Text(normalise_text(raw)),
        };
    }
    // `{1, 2}` became `(1, 2)` in plain syntax: look at the LaTeX for set braces.
    if let Some(inner) = set_body(&s) {
        let parts = top_level_split(&inner, ',');
        let elements: Option<Vec<Expr>> = parts.iter().map(|p| expr::parse(p)).collect();
        if let Some(e) = elements {
            return Answer::Set(e);
        }
    }
    let first = plain.chars().next().unwrap_or(' ');
    let last = plain.chars().last().unwrap_or(' ');
    if "([".contains(first) && ")]".contains(last) && wraps(plain) {
        let inner = &plain[1..plain.len() - 1];
        let parts = top_level_split(inner, ',');
        if parts.len() > 1 {
            let elements: Option<Vec<Expr>> = parts.iter().map(|p| expr::parse(p)).collect();
            if let Some(e) = elements {
                return Answer::Tuple(first, e, last);
            }
        }
    }
    match expr::parse(plain) {
        Some(e) => Answer::Value(e),
        None => Answer::Text(normalise_text(raw)),
    }
}

/// The plain body of a `\{…\}` / `{…}` set, if the answer is one.
fn set_body(latex_answer: &str) -> Option<String> {
    let t = latex_answer.trim();
    let inner = t
        .strip_prefix("\\{")
        .and_then(|x| x.strip_suffix("\\}"))
        .or_else(|| {
            t.strip_prefix("\\left\\{")
                .and_then(|x| x.strip_suffix("\\right\\}"))
        })?;
    Some(latex::to_plain(inner))
}

/// `12 apples` → `12`; `5 cm` → `5`; `2 pi` stays.
fn drop_trailing_words(s: &str) -> String {
    let mut words: Vec<&str> = s.split_whitespace().collect();
    while words.len() > 1 {
        let w = words[words.len() - 1];
        let is_word = w.chars().all(char::is_alphabetic)
            && (w.chars().count() >= 2 || latex::is_unit(w))
            && !is_math_word(w);
        if !is_word {
            break;
        }
        words.pop();
    }
    words.join(" ")
}

/// Whether two values are the same, a percentage matching either reading (`50%` is 0.5,
/// and the 50 a "what percent" question wants).
fn same_expr(a: &Expr, b: &Expr) -> bool {
    if expr::equivalent(a, b) {
        return true;
    }
    let strip = |e: &Expr| match e {
        Expr::Percent(inner) => Some((**inner).clone()),
        _ => None,
    };
    match (strip(a), strip(b)) {
        (Some(x), None) => expr::equivalent(&x, b),
        (None, Some(y)) => expr::equivalent(a, &y),
        _ => false,
    }
}

fn same_elements_in_order(a: &[Expr], b: &[Expr]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_expr(x, y))
}

fn same_elements_any_order(a: &[Expr], b: &[Expr]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut used = vec![false; b.len()];
    a.iter().all(|x| {
        match b
            .iter()
            .enumerate()
            .position(|(i, y)| !used[i] && same_expr(x, y))
        {
            Some(i) => {
                used[i] = true;
                true
            }
            None => false,
        }
    })
}

/// Whether `answer` and `gold` are the same mathematical answer.
pub fn math_equal(answer: &str, gold: &str) -> bool {
    use Answer::*;
    match (read(answer), read(gold)) {
        (Choice(a), Choice(b)) => a == b,
        (Value(a), Value(b)) => same_expr(&a, &b),
        // `x = 3` states 3; so does a computation `6*7 = 42` (no variables on the left).
        (Equation(l, r), Value(v)) | (Value(v), Equation(l, r)) => {
            (expr::is_variable(&l) || !has_vars(&l)) && same_expr(&r, &v)
        }
        (Equation(l1, r1), Equation(l2, r2)) => {
            if expr::is_variable(&l1) && expr::is_variable(&l2) {
                l1 == l2 && same_expr(&r1, &r2)
            } else {
                // Same equation up to moving terms: l1 − r1 = ±(l2 − r2).
                let d = |l: Expr, r: Expr| Expr::Bin(expr::Op::Sub, Box::new(l), Box::new(r));
                let (a, b) = (d(l1, r1), d(l2, r2));
                same_expr(&a, &b) || same_expr(&a, &Expr::Neg(Box::new(b)))
            }
        }
        (Tuple(o1, a, c1), Tuple(o2, b, c2)) => {
            o1 == o2 && c1 == c2 && same_elements_in_order(&a, &b)
        }
        (Set(a), Set(b)) => same_elements_any_order(&a, &b),
        (Text(a), Text(b)) => !a.is_empty() && a == b,
        // A letter gold against a one-letter value (`b`): compare as text.
        (Choice(a), Value(Expr::Var(v))) | (Value(Expr::Var(v)), Choice(a)) => {
            v.eq_ignore_ascii_case(&a.to_string())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_answers() {
        assert_eq!(read("(B)"), Answer::Choice('B'));
        assert_eq!(read("\\text{B}"), Answer::Choice('B'));
        assert_eq!(read("B"), Answer::Choice('B'));
        assert!(matches!(read("(1,2)"), Answer::Tuple('(', _, ')')));
        assert!(matches!(read("\\{1,2\\}"), Answer::Set(_)));
        assert!(matches!(read("x = 3"), Answer::Equation(..)));
        assert!(matches!(read("1,000"), Answer::Value(_)));
        assert!(matches!(read("Monday"), Answer::Text(_)));
    }

    #[test]
    fn no_stray_numbers() {
        assert_eq!(extract_answer("Up7ߢ"), None);
        assert_eq!(extract_answer("abc123def"), None);
        assert_eq!(
            extract_answer("so we get 12 in the end").as_deref(),
            Some("12")
        );
        assert_eq!(
            extract_answer("The answer is 12 apples.").as_deref(),
            Some("12 apples")
        );
        assert_eq!(extract_answer("Thus $x = 3$.").as_deref(), Some("x = 3"));
    }
}
