//! End-to-end tests of the `verity` binary: real processes, real sockets, and MCP clients
//! nobody on this team wrote (the official Python SDK, the MCP Inspector CLI, the MCP
//! conformance suite). One test binary, one link step.
//!
//! Third-party clients are installed by `scripts/install-test-deps.sh` (CI runs it).

// A test that cannot set itself up should stop right there, with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
