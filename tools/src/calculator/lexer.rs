//! Tokens of a calculator expression, each with the 1-based column where it starts.

use super::error::CalcError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A numeric literal exactly as written (validated digits, optional fraction/exponent).
    Number(String),
    Ident(String),
    Plus,
    Minus,
    Star,
    Slash,
    Caret,
    Percent,
    Bang,
    LParen,
    RParen,
    Comma,
    Lt,
    Le,
    Gt,
    Ge,
    EqEq,
    Ne,
}

impl Tok {
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Number(n) => format!("number '{n}'"),
            Tok::Ident(i) => format!("'{i}'"),
            Tok::Plus => "'+'".into(),
            Tok::Minus => "'-'".into(),
            Tok::Star => "'*'".into(),
            Tok::Slash => "'/'".into(),
            Tok::Caret => "'^'".into(),
            Tok::Percent => "'%'".into(),
            Tok::Bang => "'!'".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Comma => "','".into(),
            Tok::Lt => "'<'".into(),
            Tok::Le => "'<='".into(),
            Tok::Gt => "'>'".into(),
            Tok::Ge => "'>='".into(),
            Tok::EqEq => "'=='".into(),
            Tok::Ne => "'!='".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spanned {
    pub tok: Tok,
    /// 1-based character column.
    pub col: usize,
}

pub(crate) fn lex(input: &str) -> Result<Vec<Spanned>, CalcError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if i < chars.len() && chars[i] == '.' {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                // Only an exponent if digits follow (optionally signed); `2e` is an error below.
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    while j < chars.len() && chars[j].is_ascii_digit() {
                        j += 1;
                    }
                    i = j;
                } else {
                    return Err(CalcError::at(
                        i + 1,
                        "expected digits after the exponent marker 'e'",
                    )
                    .hint("write scientific notation as 6.02e23"));
                }
            }
            if i < chars.len() && chars[i] == '.' {
                return Err(CalcError::at(i + 1, "unexpected second '.' in a number"));
            }
            out.push(Spanned {
                tok: Tok::Number(chars[start..i].iter().collect()),
                col,
            });
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Spanned {
                tok: Tok::Ident(chars[start..i].iter().collect()),
                col,
            });
            continue;
        }
        let next = chars.get(i + 1).copied();
        let (tok, len) = match (c, next) {
            ('*', Some('*')) => (Tok::Caret, 2),
            ('<', Some('=')) => (Tok::Le, 2),
            ('>', Some('=')) => (Tok::Ge, 2),
            ('=', Some('=')) => (Tok::EqEq, 2),
            ('!', Some('=')) => (Tok::Ne, 2),
            ('+', _) => (Tok::Plus, 1),
            ('-' | '−', _) => (Tok::Minus, 1),
            ('*' | '×' | '·', _) => (Tok::Star, 1),
            ('/' | '÷', _) => (Tok::Slash, 1),
            ('^', _) => (Tok::Caret, 1),
            ('%', _) => (Tok::Percent, 1),
            ('!', _) => (Tok::Bang, 1),
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            (',', _) => (Tok::Comma, 1),
            ('<', _) => (Tok::Lt, 1),
            ('>', _) => (Tok::Gt, 1),
            ('=', _) => {
                return Err(CalcError::at(col, "unexpected '='")
                    .hint("use '==' to compare; assignment is not supported"))
            }
            _ => return Err(CalcError::at(col, format!("unexpected character '{c}'"))),
        };
        out.push(Spanned { tok, col });
        i += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_operators_and_columns() {
        let toks = lex("2 ** 6.02e23 <= .5").unwrap_or_default();
        let kinds: Vec<(Tok, usize)> = toks.into_iter().map(|s| (s.tok, s.col)).collect();
        assert_eq!(
            kinds,
            vec![
                (Tok::Number("2".into()), 1),
                (Tok::Caret, 3),
                (Tok::Number("6.02e23".into()), 6),
                (Tok::Le, 14),
                (Tok::Number(".5".into()), 17),
            ]
        );
    }

    #[test]
    fn bad_characters_report_their_column() {
        assert_eq!(
            lex("1 + $").map(|_| ()),
            Err(CalcError::at(5, "unexpected character '$'"))
        );
        assert!(lex("2e+").is_err());
        assert!(lex("1.2.3").is_err());
    }
}
