//! The chat pane: the transcript rendered to rows, with scrollback that stays put while new
//! output arrives below.

use std::time::Instant;

use ratatui::{
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::Paragraph,
    Frame,
};

use super::tool_card::{card_lines, spinner};
use crate::{
    markdown,
    transcript::{Entry, NoticeKind, Transcript},
    wrap::wrap_line,
};

/// Display toggles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Toggles {
    /// Show `<think>` reasoning in full.
    pub reasoning: bool,
    /// Show tool arguments and results in full.
    pub cards: bool,
}

/// Scroll state and a render cache.
#[derive(Debug, Default)]
pub struct ChatView {
    /// Rows scrolled up from the bottom (0 = follow the output).
    scroll: usize,
    /// Rows the transcript had at the last draw.
    last_total: usize,
    /// Rows of the last draw's viewport.
    page: usize,
    cache: Option<(CacheKey, Vec<Line<'static>>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CacheKey {
    revision: u64,
    width: usize,
    toggles: Toggles,
    /// Only set while something animates.
    frame: Option<u128>,
}

impl ChatView {
    /// Scrolls up (positive) or down (negative) by `rows`.
    pub fn scroll_by(&mut self, rows: isize) {
        let max = self.last_total.saturating_sub(self.page);
        let s = self.scroll as isize + rows;
        self.scroll = s.clamp(0, max as isize) as usize;
    }

    /// One page up or down.
    pub fn page(&mut self, up: bool) {
        let rows = self.page.saturating_sub(2).max(1) as isize;
        self.scroll_by(if up { rows } else { -rows });
    }

    /// Back to following the output.
    pub fn to_bottom(&mut self) {
        self.scroll = 0;
    }

    /// Renders the transcript at `width` into the cache, unless it is current.
    fn refresh(
        &mut self,
        transcript: &Transcript,
        width: usize,
        toggles: Toggles,
        now: Instant,
        started: Instant,
    ) {
        let frame = transcript
            .animating()
            .then(|| now.saturating_duration_since(started).as_millis() / 100);
        let key = CacheKey {
            revision: transcript.revision(),
            width,
            toggles,
            frame,
        };
        if self.cache.as_ref().is_none_or(|(k, _)| *k != key) {
            let anim_ms = now.saturating_duration_since(started).as_millis();
            let rows = render_transcript(transcript, width, toggles, now, anim_ms);
            self.cache = Some((key, rows));
        }
    }

    /// Draws the pane; `placeholder` is shown when there is nothing yet.
    #[allow(clippy::too_many_arguments)]
    pub fn draw(
        &mut self,
        frame: &mut Frame<'_>,
        area: Rect,
        transcript: &Transcript,
        toggles: Toggles,
        now: Instant,
        started: Instant,
        placeholder: Vec<Line<'static>>,
    ) {
        let width = area.width as usize;
        let height = area.height as usize;
        self.refresh(transcript, width, toggles, now, started);
        // Only the visible rows are copied out of the cache.
        let cached: &[Line<'static>] = match &self.cache {
            Some((_, rows)) if !rows.is_empty() => rows,
            _ => &placeholder,
        };
        let rows = cached;
        let total = rows.len();
        // Keep the view still while new rows arrive below a scrolled-up view.
        if self.scroll > 0 && total > self.last_total {
            self.scroll += total - self.last_total;
        }
        self.last_total = total;
        self.page = height;
        self.scroll = self.scroll.min(total.saturating_sub(height));
        let end = total - self.scroll;
        let start = end.saturating_sub(height);
        let mut visible: Vec<Line<'static>> = rows[start..end].to_vec();
        if self.scroll > 0 && height > 1 {
            visible.pop();
            visible.push(Line::styled(
                format!("↓ {} more rows below (PgDn / Ctrl-End)", self.scroll),
                Style::new().fg(Color::Black).bg(Color::Yellow),
            ));
        }
        frame.render_widget(Paragraph::new(visible), area);
    }
}

fn render_transcript(
    transcript: &Transcript,
    width: usize,
    toggles: Toggles,
    now: Instant,
    anim_ms: u128,
) -> Vec<Line<'static>> {
    let mut out: Vec<Line<'static>> = Vec::new();
    for entry in transcript.entries() {
        if !out.is_empty() {
            out.push(Line::default());
        }
        match entry {
            Entry::User(text) => {
                for (i, l) in text.lines().enumerate() {
                    let prefix = if i == 0 { "› " } else { "  " };
                    let line = Line::from(vec![
                        Span::styled(prefix, Style::new().fg(Color::Cyan)),
                        Span::styled(l.to_owned(), Style::new().add_modifier(Modifier::BOLD)),
                    ]);
                    out.extend(wrap_line(line, width, &Span::raw("  ")));
                }
            }
            Entry::Assistant(reply) => {
                if !reply.reasoning.is_empty() {
                    let words = reply.reasoning.split_whitespace().count();
                    let dim = Style::new().fg(Color::DarkGray);
                    if toggles.reasoning {
                        out.push(Line::styled("▾ thinking (Ctrl-T hides)", dim));
                        for l in markdown::render(
                            &reply.reasoning,
                            width.saturating_sub(2),
                            dim.add_modifier(Modifier::ITALIC),
                        ) {
                            let mut spans = vec![Span::styled("  ", dim)];
                            spans.extend(l.spans);
                            out.push(Line::from(spans));
                        }
                    } else {
                        out.push(Line::styled(
                            format!("▸ thinking · {words} words (Ctrl-T shows)"),
                            dim,
                        ));
                    }
                }
                if reply.text.is_empty() && reply.streaming {
                    out.push(Line::styled(
                        format!("{} …", spinner(anim_ms)),
                        Style::new().fg(Color::DarkGray),
                    ));
                } else {
                    out.extend(markdown::render(&reply.text, width, Style::new()));
                }
            }
            Entry::Tool(card) => out.extend(card_lines(card, width, toggles.cards, now)),
            Entry::Notice(n) => {
                let (mark, style) = match n.kind {
                    NoticeKind::Info => ("• ", Style::new().fg(Color::Gray)),
                    NoticeKind::Warn => ("! ", Style::new().fg(Color::Yellow)),
                    NoticeKind::Error => ("✗ ", Style::new().fg(Color::Red)),
                };
                for (i, l) in markdown::render(&n.text, width.saturating_sub(2), style)
                    .into_iter()
                    .enumerate()
                {
                    let mut spans = vec![Span::styled(if i == 0 { mark } else { "  " }, style)];
                    spans.extend(l.spans);
                    out.push(Line::from(spans));
                }
            }
        }
    }
    out
}
