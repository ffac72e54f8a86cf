mod calculator_oracle;
mod cli;
mod common;
mod conformance;
mod http_security;
mod inspector;
mod mcp_python;
mod policies;
