//! Tool-name normalisation: the one place where `Calculator`, `ｃａｌｃｕｌａｔｏｒ` and
//! `calcu\u{200b}lator` are told apart or made equal.

use unicode_normalization::UnicodeNormalization;

/// Normalises a tool name for matching: NFKC, then lower case. Names that contain
/// invisible (format/control) characters, or anything but ASCII letters, digits, `_`,
/// `-` and `.` after NFKC, are rejected — they are how look-alike names slip past rules.
pub fn normalize_tool_name(name: &str) -> Result<String, InvalidToolName> {
    if name.is_empty() {
        return Err(InvalidToolName::Empty);
    }
    if let Some(c) = name.chars().find(|c| is_invisible(*c)) {
        return Err(InvalidToolName::Invisible(c));
    }
    let normalized: String = name.nfkc().collect::<String>().to_lowercase();
    if let Some(c) = normalized
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(InvalidToolName::Character(c));
    }
    Ok(normalized)
}

/// Why a tool name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidToolName {
    /// The name is empty.
    #[error("tool name is empty")]
    Empty,
    /// A zero-width, bidi or control character: how look-alike names slip past rules.
    #[error("tool name contains the invisible character U+{:04X}", u32::from(*.0))]
    Invisible(char),
    /// After NFKC, a character outside ASCII letters, digits, `_`, `-` and `.`.
    #[error("tool name contains the character '{}' (U+{:04X}); names must be ASCII letters, digits, '_', '-' or '.'", .0.escape_default(), u32::from(*.0))]
    Character(char),
}

/// Zero-width, bidi and other format or control characters.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
            | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{E0000}'..='\u{E0FFF}')
}

/// NFKC form of a string argument value with invisible characters removed: what a
/// human would read. Used to widen deny/ask matches and narrow allow matches.
pub(crate) fn normalize_text(s: &str) -> String {
    s.chars()
        .filter(|c| !is_invisible(*c) || matches!(c, '\n' | '\t' | '\r'))
        .collect::<String>()
        .nfkc()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_width_fold_to_one_name() {
        assert_eq!(
            normalize_tool_name("Calculator").as_deref(),
            Ok("calculator")
        );
        assert_eq!(
            normalize_tool_name("ｃａｌｃｕｌａｔｏｒ").as_deref(),
            Ok("calculator")
        );
        assert_eq!(
            normalize_tool_name("fs.Read_File").as_deref(),
            Ok("fs.read_file")
        );
    }

    #[test]
    fn invisible_and_confusable_characters_are_rejected() {
        assert!(normalize_tool_name("calcu\u{200b}lator").is_err());
        assert!(normalize_tool_name("calculator\u{feff}").is_err());
        assert!(normalize_tool_name("\u{202e}rotaluclac").is_err());
        // Cyrillic 'а' looks like Latin 'a'.
        assert!(normalize_tool_name("cаlculator").is_err());
        assert!(normalize_tool_name("").is_err());
        assert!(normalize_tool_name("code tool").is_err());
    }
}
