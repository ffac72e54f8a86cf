//! Word wrapping of styled lines. The chat pane wraps itself (rather than letting
//! `Paragraph` do it) because scrolling needs the exact number of rows the transcript takes.

use ratatui::text::{Line, Span};
use unicode_width::UnicodeWidthChar;

/// Display width of a string (tabs count as one column; we expand them before).
pub fn width(s: &str) -> usize {
    s.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// Wraps one styled line to `width` columns, breaking after spaces where possible and
/// inside words only when a word is longer than the line. `indent` is prepended to every
/// continuation row (for list items and card bodies). Never returns an empty vector.
pub fn wrap_line(line: Line<'static>, max: usize, indent: &Span<'static>) -> Vec<Line<'static>> {
    let max = max.max(1);
    let indent_w = width(&indent.content).min(max.saturating_sub(1));
    let style = line.style;
    // Flatten into (char, style) cells: simple and exact with mixed styles.
    let cells: Vec<(char, ratatui::style::Style)> = line
        .spans
        .iter()
        .flat_map(|s| {
            let st = s.style;
            s.content
                .chars()
                .map(move |c| (if c == '\t' { ' ' } else { c }, st))
        })
        .collect();
    let mut rows: Vec<Vec<(char, ratatui::style::Style)>> = Vec::new();
    let mut start = 0;
    let mut first = true;
    while start < cells.len() || rows.is_empty() {
        let avail = if first { max } else { max - indent_w };
        let mut w = 0;
        let mut end = start;
        let mut last_space = None;
        while end < cells.len() {
            let cw = cells[end].0.width().unwrap_or(0);
            if w + cw > avail {
                break;
            }
            if cells[end].0 == ' ' {
                last_space = Some(end);
            }
            w += cw;
            end += 1;
        }
        let mut next = end;
        if end < cells.len() && cells[end].0 == ' ' {
            // The row ends exactly at a space: break there.
            next = end + 1;
        } else if end < cells.len() {
            if let Some(sp) = last_space.filter(|&sp| sp > start) {
                end = sp + 1;
            } else if end == start {
                // A character wider than the row: take it anyway.
                end = start + 1;
            }
            next = end;
        }
        let mut row = cells[start..end].to_vec();
        if end < cells.len() {
            while row.last().is_some_and(|c| c.0 == ' ') {
                row.pop();
            }
        }
        rows.push(row);
        start = next;
        first = false;
        if start >= cells.len() {
            break;
        }
    }
    rows.into_iter()
        .enumerate()
        .map(|(i, row)| {
            let mut spans = Vec::new();
            if i > 0 && indent_w > 0 {
                // The indent shrinks on very narrow rows so it never fills them.
                let cut: String = indent
                    .content
                    .chars()
                    .scan(0, |w, c| {
                        *w += c.width().unwrap_or(0);
                        (*w <= indent_w).then_some(c)
                    })
                    .collect();
                spans.push(Span::styled(cut, indent.style));
            }
            spans.extend(regroup(row));
            Line::from(spans).style(style)
        })
        .collect()
}

/// Cells back into spans, one per run of equal style.
fn regroup(cells: Vec<(char, ratatui::style::Style)>) -> Vec<Span<'static>> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut text = String::new();
    let mut cur = None;
    for (c, st) in cells {
        if cur != Some(st) {
            if let Some(prev) = cur {
                spans.push(Span::styled(std::mem::take(&mut text), prev));
            }
            cur = Some(st);
        }
        text.push(c);
    }
    if let Some(prev) = cur {
        spans.push(Span::styled(text, prev));
    }
    spans
}

/// Cuts a string to `max` columns, adding `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_owned();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = c.width().unwrap_or(0);
        if w + cw + 1 > max {
            break;
        }
        out.push(c);
        w += cw;
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lines: &[Line<'_>]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn wraps_at_spaces_and_splits_long_words() {
        let l = Line::from("the quick brown fox jumps");
        assert_eq!(
            text(&wrap_line(l, 10, &Span::raw(""))),
            ["the quick", "brown fox", "jumps"]
        );
        let l = Line::from("abcdefghijklmnop");
        assert_eq!(
            text(&wrap_line(l, 6, &Span::raw("  "))),
            ["abcdef", "  ghij", "  klmn", "  op"]
        );
    }

    #[test]
    fn keeps_styles_and_handles_empty_and_wide() {
        assert_eq!(text(&wrap_line(Line::from(""), 5, &Span::raw(""))), [""]);
        let l = Line::from(vec![
            Span::raw("ab "),
            Span::styled("cd", ratatui::style::Style::new().bold()),
        ]);
        let rows = wrap_line(l, 4, &Span::raw(""));
        assert_eq!(text(&rows), ["ab", "cd"]);
        assert_eq!(rows[1].spans[0].style, ratatui::style::Style::new().bold());
        // Wide characters never overflow the row.
        let rows = wrap_line(Line::from("日本語の文"), 4, &Span::raw(""));
        assert!(rows.iter().all(|r| width(&r.to_string()) <= 4), "{rows:?}");
        assert_eq!(truncate("hello world", 6), "hello…");
    }

    proptest::proptest! {
        /// Whatever a model writes: rows never overflow (a lone character wider than the
        /// row is the only exception), nothing but break spaces is lost, and markdown
        /// rendering of the same text never panics.
        #[test]
        fn wrapping_any_text_keeps_rows_within_width(text in "\\PC{0,200}", max in 1usize..60) {
            let line = Line::from(text.clone());
            let rows = wrap_line(line, max, &Span::raw("  "));
            proptest::prop_assert!(!rows.is_empty());
            for r in &rows {
                let w = width(&r.to_string());
                proptest::prop_assert!(w <= max || r.to_string().chars().count() <= 3, "{w} > {max}: {r:?}");
            }
            let kept: usize = rows.iter().map(|r| r.to_string().chars().filter(|c| *c != ' ').count()).sum();
            let orig = text.chars().filter(|c| *c != ' ' && *c != '\t').count();
            proptest::prop_assert_eq!(kept, orig);
            let _ = crate::markdown::render(&text, max, ratatui::style::Style::new());
        }
    }
}
