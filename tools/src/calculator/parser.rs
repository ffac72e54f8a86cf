//! Recursive-descent parser: tokens → AST, with columns for every node.
//!
//! Grammar (lowest to highest precedence):
//! ```text
//! expr     := additive (cmp additive)?          cmp: < <= > >= == !=   (not chained)
//! additive := term (('+' | '-') term)*
//! term     := unary (('*' | '/' | '%') unary)*   '%' here is modulo
//! unary    := ('-' | '+') unary | power
//! power    := postfix (('^' | '**') unary)?      right-associative; -2^2 = -4, 2^-1 = 1/2
//! postfix  := primary ('!' | '%')*               '%' here is percent: 15% = 3/20
//! primary  := number | name | name '(' args ')' | '(' expr ')'
//! ```
//! `%` is modulo when an operand follows it (a number, a name or `(`), otherwise percent:
//! `17 % 5` = 2, `15% * 80` = 12. There is no implicit multiplication: `2x`, `2(3)` and
//! `2 pi` are errors that point at the missing operator.

use super::{
    error::CalcError,
    lexer::{Spanned, Tok},
};

/// Deepest nesting accepted (parentheses, unary chains, function calls).
pub(crate) const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Number {
        literal: String,
        col: usize,
    },
    Name {
        name: String,
        col: usize,
    },
    Call {
        name: String,
        args: Vec<Expr>,
        col: usize,
    },
    Neg {
        operand: Box<Expr>,
        col: usize,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        col: usize,
    },
    Compare {
        op: CmpOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        col: usize,
    },
    Factorial {
        operand: Box<Expr>,
        col: usize,
    },
    Percent {
        operand: Box<Expr>,
        col: usize,
    },
}

impl Expr {
    pub(crate) fn col(&self) -> usize {
        match self {
            Expr::Number { col, .. }
            | Expr::Name { col, .. }
            | Expr::Call { col, .. }
            | Expr::Neg { col, .. }
            | Expr::Binary { col, .. }
            | Expr::Compare { col, .. }
            | Expr::Factorial { col, .. }
            | Expr::Percent { col, .. } => *col,
        }
    }
}

pub(crate) fn parse(tokens: &[Spanned], input_len: usize) -> Result<Expr, CalcError> {
    if tokens.is_empty() {
        return Err(CalcError::msg("empty expression").hint("write something like 2 + 2"));
    }
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
        end_col: input_len + 1,
    };
    let expr = p.expr()?;
    if let Some(t) = p.peek() {
        let msg = if starts_operand(&t.tok) {
            format!("missing operator before {}", t.tok.describe())
        } else {
            format!("unexpected {}", t.tok.describe())
        };
        let err = CalcError::at(t.col, msg);
        return Err(if starts_operand(&t.tok) {
            err.hint("there is no implicit multiplication; write 2*x, not 2x")
        } else {
            err
        });
    }
    Ok(expr)
}

fn starts_operand(tok: &Tok) -> bool {
    matches!(tok, Tok::Number(_) | Tok::Ident(_) | Tok::LParen)
}

struct Parser<'a> {
    tokens: &'a [Spanned],
    pos: usize,
    depth: usize,
    end_col: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Spanned> {
        self.tokens.get(self.pos)
    }

    fn peek_tok(&self) -> Option<&Tok> {
        self.peek().map(|s| &s.tok)
    }

    fn next(&mut self) -> Option<&Spanned> {
        let t = self.tokens.get(self.pos);
        self.pos += 1;
        t
    }

    /// Consumes the current token and returns its column.
    fn bump_col(&mut self) -> usize {
        let end = self.end_col;
        self.next().map_or(end, |t| t.col)
    }

    fn enter(&mut self, col: usize) -> Result<(), CalcError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(CalcError::limit(format!(
                "expression nested deeper than {MAX_DEPTH} levels"
            ))
            .or_at(col));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, CalcError> {
        let lhs = self.additive()?;
        let op = match self.peek_tok() {
            Some(Tok::Lt) => CmpOp::Lt,
            Some(Tok::Le) => CmpOp::Le,
            Some(Tok::Gt) => CmpOp::Gt,
            Some(Tok::Ge) => CmpOp::Ge,
            Some(Tok::EqEq) => CmpOp::Eq,
            Some(Tok::Ne) => CmpOp::Ne,
            _ => return Ok(lhs),
        };
        let col = self.bump_col();
        let rhs = self.additive()?;
        if let Some(t) = self.peek() {
            if matches!(
                t.tok,
                Tok::Lt | Tok::Le | Tok::Gt | Tok::Ge | Tok::EqEq | Tok::Ne
            ) {
                return Err(CalcError::at(t.col, "comparisons cannot be chained")
                    .hint("compare two values at a time"));
            }
        }
        Ok(Expr::Compare {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
            col,
        })
    }

    fn additive(&mut self) -> Result<Expr, CalcError> {
        let mut lhs = self.term()?;
        loop {
            let op = match self.peek_tok() {
                Some(Tok::Plus) => BinOp::Add,
                Some(Tok::Minus) => BinOp::Sub,
                _ => return Ok(lhs),
            };
            let col = self.bump_col();
            let rhs = self.term()?;
            lhs = Expr::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
                col,
            };
        }
    }

    fn term(&mut self) -> Result<Expr, CalcError> {
        let mut lhs = self.unary()?;
        loop {
            let op = match self.peek_tok() {
                Some(Tok::Star) => BinOp::Mul,
                Some(Tok::Slash) => BinOp::Div,
                // Postfix percent was consumed in `postfix`; a `%` still here is modulo.
                Some(Tok::Percent) => BinOp::Mod,
                _ => return Ok(lhs),
            };
            let col = self.bump_col();
            let rhs = self.unary()?;
            lhs = Expr::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
                col,
            };
        }
    }

    fn unary(&mut self) -> Result<Expr, CalcError> {
        match self.peek().cloned() {
            Some(Spanned {
                tok: Tok::Minus,
                col,
            }) => {
                self.pos += 1;
                self.enter(col)?;
                let operand = self.unary()?;
                self.depth -= 1;
                Ok(Expr::Neg {
                    operand: Box::new(operand),
                    col,
                })
            }
            Some(Spanned {
                tok: Tok::Plus,
                col,
            }) => {
                self.pos += 1;
                self.enter(col)?;
                let operand = self.unary();
                self.depth -= 1;
                operand
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Result<Expr, CalcError> {
        let base = self.postfix()?;
        if let Some(Spanned {
            tok: Tok::Caret,
            col,
        }) = self.peek().cloned()
        {
            self.pos += 1;
            self.enter(col)?;
            let exponent = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Binary {
                op: BinOp::Pow,
                lhs: Box::new(base),
                rhs: Box::new(exponent),
                col,
            });
        }
        Ok(base)
    }

    fn postfix(&mut self) -> Result<Expr, CalcError> {
        let mut e = self.primary()?;
        loop {
            match self.peek().cloned() {
                Some(Spanned {
                    tok: Tok::Bang,
                    col,
                }) => {
                    self.pos += 1;
                    e = Expr::Factorial {
                        operand: Box::new(e),
                        col,
                    };
                }
                Some(Spanned {
                    tok: Tok::Percent,
                    col,
                }) => {
                    let operand_follows = self
                        .tokens
                        .get(self.pos + 1)
                        .is_some_and(|t| starts_operand(&t.tok));
                    if operand_follows {
                        return Ok(e); // modulo, handled by `term`
                    }
                    self.pos += 1;
                    e = Expr::Percent {
                        operand: Box::new(e),
                        col,
                    };
                }
                _ => return Ok(e),
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, CalcError> {
        let end_col = self.end_col;
        let Some(t) = self.next().cloned() else {
            return Err(CalcError::at(end_col, "unexpected end of expression")
                .hint("expected a number, a name or '('"));
        };
        match t.tok {
            Tok::Number(literal) => Ok(Expr::Number {
                literal,
                col: t.col,
            }),
            Tok::Ident(name) => {
                if self.peek_tok() == Some(&Tok::LParen) {
                    self.pos += 1;
                    self.enter(t.col)?;
                    let args = self.args()?;
                    self.depth -= 1;
                    Ok(Expr::Call {
                        name,
                        args,
                        col: t.col,
                    })
                } else {
                    Ok(Expr::Name { name, col: t.col })
                }
            }
            Tok::LParen => {
                self.enter(t.col)?;
                let inner = self.expr()?;
                self.depth -= 1;
                self.expect_close(t.col)?;
                Ok(inner)
            }
            other => Err(
                CalcError::at(t.col, format!("unexpected {}", other.describe()))
                    .hint("expected a number, a name or '('"),
            ),
        }
    }

    /// Arguments after the opening parenthesis, through the closing one.
    fn args(&mut self) -> Result<Vec<Expr>, CalcError> {
        let open_col = self
            .tokens
            .get(self.pos - 1)
            .map_or(self.end_col, |t| t.col);
        let mut args = Vec::new();
        if self.peek_tok() == Some(&Tok::RParen) {
            self.pos += 1;
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            match self.peek().cloned() {
                Some(Spanned {
                    tok: Tok::Comma, ..
                }) => {
                    self.pos += 1;
                }
                _ => {
                    self.expect_close(open_col)?;
                    return Ok(args);
                }
            }
        }
    }

    fn expect_close(&mut self, open_col: usize) -> Result<(), CalcError> {
        match self.peek().cloned() {
            Some(Spanned {
                tok: Tok::RParen, ..
            }) => {
                self.pos += 1;
                Ok(())
            }
            Some(t) => Err(
                CalcError::at(t.col, format!("unexpected {}", t.tok.describe())).hint(format!(
                    "expected ')' to close the '(' at column {open_col}"
                )),
            ),
            None => Err(
                CalcError::at(self.end_col, "unexpected end of expression").hint(format!(
                    "expected ')' to close the '(' at column {open_col}"
                )),
            ),
        }
    }
}
