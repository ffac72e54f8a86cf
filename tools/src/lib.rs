//! Verity's built-in tools and the abstraction every tool — built-in or external — fits.
//!
//! A tool is plain Rust: typed parameters in (`Deserialize + JsonSchema`), a typed result
//! out (`Serialize + JsonSchema`) with a text rendering for a model. MCP, the permission
//! policy and trajectory recording all wrap a tool from the outside; this crate knows
//! nothing of them.
//!
//! ```
//! use verity_tools::{CallContext, ToolRegistry};
//!
//! # tokio_test();
//! # fn tokio_test() {
//! let registry = ToolRegistry::with_builtins();
//! let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! let outcome = rt.block_on(registry.call(
//!     "calculator",
//!     serde_json::json!({"expression": "1/3 + 1/6"}),
//!     CallContext::default(),
//! ));
//! assert_eq!(outcome.text, "exact: 1/2\ndecimal: 0.5");
//! # }
//! ```
#![deny(missing_docs)]

pub mod calculator;
pub mod code;
mod error;
mod registry;
pub mod search;
mod tool;
pub mod web;

pub use error::{FailureKind, ToolFailure};
pub use registry::ToolRegistry;
pub use tool::{
    Annotations, CallContext, Caller, DynTool, Limits, Progress, ProgressSink, Tool, ToolOutcome,
    ToolSpec,
};
