//! The tool registry: name → tool. Built-in tools and (through the runtime) external MCP
//! tools live side by side here.

use std::{collections::BTreeMap, sync::Arc};

use serde_json::Value;

use crate::{
    calculator::Calculator,
    code::Code,
    error::{FailureKind, ToolFailure},
    search::Search,
    tool::{DynTool, Erased, Tool, ToolOutcome, ToolSpec},
    CallContext,
};

/// Name → tool. Cheap to clone (tools are behind `Arc`s).
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn DynTool>>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.tools.keys()).finish()
    }
}

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with every built-in tool (the code tool loads its interpreter on first
    /// use and reports `verity setup` if it is missing).
    pub fn with_builtins() -> Self {
        let mut registry = Self::new();
        registry.register(Calculator);
        registry.register(Code::default());
        registry.register(Search::default());
        registry
    }

    /// Adds a typed tool, replacing any tool of the same name.
    pub fn register<T: Tool>(&mut self, tool: T) {
        self.register_dyn(Arc::new(Erased::new(tool)));
    }

    /// Adds an already-erased tool (e.g. a proxy for an external MCP server's tool).
    pub fn register_dyn(&mut self, tool: Arc<dyn DynTool>) {
        self.tools.insert(tool.spec().name.clone(), tool);
    }

    /// The tool of that exact name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn DynTool>> {
        self.tools.get(name)
    }

    /// All tool specs, sorted by name.
    pub fn specs(&self) -> impl Iterator<Item = &ToolSpec> {
        self.tools.values().map(|t| t.spec())
    }

    /// Number of tools.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether no tool is registered.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// Calls a tool by name; an unknown name is a failure value, not an `Err`.
    pub async fn call(&self, name: &str, args: Value, ctx: CallContext) -> ToolOutcome {
        match self.tools.get(name) {
            Some(tool) => tool.call_json(args, ctx).await,
            None => {
                let known: Vec<&str> = self.tools.keys().map(String::as_str).collect();
                ToolOutcome::failed(ToolFailure::new(
                    FailureKind::UnknownTool,
                    format!("unknown tool '{name}'; available: {}", known.join(", ")),
                ))
            }
        }
    }
}
