//! Markdown (CommonMark via pulldown-cmark) to styled rows: headings, emphasis, inline and
//! fenced code, nested lists, quotes, rules and links. Works on partial text too, which is
//! what streaming needs: an unclosed fence simply renders as code until it closes.

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use ratatui::{
    style::{Color, Modifier, Style},
    text::{Line, Span},
};

use crate::wrap::wrap_line;

const CODE: Style = Style::new().fg(Color::Yellow);
const CODE_GUTTER: Style = Style::new().fg(Color::DarkGray);

/// Renders `text` to rows of at most `width` columns, every row prefixed by `prefix`.
pub fn render(text: &str, width: usize, base: Style) -> Vec<Line<'static>> {
    let mut r = Renderer {
        base,
        out: Vec::new(),
        cur: Vec::new(),
        styles: vec![base],
        lists: Vec::new(),
        quote: 0,
        code: None,
        pending_item: None,
        width,
        link: None,
    };
    let parser = Parser::new_ext(text, Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES);
    for event in parser {
        r.event(event);
    }
    r.flush();
    // No trailing blank rows.
    while r.out.last().is_some_and(|l| l.width() == 0) {
        r.out.pop();
    }
    r.out
}

struct Renderer {
    base: Style,
    out: Vec<Line<'static>>,
    cur: Vec<Span<'static>>,
    styles: Vec<Style>,
    /// Per open list: the next number (None = bullets).
    lists: Vec<Option<u64>>,
    quote: usize,
    /// Inside a fenced/indented code block: its language.
    code: Option<String>,
    /// Marker of the list item whose first row has not been written yet.
    pending_item: Option<String>,
    width: usize,
    link: Option<String>,
}

impl Renderer {
    fn style(&self) -> Style {
        self.styles.last().copied().unwrap_or(self.base)
    }

    fn push_style(&mut self, f: impl FnOnce(Style) -> Style) {
        let s = f(self.style());
        self.styles.push(s);
    }

    fn indent(&self) -> String {
        let mut s = String::new();
        for _ in 0..self.quote {
            s.push_str("▎ ");
        }
        // Items indent their continuation rows under the text, not the marker.
        for _ in 0..self.lists.len() {
            s.push_str("  ");
        }
        s
    }

    /// Ends the current row (a paragraph or item line), wrapping it.
    fn flush(&mut self) {
        if self.cur.is_empty() && self.pending_item.is_none() {
            return;
        }
        let indent = self.indent();
        let mut first = String::new();
        if let Some(marker) = self.pending_item.take() {
            // The marker hangs in the last level's indent.
            let outer = indent.chars().count().saturating_sub(2);
            first = indent.chars().take(outer).collect::<String>() + &marker;
        } else {
            first.push_str(&indent);
        }
        let mut spans = vec![Span::styled(first, Style::new().fg(Color::DarkGray))];
        spans.append(&mut self.cur);
        let hang = Span::styled(indent, Style::new().fg(Color::DarkGray));
        self.out
            .extend(wrap_line(Line::from(spans), self.width, &hang));
    }

    fn blank(&mut self) {
        if self.out.last().is_some_and(|l| l.width() > 0) && self.lists.is_empty() {
            self.out.push(Line::default());
        }
    }

    fn text(&mut self, t: &str) {
        if let Some(lang) = &self.code {
            let _ = lang;
            for line in t.split_inclusive('\n') {
                let line = line.trim_end_matches('\n');
                let row = Line::from(vec![
                    Span::styled(format!("{}│ ", self.indent()), CODE_GUTTER),
                    Span::styled(line.replace('\t', "    "), CODE),
                ]);
                let hang = Span::styled(format!("{}│ ", self.indent()), CODE_GUTTER);
                self.out.extend(wrap_line(row, self.width, &hang));
            }
            return;
        }
        let style = self.style();
        self.cur.push(Span::styled(t.to_owned(), style));
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) => self.text(&t),
            Event::Code(t) => self.cur.push(Span::styled(t.into_string(), CODE)),
            Event::SoftBreak => self.cur.push(Span::styled(" ", self.style())),
            Event::HardBreak => self.flush(),
            Event::Rule => {
                self.flush();
                self.out.push(Line::styled(
                    "─".repeat(self.width.min(40)),
                    Style::new().fg(Color::DarkGray),
                ));
            }
            Event::Html(t) | Event::InlineHtml(t) => self.text(&t),
            Event::TaskListMarker(done) => {
                self.cur.push(Span::raw(if done { "[x] " } else { "[ ] " }))
            }
            _ => {}
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph => {}
            Tag::Heading { level, .. } => {
                self.flush();
                self.blank();
                let color = match level {
                    HeadingLevel::H1 => Color::Magenta,
                    HeadingLevel::H2 => Color::Cyan,
                    _ => Color::Blue,
                };
                self.push_style(|s| s.fg(color).add_modifier(Modifier::BOLD));
            }
            Tag::BlockQuote(_) => {
                self.flush();
                self.quote += 1;
                self.push_style(|s| s.add_modifier(Modifier::ITALIC));
            }
            Tag::CodeBlock(kind) => {
                self.flush();
                let lang = match kind {
                    CodeBlockKind::Fenced(l) => l.into_string(),
                    CodeBlockKind::Indented => String::new(),
                };
                if !lang.is_empty() {
                    self.out.push(Line::styled(
                        format!("{}╭ {lang}", self.indent()),
                        CODE_GUTTER,
                    ));
                }
                self.code = Some(lang);
            }
            Tag::List(start) => {
                self.flush();
                self.lists.push(start);
            }
            Tag::Item => {
                self.flush();
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let m = format!("{n}. ");
                        *n += 1;
                        m
                    }
                    _ => "• ".to_owned(),
                };
                self.pending_item = Some(marker);
            }
            Tag::Emphasis => self.push_style(|s| s.add_modifier(Modifier::ITALIC)),
            Tag::Strong => self.push_style(|s| s.add_modifier(Modifier::BOLD)),
            Tag::Strikethrough => self.push_style(|s| s.add_modifier(Modifier::CROSSED_OUT)),
            Tag::Link { dest_url, .. } => {
                self.link = Some(dest_url.into_string());
                self.push_style(|s| s.fg(Color::Cyan).add_modifier(Modifier::UNDERLINED));
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => {
                self.flush();
                self.blank();
            }
            TagEnd::Heading(_) => {
                self.styles.pop();
                self.flush();
            }
            TagEnd::BlockQuote(_) => {
                self.flush();
                self.styles.pop();
                self.quote = self.quote.saturating_sub(1);
                self.blank();
            }
            TagEnd::CodeBlock => {
                self.code = None;
                self.blank();
            }
            TagEnd::List(_) => {
                self.flush();
                self.lists.pop();
                self.blank();
            }
            TagEnd::Item => self.flush(),
            TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough => {
                self.styles.pop();
            }
            TagEnd::Link => {
                self.styles.pop();
                if let Some(url) = self.link.take() {
                    self.cur.push(Span::styled(
                        format!(" ({url})"),
                        Style::new().fg(Color::DarkGray),
                    ));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(md: &str, width: usize) -> Vec<String> {
        render(md, width, Style::new())
            .iter()
            .map(|l| l.to_string())
            .collect()
    }

    #[test]
    fn paragraphs_lists_and_code() {
        let md = "Hello **world**.\n\n- one\n- two\n  1. nested\n\n```py\nprint(1)\n```\n";
        assert_eq!(
            rows(md, 40),
            [
                "Hello world.",
                "",
                "• one",
                "• two",
                "  1. nested",
                "",
                "╭ py",
                "│ print(1)",
            ]
        );
    }

    #[test]
    fn bold_is_styled_and_partial_fence_is_code() {
        let lines = render("a **b**", 20, Style::new());
        assert!(lines[0]
            .spans
            .iter()
            .any(|s| s.content == "b" && s.style.add_modifier.contains(Modifier::BOLD)));
        // Streaming: the fence has not closed yet.
        assert_eq!(rows("x\n```\nlet a", 20), ["x", "", "│ let a"]);
    }

    #[test]
    fn list_items_wrap_under_their_text() {
        assert_eq!(rows("- alpha beta gamma", 12), ["• alpha beta", "  gamma"]);
    }
}
