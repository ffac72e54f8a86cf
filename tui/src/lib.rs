//! `verity chat`: a ratatui front end over the agent's event stream. It renders
//! [`AgentEvent`](verity_runtime::agent::AgentEvent)s (streamed tokens, tool-call cards,
//! policy decisions, results), implements the runtime's
//! [`Approver`](verity_runtime::Approver) as inline approval cards, and records every turn
//! as a `verity.traj/1` trajectory when asked.
//!
//! Layout of the crate: [`app`] is the state and what input does to it (pure, tested with
//! ratatui's `TestBackend`); `components/` are the pieces of the screen; `session` is the
//! one `select!` loop that talks to the terminal and the agent.
#![deny(missing_docs)]

pub mod app;
pub mod approver;
pub mod commands;
pub mod components;
mod error;
mod markdown;
mod session;
mod terminal;
pub mod transcript;
mod wrap;

pub use error::{Result, TuiError};
pub use session::{run_chat, ChatOptions, ChatTask, Loaded, Loader};

#[cfg(test)]
mod snapshots;
