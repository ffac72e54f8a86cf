//! Calculator errors: a message, the column it refers to where it applies, and a hint.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CalcError {
    pub column: Option<usize>,
    pub message: String,
    pub hint: Option<String>,
    /// A bounded-work cap was hit (reported as a limit, not a mistake in the input).
    pub limit: bool,
}

impl CalcError {
    pub(crate) fn at(column: usize, message: impl Into<String>) -> Self {
        Self {
            column: Some(column),
            message: message.into(),
            hint: None,
            limit: false,
        }
    }

    pub(crate) fn msg(message: impl Into<String>) -> Self {
        Self {
            column: None,
            message: message.into(),
            hint: None,
            limit: false,
        }
    }

    /// A bounded-work cap was hit.
    pub(crate) fn limit(message: impl Into<String>) -> Self {
        Self {
            limit: true,
            ..Self::msg(message)
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Attaches a column if the error has none yet.
    pub(crate) fn or_at(mut self, column: usize) -> Self {
        self.column.get_or_insert(column);
        self
    }
}

impl fmt::Display for CalcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match self.column {
            // A limit message ends in a number; keep the position apart from it.
            Some(c) if self.limit => write!(f, " (the operator at column {c})")?,
            Some(c) => write!(f, " at column {c}")?,
            None => {}
        }
        if let Some(h) = &self.hint {
            write!(f, " — {h}")?;
        }
        Ok(())
    }
}
