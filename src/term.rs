//! Text from tools and models printed to a terminal: control characters escaped, so a
//! sandboxed program's output cannot drive the terminal (`\x1b]0;…` retitles the window,
//! OSC 52 writes the clipboard, CSI moves the cursor over earlier output). Piped output is
//! left as it is: it is data, and a file or another program receives it unchanged.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal raw: C0 controls other than newline and tab, DEL,
/// and the C1 controls (U+0080–U+009F, among them the one-character CSI and OSC).
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || ('\u{80}'..='\u{9f}').contains(&c)
}

/// `text` with every unsafe character written as a visible escape (`\x1b`, `\u{9b}`).
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) {
            let n = c as u32;
            if n < 0x100 {
                out.push_str(&format!("\\x{n:02x}"));
            } else {
                out.push_str(&format!("\\u{{{n:x}}}"));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` escaped when `terminal`, else as it is.
pub fn for_output(text: &str, terminal: bool) -> Cow<'_, str> {
    if terminal {
        escape_controls(text)
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_drives_a_terminal_and_keeps_text() {
        assert_eq!(escape_controls("plain\ttext\nok ✓"), "plain\ttext\nok ✓");
        assert_eq!(escape_controls("\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07");
        assert_eq!(
            escape_controls("\x1b]52;c;aGk=\x1b\\"),
            "\\x1b]52;c;aGk=\\x1b\\"
        );
        assert_eq!(escape_controls("a\u{9b}2Jb\r\x7f"), "a\\x9b2Jb\\x0d\\x7f");
        assert_eq!(for_output("\x1b[2J", false), "\x1b[2J");
    }
}
