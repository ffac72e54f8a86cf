//! The status line: model and device, tokens/s, context used vs window, policy, MCP
//! servers (failures counted), recording on/off with the file.

use std::path::PathBuf;

use ratatui::{
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::Paragraph,
    Frame,
};
use verity_runtime::hub::ServerStatus;

/// What the status line shows.
#[derive(Debug, Clone, Default)]
pub struct StatusInfo {
    /// Model as given.
    pub model: String,
    /// Device in words.
    pub device: String,
    /// Generation speed of the last model call.
    pub tokens_per_s: Option<f64>,
    /// Tokens of the last model call's context (prompt + generated).
    pub context_used: Option<u64>,
    /// The model's context window.
    pub context_window: Option<usize>,
    /// Policy preset or file.
    pub policy: String,
    /// External servers.
    pub mcp: Vec<ServerStatus>,
    /// Recording file and records written.
    pub record: Option<(PathBuf, usize)>,
}

const SEP: &str = " │ ";

/// The last component of a path-like string (a model folder, a record file).
fn short(s: &str) -> String {
    std::path::Path::new(s)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .filter(|f| !f.is_empty() && s.contains(std::path::MAIN_SEPARATOR))
        .unwrap_or_else(|| s.to_owned())
}

impl StatusInfo {
    /// The line at `width` columns: segments of least use are dropped first when it does
    /// not fit (speed, then context, then MCP), so the model, policy and recording state
    /// always show.
    pub fn line(&self, width: usize) -> Line<'static> {
        let dim = Style::new().fg(Color::DarkGray);
        // (priority: lower is dropped first, spans)
        let mut segments: Vec<(u8, Vec<Span<'static>>)> = vec![
            (
                9,
                vec![
                    Span::styled(
                        format!(" {}", short(&self.model)),
                        Style::new().add_modifier(Modifier::BOLD),
                    ),
                    Span::styled(
                        if self.device.is_empty() {
                            String::new()
                        } else {
                            format!(" · {}", self.device)
                        },
                        dim,
                    ),
                ],
            ),
            (
                1,
                vec![Span::raw(match self.tokens_per_s {
                    Some(t) => format!("{t:.1} tok/s"),
                    None => "– tok/s".into(),
                })],
            ),
            (
                3,
                vec![Span::raw(match (self.context_used, self.context_window) {
                    (Some(u), Some(w)) => {
                        format!("ctx {u}/{w} ({:.0}%)", u as f64 * 100.0 / w.max(1) as f64)
                    }
                    (Some(u), None) => format!("ctx {u}"),
                    (None, Some(w)) => format!("ctx 0/{w}"),
                    (None, None) => "ctx –".into(),
                })],
            ),
            (
                8,
                vec![Span::raw(format!("policy {}", short(&self.policy)))],
            ),
        ];
        if !self.mcp.is_empty() {
            let failed: Vec<&str> = self
                .mcp
                .iter()
                .filter(|s| s.error.is_some())
                .map(|s| s.name.as_str())
                .collect();
            let mut spans = vec![Span::raw(format!(
                "mcp {}/{}",
                self.mcp.len() - failed.len(),
                self.mcp.len()
            ))];
            if !failed.is_empty() {
                spans.push(Span::styled(
                    format!(" ✗ {}", failed.join(",")),
                    Style::new().fg(Color::Red),
                ));
            }
            segments.push((5, spans));
        }
        segments.push((
            10,
            vec![match &self.record {
                Some((path, n)) => Span::styled(
                    format!("● rec {} ({n})", short(&path.display().to_string())),
                    Style::new().fg(Color::Red),
                ),
                None => Span::styled("rec off", dim),
            }],
        ));
        let seg_w = |spans: &[Span<'_>]| spans.iter().map(|s| s.width()).sum::<usize>();
        loop {
            let total: usize = segments.iter().map(|(_, s)| seg_w(s)).sum::<usize>()
                + crate::wrap::width(SEP) * segments.len().saturating_sub(1);
            if total <= width || segments.len() <= 2 {
                break;
            }
            let Some(drop) = segments
                .iter()
                .enumerate()
                .min_by_key(|(_, (p, _))| *p)
                .map(|(i, _)| i)
            else {
                break;
            };
            segments.remove(drop);
        }
        let mut spans = Vec::new();
        for (i, (_, seg)) in segments.into_iter().enumerate() {
            if i > 0 {
                spans.push(Span::styled(SEP, dim));
            }
            spans.extend(seg);
        }
        Line::from(spans)
    }

    /// Draws the line.
    pub fn draw(&self, frame: &mut Frame<'_>, area: Rect) {
        frame.render_widget(
            Paragraph::new(self.line(area.width as usize))
                .style(Style::new().bg(Color::Indexed(236))),
            area,
        );
    }
}
