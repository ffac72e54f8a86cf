//! The input box: multi-line editing (Alt-Enter / Shift-Enter / Ctrl-J insert a newline),
//! history on Up/Down at the first/last row, paste, word and line deletion, and Tab
//! completion of slash commands.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::{
    layout::{Position, Rect},
    style::{Color, Style},
    text::{Line, Span},
    widgets::{Block, Paragraph},
    Frame,
};
use unicode_width::UnicodeWidthChar;

use crate::commands;

/// Rows of text the box grows to before it scrolls.
pub const MAX_ROWS: usize = 8;

/// What a key did to the editor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputOutcome {
    /// The key was used; nothing to do.
    Edited,
    /// Enter: the text is submitted (already cleared and added to history).
    Submit(String),
    /// Not an editing key.
    Ignored,
}

/// The editor state. Text is kept as lines of chars; the cursor is (row, column in chars).
#[derive(Debug, Default)]
pub struct Editor {
    lines: Vec<Vec<char>>,
    row: usize,
    col: usize,
    history: Vec<String>,
    /// Position while browsing history (None = editing a new entry).
    browsing: Option<usize>,
    /// The unsent text saved when history browsing starts.
    draft: Option<String>,
    /// Tab completion cycle: the typed prefix and the next candidate.
    completion: Option<(String, usize)>,
}

impl Editor {
    /// The text.
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(|l| l.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Replaces the text; the cursor goes to the end.
    pub fn set_text(&mut self, text: &str) {
        self.lines = text.split('\n').map(|l| l.chars().collect()).collect();
        if self.lines.is_empty() {
            self.lines.push(Vec::new());
        }
        self.row = self.lines.len() - 1;
        self.col = self.lines[self.row].len();
    }

    /// Whether there is no text.
    pub fn is_empty(&self) -> bool {
        self.lines.iter().all(|l| l.is_empty())
    }

    fn ensure(&mut self) {
        if self.lines.is_empty() {
            self.lines.push(Vec::new());
            self.row = 0;
            self.col = 0;
        }
    }

    /// Inserts text at the cursor (typing or a paste).
    pub fn insert(&mut self, text: &str) {
        self.ensure();
        self.completion = None;
        for c in text.chars() {
            match c {
                '\r' => {}
                '\n' => {
                    let rest = self.lines[self.row].split_off(self.col);
                    self.row += 1;
                    self.lines.insert(self.row, rest);
                    self.col = 0;
                }
                '\t' => {
                    for _ in 0..4 {
                        self.lines[self.row].insert(self.col, ' ');
                        self.col += 1;
                    }
                }
                c if c.is_control() => {}
                c => {
                    self.lines[self.row].insert(self.col, c);
                    self.col += 1;
                }
            }
        }
    }

    /// Adds a sent text to the history (no consecutive duplicates).
    pub fn remember(&mut self, text: &str) {
        if !text.trim().is_empty() && self.history.last().map(String::as_str) != Some(text) {
            self.history.push(text.to_owned());
        }
    }

    fn history_step(&mut self, back: bool) -> bool {
        if self.history.is_empty() {
            return false;
        }
        let next = match (self.browsing, back) {
            (None, true) => {
                self.draft = Some(self.text());
                Some(self.history.len() - 1)
            }
            (None, false) => return false,
            (Some(0), true) => Some(0),
            (Some(i), true) => Some(i - 1),
            (Some(i), false) if i + 1 < self.history.len() => Some(i + 1),
            (Some(_), false) => None,
        };
        self.browsing = next;
        let text = match next {
            Some(i) => self.history[i].clone(),
            None => self.draft.take().unwrap_or_default(),
        };
        self.set_text(&text);
        true
    }

    /// The slash command being typed, when the text is one.
    pub fn command_prefix(&self) -> Option<String> {
        let text = self.text();
        (text.starts_with('/') && !text.contains(char::is_whitespace)).then_some(text)
    }

    fn complete(&mut self) {
        let (prefix, next) = match &self.completion {
            Some((p, n)) => (p.clone(), *n),
            None => match self.command_prefix() {
                Some(p) => (p, 0),
                None => return,
            },
        };
        let matches = commands::matching(&prefix);
        if matches.is_empty() {
            return;
        }
        let pick = matches[next % matches.len()];
        self.set_text(&format!("/{}", pick.name));
        self.completion = Some((prefix, next + 1));
    }

    /// Handles a key.
    pub fn handle_key(&mut self, key: KeyEvent) -> InputOutcome {
        self.ensure();
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        let shift = key.modifiers.contains(KeyModifiers::SHIFT);
        if key.code != KeyCode::Tab {
            self.completion = None;
        }
        match key.code {
            KeyCode::Enter if alt || shift => self.insert("\n"),
            KeyCode::Char('j') if ctrl => self.insert("\n"),
            KeyCode::Enter => {
                let text = self.text();
                if text.trim().is_empty() {
                    return InputOutcome::Edited;
                }
                self.remember(&text);
                self.browsing = None;
                self.draft = None;
                self.set_text("");
                return InputOutcome::Submit(text);
            }
            KeyCode::Tab => self.complete(),
            KeyCode::Char('a') if ctrl => self.col = 0,
            KeyCode::Char('e') if ctrl => self.col = self.lines[self.row].len(),
            KeyCode::Char('u') if ctrl => {
                self.lines[self.row].drain(..self.col);
                self.col = 0;
            }
            KeyCode::Char('k') if ctrl => {
                self.lines[self.row].truncate(self.col);
            }
            KeyCode::Char('w') if ctrl => self.delete_word(),
            KeyCode::Backspace if alt || ctrl => self.delete_word(),
            KeyCode::Char(c) if !ctrl => self.insert(&c.to_string()),
            KeyCode::Backspace => {
                if self.col > 0 {
                    self.col -= 1;
                    self.lines[self.row].remove(self.col);
                } else if self.row > 0 {
                    let line = self.lines.remove(self.row);
                    self.row -= 1;
                    self.col = self.lines[self.row].len();
                    self.lines[self.row].extend(line);
                }
            }
            KeyCode::Delete => {
                if self.col < self.lines[self.row].len() {
                    self.lines[self.row].remove(self.col);
                } else if self.row + 1 < self.lines.len() {
                    let line = self.lines.remove(self.row + 1);
                    self.lines[self.row].extend(line);
                }
            }
            KeyCode::Left => {
                if self.col > 0 {
                    self.col -= 1;
                } else if self.row > 0 {
                    self.row -= 1;
                    self.col = self.lines[self.row].len();
                }
            }
            KeyCode::Right => {
                if self.col < self.lines[self.row].len() {
                    self.col += 1;
                } else if self.row + 1 < self.lines.len() {
                    self.row += 1;
                    self.col = 0;
                }
            }
            KeyCode::Home => self.col = 0,
            KeyCode::End => self.col = self.lines[self.row].len(),
            KeyCode::Up => {
                if self.row > 0 {
                    self.row -= 1;
                    self.col = self.col.min(self.lines[self.row].len());
                } else if !self.history_step(true) {
                    return InputOutcome::Ignored;
                }
            }
            KeyCode::Down => {
                if self.row + 1 < self.lines.len() {
                    self.row += 1;
                    self.col = self.col.min(self.lines[self.row].len());
                } else if !self.history_step(false) {
                    return InputOutcome::Ignored;
                }
            }
            _ => return InputOutcome::Ignored,
        }
        InputOutcome::Edited
    }

    fn delete_word(&mut self) {
        let line = &mut self.lines[self.row];
        let mut start = self.col;
        while start > 0 && line[start - 1] == ' ' {
            start -= 1;
        }
        while start > 0 && line[start - 1] != ' ' {
            start -= 1;
        }
        line.drain(start..self.col);
        self.col = start;
    }

    /// Display rows (hard-wrapped at `width`) and the cursor's row and column in them.
    fn layout(&self, width: usize) -> (Vec<String>, (usize, usize)) {
        let width = width.max(1);
        let mut rows = Vec::new();
        let mut cursor = (0, 0);
        let empty = Vec::new();
        let lines = if self.lines.is_empty() {
            std::slice::from_ref(&empty)
        } else {
            &self.lines[..]
        };
        for (r, line) in lines.iter().enumerate() {
            let mut cur = String::new();
            let mut w = 0;
            for (c_i, &c) in line.iter().enumerate() {
                let cw = c.width().unwrap_or(0);
                if w + cw > width {
                    rows.push(std::mem::take(&mut cur));
                    w = 0;
                }
                if r == self.row && c_i == self.col {
                    cursor = (rows.len(), w);
                }
                cur.push(c);
                w += cw;
            }
            if r == self.row && self.col >= line.len() {
                if w >= width {
                    rows.push(std::mem::take(&mut cur));
                    w = 0;
                }
                cursor = (rows.len(), w);
            }
            rows.push(cur);
        }
        (rows, cursor)
    }

    /// Rows the box needs at `width` (borders included).
    pub fn height(&self, width: u16) -> u16 {
        let (rows, _) = self.layout(width.saturating_sub(2) as usize);
        rows.len().clamp(1, MAX_ROWS) as u16 + 2
    }

    /// Draws the box and places the terminal cursor when `focused`.
    pub fn draw(&self, frame: &mut Frame<'_>, area: Rect, title: Line<'static>, focused: bool) {
        let inner_w = area.width.saturating_sub(2) as usize;
        let inner_h = area.height.saturating_sub(2) as usize;
        let (rows, (crow, ccol)) = self.layout(inner_w);
        // Scroll so the cursor row is visible.
        let first = (crow + 1).saturating_sub(inner_h);
        let shown: Vec<Line<'static>> = rows
            .into_iter()
            .skip(first)
            .take(inner_h)
            .map(Line::from)
            .collect();
        let border = if focused {
            Color::Cyan
        } else {
            Color::DarkGray
        };
        let block = Block::bordered()
            .border_style(Style::new().fg(border))
            .title(title);
        let placeholder = self.is_empty();
        let para = if placeholder {
            Paragraph::new(Line::from(Span::styled(
                "Ask anything · /help for commands",
                Style::new().fg(Color::DarkGray),
            )))
        } else {
            Paragraph::new(shown)
        };
        frame.render_widget(para.block(block), area);
        if focused {
            frame.set_cursor_position(Position::new(
                area.x + 1 + ccol as u16,
                area.y + 1 + (crow - first) as u16,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn typed(e: &mut Editor, s: &str) {
        for c in s.chars() {
            e.handle_key(key(KeyCode::Char(c)));
        }
    }

    #[test]
    fn multi_line_editing_and_submit() {
        let mut e = Editor::default();
        typed(&mut e, "hello");
        e.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT));
        typed(&mut e, "world");
        e.handle_key(key(KeyCode::Up));
        e.handle_key(key(KeyCode::End));
        e.handle_key(key(KeyCode::Backspace));
        assert_eq!(e.text(), "hell\nworld");
        assert_eq!(
            e.handle_key(key(KeyCode::Enter)),
            InputOutcome::Submit("hell\nworld".into())
        );
        assert!(e.is_empty());
    }

    #[test]
    fn history_browses_and_restores_the_draft() {
        let mut e = Editor::default();
        for s in ["one", "two"] {
            typed(&mut e, s);
            e.handle_key(key(KeyCode::Enter));
        }
        typed(&mut e, "dra");
        e.handle_key(key(KeyCode::Up));
        assert_eq!(e.text(), "two");
        e.handle_key(key(KeyCode::Up));
        assert_eq!(e.text(), "one");
        e.handle_key(key(KeyCode::Down));
        e.handle_key(key(KeyCode::Down));
        assert_eq!(e.text(), "dra");
    }

    #[test]
    fn tab_cycles_slash_commands() {
        let mut e = Editor::default();
        typed(&mut e, "/m");
        e.handle_key(key(KeyCode::Tab));
        let first = e.text();
        e.handle_key(key(KeyCode::Tab));
        assert_ne!(first, e.text());
        assert!(["/model", "/mcp"].contains(&first.as_str()), "{first}");
    }

    fn any_key() -> impl proptest::strategy::Strategy<Value = KeyEvent> {
        use proptest::prelude::*;
        let code = prop_oneof![
            any::<char>().prop_map(KeyCode::Char),
            Just(KeyCode::Enter),
            Just(KeyCode::Backspace),
            Just(KeyCode::Delete),
            Just(KeyCode::Left),
            Just(KeyCode::Right),
            Just(KeyCode::Up),
            Just(KeyCode::Down),
            Just(KeyCode::Home),
            Just(KeyCode::End),
            Just(KeyCode::Tab),
        ];
        let mods = prop_oneof![
            Just(KeyModifiers::NONE),
            Just(KeyModifiers::ALT),
            Just(KeyModifiers::CONTROL),
            Just(KeyModifiers::SHIFT),
        ];
        (code, mods).prop_map(|(c, m)| KeyEvent::new(c, m))
    }

    proptest::proptest! {
        /// Any key sequence: no panic, the cursor stays inside the text, layout covers it.
        #[test]
        fn any_key_sequence_keeps_the_cursor_in_the_text(
            keys in proptest::collection::vec(any_key(), 0..80),
            width in 1usize..30,
        ) {
            let mut e = Editor::default();
            for k in keys {
                e.handle_key(k);
                e.ensure();
                proptest::prop_assert!(e.row < e.lines.len());
                proptest::prop_assert!(e.col <= e.lines[e.row].len());
                let (rows, (r, c)) = e.layout(width);
                proptest::prop_assert!(r < rows.len() && c <= width);
            }
        }
    }

    #[test]
    fn cursor_layout_wraps() {
        let mut e = Editor::default();
        typed(&mut e, "abcdef");
        let (rows, cursor) = e.layout(4);
        assert_eq!(rows, ["abcd", "ef"]);
        assert_eq!(cursor, (1, 2));
        typed(&mut e, "gh");
        let (rows, cursor) = e.layout(4);
        assert_eq!(rows, ["abcd", "efgh", ""]);
        assert_eq!(cursor, (2, 0));
    }
}
