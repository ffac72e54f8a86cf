//! A tool call as a card: tool, arguments, policy decision and rule, status with elapsed
//! time, result preview, duration.

use std::time::Instant;

use ratatui::{
    style::{Color, Modifier, Style},
    text::{Line, Span},
};
use verity_runtime::{Approval, Verdict};

use crate::{
    transcript::{CardProgress, CardStatus, ToolCard},
    wrap::{truncate, wrap_line},
};

const BORDER: Style = Style::new().fg(Color::DarkGray);
const LABEL: Style = Style::new().fg(Color::DarkGray);
/// Result rows shown before "… N more".
const PREVIEW_ROWS: usize = 4;
/// Argument rows shown collapsed.
const ARG_ROWS: usize = 1;

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// A spinner frame for an elapsed time (so a snapshot with a fixed clock is stable).
pub fn spinner(elapsed_ms: u128) -> &'static str {
    SPINNER[(elapsed_ms / 100) as usize % SPINNER.len()]
}

fn status_span(card: &ToolCard, now: Instant) -> Span<'static> {
    let dur = card
        .duration_ms
        .map(|ms| format!(" · {}", human_ms(ms)))
        .unwrap_or_default();
    match &card.status {
        CardStatus::Proposed => Span::styled("… proposed", LABEL),
        CardStatus::AwaitingApproval => Span::styled(
            "? awaiting approval",
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ),
        CardStatus::Running => {
            let el = now.saturating_duration_since(card.started).as_millis();
            let progress = card
                .progress
                .as_ref()
                .map(progress_text)
                .unwrap_or_default();
            Span::styled(
                format!(
                    "{} running {:.1}s{progress}",
                    spinner(el),
                    el as f64 / 1000.0
                ),
                Style::new().fg(Color::Cyan),
            )
        }
        CardStatus::Ok => Span::styled(format!("✓ ok{dur}"), Style::new().fg(Color::Green)),
        CardStatus::Error(kind) => {
            Span::styled(format!("✗ {kind}{dur}"), Style::new().fg(Color::Red))
        }
        CardStatus::Denied => Span::styled("⊘ denied", Style::new().fg(Color::Red)),
        CardStatus::TimedOut => {
            Span::styled(format!("⏱ timed out{dur}"), Style::new().fg(Color::Red))
        }
        CardStatus::Cancelled => Span::styled("⊘ cancelled", Style::new().fg(Color::DarkGray)),
    }
}

/// ` · 40% message`: the share done when the total is known, then the tool's status.
fn progress_text(p: &CardProgress) -> String {
    let share = p
        .total
        .filter(|t| *t > 0.0)
        .map(|t| format!(" {:.0}%", (p.done / t * 100.0).clamp(0.0, 100.0)))
        .unwrap_or_default();
    let message = p
        .message
        .as_deref()
        .filter(|m| !m.is_empty())
        .map(|m| format!(" {}", truncate(m, 40)))
        .unwrap_or_default();
    if share.is_empty() && message.is_empty() {
        String::new()
    } else {
        format!(" ·{share}{message}")
    }
}

fn human_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

fn verdict_style(v: Verdict) -> Style {
    match v {
        Verdict::Allow => Style::new().fg(Color::Green),
        Verdict::Ask => Style::new().fg(Color::Yellow),
        Verdict::Deny => Style::new().fg(Color::Red),
    }
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "allow",
        Verdict::Ask => "ask",
        Verdict::Deny => "deny",
    }
}

/// The card's rows at `width` columns. `expanded` shows full arguments and result.
pub fn card_lines(
    card: &ToolCard,
    width: usize,
    expanded: bool,
    now: Instant,
) -> Vec<Line<'static>> {
    let width = width.max(20);
    let inner = width.saturating_sub(2);
    let mut out = Vec::new();
    let title = format!("╭─ {} ", card.tool);
    let status = status_span(card, now);
    let fill =
        width.saturating_sub(crate::wrap::width(&title) + crate::wrap::width(&status.content) + 2);
    out.push(Line::from(vec![
        Span::styled("╭─ ", BORDER),
        Span::styled(
            card.tool.clone(),
            Style::new().fg(Color::White).add_modifier(Modifier::BOLD),
        ),
        Span::styled(format!(" {} ", "─".repeat(fill)), BORDER),
        status,
    ]));
    let bar = Span::styled("│ ", BORDER);
    let row = |label: &'static str, body: Vec<Span<'static>>| -> Vec<Line<'static>> {
        let mut spans = vec![bar.clone(), Span::styled(format!("{label:<7}"), LABEL)];
        spans.extend(body);
        wrap_line(Line::from(spans), width, &Span::styled("│        ", BORDER))
    };

    // Arguments: compact on one row, or pretty and complete when expanded / awaiting approval.
    let full_args = expanded || card.status == CardStatus::AwaitingApproval;
    if full_args {
        for (i, l) in arg_lines(&card.arguments).iter().enumerate() {
            let label = if i == 0 { "args" } else { "" };
            out.extend(row(label, vec![Span::raw(l.to_owned())]));
        }
    } else {
        let compact = card.arguments.to_string();
        let shown = truncate(&compact, inner.saturating_sub(7) * ARG_ROWS);
        out.extend(row("args", vec![Span::raw(shown)]));
    }

    if let Some((verdict, rule, reason)) = &card.decision {
        let mut body = vec![
            Span::styled(verdict_word(*verdict), verdict_style(*verdict)),
            Span::styled(format!(" · rule {rule}"), Style::new()),
        ];
        match &card.approval {
            Some(Approval::Approved { by }) => body.push(Span::styled(
                format!(" → approved by {by}"),
                Style::new().fg(Color::Green),
            )),
            Some(Approval::Denied { by, .. }) => body.push(Span::styled(
                format!(" → denied by {by}"),
                Style::new().fg(Color::Red),
            )),
            None => {}
        }
        if *verdict != Verdict::Allow && !reason.is_empty() {
            body.push(Span::styled(format!(" ({reason})"), LABEL));
        }
        out.extend(row("policy", body));
    }

    if let Some(result) = &card.result {
        let style = match card.status {
            CardStatus::Ok => Style::new(),
            _ => Style::new().fg(Color::Red),
        };
        let lines: Vec<&str> = result.lines().collect();
        let limit = if expanded { usize::MAX } else { PREVIEW_ROWS };
        for (i, l) in lines.iter().take(limit).enumerate() {
            let label = if i == 0 { "result" } else { "" };
            let text = if expanded {
                (*l).to_owned()
            } else {
                truncate(l, inner.saturating_sub(7))
            };
            out.extend(row(label, vec![Span::styled(text, style)]));
        }
        if lines.is_empty() {
            out.extend(row("result", vec![Span::styled("(empty)", LABEL)]));
        }
        if lines.len() > limit {
            out.extend(row(
                "",
                vec![Span::styled(
                    format!("… {} more lines (Ctrl-O expands)", lines.len() - limit),
                    LABEL,
                )],
            ));
        }
    }
    out.push(Line::styled(
        format!("╰{}", "─".repeat(width.min(3))),
        BORDER,
    ));
    out
}

/// Arguments for reading in full: one `key: value` row per field, and a string with line
/// breaks (code, a file) as an indented block of its lines rather than one escaped string.
pub fn arg_lines(args: &serde_json::Value) -> Vec<String> {
    let Some(obj) = args.as_object() else {
        return serde_json::to_string_pretty(args)
            .unwrap_or_else(|_| args.to_string())
            .lines()
            .map(str::to_owned)
            .collect();
    };
    if obj.is_empty() {
        return vec!["{}".into()];
    }
    let mut out = Vec::new();
    for (k, v) in obj {
        match v {
            serde_json::Value::String(s) if s.contains('\n') => {
                out.push(format!("{k}:"));
                out.extend(s.lines().map(|l| format!("  ┊ {l}")));
            }
            _ => out.push(format!("{k}: {v}")),
        }
    }
    out
}
