//! MCP server: Verity's gated tools over stdio and streamable HTTP (rmcp).

mod http;
mod server;

pub use http::{serve_http, HttpOptions, Token};
pub use server::{serve_stdio, McpServer};
