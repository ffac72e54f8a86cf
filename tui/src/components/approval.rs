//! The approval card: shown in place of the input box while the policy asks about a call.
//! Keys: `y` allow once, `s` allow for this session, `n` deny, `r` deny with a reason for the
//! model, `Esc` deny. Several pending asks (parallel calls) queue up, oldest first.

use std::collections::VecDeque;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::{
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Paragraph, Wrap},
    Frame,
};
use verity_runtime::Approval;

use super::tool_card::arg_lines;
use crate::approver::{PendingApproval, SessionRule, SessionRules};

/// What answering did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// Approved once.
    Once,
    /// Approved, and this rule now approves the tool for the session.
    Session(SessionRule),
    /// Denied.
    Denied,
}

/// Pending approvals and the reason being typed.
#[derive(Debug, Default)]
pub struct ApprovalPanel {
    queue: VecDeque<PendingApproval>,
    /// `Some` while a denial reason is typed.
    reason: Option<String>,
}

impl ApprovalPanel {
    /// Queues a request.
    pub fn push(&mut self, p: PendingApproval) {
        self.queue.push_back(p);
    }

    /// Whether something waits for an answer.
    pub fn is_active(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Drops every pending request (their approvers see a cancelled turn).
    pub fn cancel_all(&mut self) {
        self.queue.clear();
        self.reason = None;
    }

    fn answer(&mut self, approval: Approval) {
        if let Some(p) = self.queue.pop_front() {
            let _ = p.reply.send(approval);
        }
        self.reason = None;
    }

    /// Handles a key; `None` when the key was not for the panel.
    pub fn handle_key(&mut self, key: KeyEvent, rules: &SessionRules) -> Option<Answered> {
        let front = self.queue.front()?;
        if let Some(reason) = &mut self.reason {
            match key.code {
                KeyCode::Enter => {
                    let reason = if reason.trim().is_empty() {
                        "the user denied this call".to_owned()
                    } else {
                        format!("the user denied this call: {}", reason.trim())
                    };
                    self.answer(Approval::Denied {
                        by: "user".into(),
                        reason,
                    });
                    return Some(Answered::Denied);
                }
                KeyCode::Esc => self.reason = None,
                KeyCode::Backspace => {
                    reason.pop();
                }
                KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                    reason.push(c)
                }
                _ => {}
            }
            return None;
        }
        let tool = front.request.tool.clone();
        match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => {
                self.answer(Approval::Approved { by: "user".into() });
                Some(Answered::Once)
            }
            KeyCode::Char('s') | KeyCode::Char('S') => {
                let rule = rules.allow(&tool);
                self.answer(Approval::Approved {
                    by: format!("user ({})", rule.id),
                });
                // Later asks already queued for the same tool are covered by the new rule.
                let (same, rest): (VecDeque<_>, VecDeque<_>) =
                    self.queue.drain(..).partition(|p| p.request.tool == tool);
                self.queue = rest;
                for p in same {
                    let _ = p.reply.send(Approval::Approved {
                        by: format!("user ({})", rule.id),
                    });
                }
                Some(Answered::Session(rule))
            }
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
                self.answer(Approval::Denied {
                    by: "user".into(),
                    reason: "the user denied this call".into(),
                });
                Some(Answered::Denied)
            }
            KeyCode::Char('r') | KeyCode::Char('R') => {
                self.reason = Some(String::new());
                None
            }
            _ => None,
        }
    }

    /// Rows it wants.
    pub fn height(&self, width: u16) -> u16 {
        let Some(p) = self.queue.front() else {
            return 0;
        };
        let inner = width.saturating_sub(2).max(1) as usize;
        let rows = |s: &str| (crate::wrap::width(s) / inner + 1) as u16;
        let d = &p.request.decision;
        let policy = rows(&format!("policy ask · rule {}: {}", d.rule_id, d.reason));
        let args: u16 = arg_lines(&p.request.args).iter().map(|l| rows(l)).sum();
        (policy + args + 1 + 2).min(16)
    }

    /// Draws the card.
    pub fn draw(&self, frame: &mut Frame<'_>, area: Rect) {
        let Some(p) = self.queue.front() else {
            return;
        };
        let r = &p.request;
        let more = if self.queue.len() > 1 {
            format!(" (+{} more waiting)", self.queue.len() - 1)
        } else {
            String::new()
        };
        let title = Line::from(vec![
            Span::styled(
                " approve ",
                Style::new()
                    .fg(Color::Black)
                    .bg(Color::Yellow)
                    .add_modifier(Modifier::BOLD),
            ),
            Span::styled(
                format!(" run {}?", r.tool),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!("{more} ")),
        ]);
        let mut lines = vec![Line::from(vec![
            Span::styled("policy ", Style::new().fg(Color::DarkGray)),
            Span::styled("ask", Style::new().fg(Color::Yellow)),
            Span::raw(format!(
                " · rule {}{}",
                r.decision.rule_id,
                if r.decision.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", r.decision.reason)
                }
            )),
        ])];
        for l in arg_lines(&r.args) {
            lines.push(Line::raw(l));
        }
        let key = |k: &'static str| {
            Span::styled(k, Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD))
        };
        let keys = match &self.reason {
            Some(reason) => Line::from(vec![
                Span::raw("reason for the model: "),
                Span::styled(
                    reason.clone(),
                    Style::new().add_modifier(Modifier::UNDERLINED),
                ),
                Span::styled("▏ Enter sends · Esc back", Style::new().fg(Color::DarkGray)),
            ]),
            None => Line::from(vec![
                key("y"),
                Span::raw(" allow once  "),
                key("s"),
                Span::raw(format!(" allow {} for this session  ", r.tool)),
                key("n"),
                Span::raw(" deny  "),
                key("r"),
                Span::raw(" deny with reason"),
            ]),
        };
        // The keys stay visible however long the arguments are.
        let inner_h = area.height.saturating_sub(2) as usize;
        if lines.len() + 1 > inner_h && inner_h > 1 {
            let hidden = lines.len() + 2 - inner_h;
            lines.truncate(inner_h.saturating_sub(2));
            lines.push(Line::styled(
                format!("… {hidden} more rows: the card above shows the full arguments"),
                Style::new().fg(Color::DarkGray),
            ));
        }
        lines.push(keys);
        let block = Block::bordered()
            .border_style(Style::new().fg(Color::Yellow))
            .title(title);
        frame.render_widget(
            Paragraph::new(lines)
                .block(block)
                .wrap(Wrap { trim: false }),
            area,
        );
    }
}
