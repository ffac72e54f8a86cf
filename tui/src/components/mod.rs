//! The pieces of the screen. Each owns its state, handles its keys and draws itself.

pub mod approval;
pub mod chat;
pub mod input;
pub mod status;
pub mod tool_card;
