//! The `Tool` trait (typed, what tool authors implement) and `DynTool` (erased, what the
//! registry, the MCP server and the agent loop hold).

use std::{future::Future, sync::Arc};

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::error::{FailureKind, ToolFailure};

pub use verity_types::{Annotations, Caller, Limits};

/// One progress report of a long-running call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// Work done so far.
    pub progress: f64,
    /// Total work, when known.
    pub total: Option<f64>,
    /// A short human-readable status.
    pub message: Option<String>,
}

/// Where a tool sends progress reports (an MCP progress notification, a UI event, ...).
pub type ProgressSink = Arc<dyn Fn(Progress) + Send + Sync>;

/// Per-call context handed to a tool: limits already tightened by policy, a cancellation
/// token, and an optional progress sink.
#[derive(Clone, Default)]
pub struct CallContext {
    /// Limits for this call (already the stricter of tool defaults and policy).
    pub limits: Limits,
    /// Cancelled when the caller gives up on the call; long tools must watch it.
    pub cancel: CancellationToken,
    /// Progress reports go here, if anyone listens.
    pub progress: Option<ProgressSink>,
    /// Who is calling. Tools do not judge it; they hand it to hooks such as a
    /// [`crate::web::UrlPolicy`].
    pub caller: Option<Caller>,
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("limits", &self.limits)
            .field("cancelled", &self.cancel.is_cancelled())
            .field("progress", &self.progress.is_some())
            .field("caller", &self.caller)
            .finish()
    }
}

impl CallContext {
    /// Reports progress if a sink is attached.
    pub fn report(&self, progress: Progress) {
        if let Some(sink) = &self.progress {
            sink(progress);
        }
    }
}

/// Everything a client needs to know to offer a tool to a model or an MCP client.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    /// Unique name (`calculator`, or `server.tool` for external tools).
    pub name: String,
    /// Human title.
    pub title: Option<String>,
    /// Description written for a model: what it does, when to use it, what it returns.
    pub description: String,
    /// JSON schema of the arguments object.
    pub input_schema: Value,
    /// JSON schema of the structured result, when the tool has one.
    pub output_schema: Option<Value>,
    /// Behaviour hints.
    pub annotations: Annotations,
    /// The tool's own limits (defaults and caps); policies may only tighten them.
    pub limits: Limits,
    /// Whether the tool enforces its wall-clock limit itself (around the work that the
    /// limit is about, not around one-time setup such as compiling an interpreter).
    /// Callers then apply only cancellation, no timeout of their own.
    pub enforces_wall_limit: bool,
    /// Whether the tool reports progress through [`CallContext::report`] (callers attach a
    /// sink only then).
    pub reports_progress: bool,
}

/// The result of a call, as a model and an MCP client see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolOutcome {
    /// Text rendering inserted into the model's context.
    pub text: String,
    /// Structured form (MCP `structuredContent`); `None` on failure.
    pub structured: Option<Value>,
    /// Set when the call failed; `text` then carries the failure message.
    pub failure: Option<FailureKind>,
}

impl ToolOutcome {
    /// An outcome describing a failure.
    pub fn failed(failure: ToolFailure) -> Self {
        Self {
            text: failure.message,
            structured: None,
            failure: Some(failure.kind),
        }
    }

    /// Whether the call failed.
    pub fn is_error(&self) -> bool {
        self.failure.is_some()
    }
}

/// A tool with typed arguments and a typed result. Implement this; the registry erases it
/// to [`DynTool`].
pub trait Tool: Send + Sync + 'static {
    /// Arguments; doc comments become the schema's descriptions.
    type Params: DeserializeOwned + JsonSchema + Send;
    /// Structured result.
    type Output: Serialize + JsonSchema + Send;

    /// Unique name.
    fn name(&self) -> &str;
    /// Human title.
    fn title(&self) -> Option<&str> {
        None
    }
    /// Description written for a model.
    fn description(&self) -> &str;
    /// Behaviour hints.
    fn annotations(&self) -> Annotations;
    /// The tool's own limits.
    fn limits(&self) -> Limits {
        Limits::default()
    }
    /// Whether [`Tool::call`] enforces `ctx.limits.wall_ms` itself.
    fn enforces_wall_limit(&self) -> bool {
        false
    }
    /// Whether [`Tool::call`] reports progress (long-running tools should).
    fn reports_progress(&self) -> bool {
        false
    }
    /// Runs the tool. Failures are values ([`ToolFailure`]), never panics.
    fn call(
        &self,
        params: Self::Params,
        ctx: CallContext,
    ) -> impl Future<Output = Result<Self::Output, ToolFailure>> + Send;
    /// Text rendering of a result, for a model's context.
    fn render(&self, output: &Self::Output) -> String;
}

/// A type-erased tool: JSON in, [`ToolOutcome`] out.
pub trait DynTool: Send + Sync {
    /// The tool's description for clients.
    fn spec(&self) -> &ToolSpec;
    /// Validates `args` against the tool's parameter type and runs it.
    fn call_json(&self, args: Value, ctx: CallContext) -> BoxFuture<'_, ToolOutcome>;
}

/// Adapter from [`Tool`] to [`DynTool`]; computes the spec (schemas) once.
pub(crate) struct Erased<T: Tool> {
    tool: T,
    spec: ToolSpec,
}

impl<T: Tool> Erased<T> {
    pub(crate) fn new(tool: T) -> Self {
        let spec = ToolSpec {
            name: tool.name().to_owned(),
            title: tool.title().map(str::to_owned),
            description: tool.description().to_owned(),
            input_schema: input_schema_for::<T::Params>(),
            output_schema: Some(schema_for::<T::Output>()),
            annotations: tool.annotations(),
            limits: tool.limits(),
            enforces_wall_limit: tool.enforces_wall_limit(),
            reports_progress: tool.reports_progress(),
        };
        Self { tool, spec }
    }
}

/// A JSON schema for `T`, inlined (no `$ref`s) so every MCP client and model prompt can
/// read it without resolving definitions.
pub fn schema_for<T: JsonSchema>() -> Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| {
        s.inline_subschemas = true;
    });
    let mut value = settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value();
    if let Some(obj) = value.as_object_mut() {
        obj.remove("$schema");
    }
    strip_rust_formats(&mut value);
    value
}

/// The schema of a tool's arguments: [`schema_for`], with optional arguments written as
/// optional rather than nullable (`"type": "integer"` outside `required`, not
/// `["integer", "null"]` with `"default": null`). Real chat templates render tool schemas
/// into prompts and some cannot read a type list — Hermes 2 Pro / 3's `json_to_python_type`
/// recurses forever on one — and a model was trained to leave an optional argument out, not
/// to send `null`. Arguments still accept `null` (serde reads it as absent).
pub fn input_schema_for<T: JsonSchema>() -> Value {
    let mut value = schema_for::<T>();
    optional_not_nullable(&mut value);
    value
}

fn optional_not_nullable(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    let required: Vec<String> = obj
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        for (name, prop) in props.iter_mut() {
            if let Value::Object(p) = prop {
                if !required.contains(name) {
                    if let Some(Value::Array(types)) = p.get("type") {
                        let kept: Vec<Value> =
                            types.iter().filter(|t| *t != "null").cloned().collect();
                        if kept.len() == 1 {
                            p.insert("type".into(), kept[0].clone());
                        } else if kept.len() < types.len() {
                            p.insert("type".into(), Value::Array(kept));
                        }
                    }
                    if let Some(Value::Array(values)) = p.get_mut("enum") {
                        values.retain(|v| !v.is_null());
                    }
                    if let Some(Value::Array(any)) = p.get_mut("anyOf") {
                        any.retain(|alt| alt.get("type") != Some(&Value::from("null")));
                        if any.len() == 1 {
                            if let Some(Value::Object(only)) = any.pop() {
                                p.remove("anyOf");
                                for (k, v) in only {
                                    p.entry(k).or_insert(v);
                                }
                            }
                        }
                    }
                    if p.get("default") == Some(&Value::Null) {
                        p.remove("default");
                    }
                }
            }
            optional_not_nullable(prop);
        }
    }
    if let Some(items) = obj.get_mut("items") {
        optional_not_nullable(items);
    }
}

/// schemars annotates Rust integer widths as `format: uint32` etc., which are not JSON
/// Schema formats; validators in MCP clients warn about them. The range is kept.
fn strip_rust_formats(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let rust_format = m.get("format").and_then(Value::as_str).is_some_and(|f| {
                ["int", "uint", "float", "double"]
                    .iter()
                    .any(|p| f.starts_with(p))
            });
            if rust_format {
                m.remove("format");
            }
            m.values_mut().for_each(strip_rust_formats);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_rust_formats),
        _ => {}
    }
}

impl<T: Tool> DynTool for Erased<T> {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call_json(&self, args: Value, ctx: CallContext) -> BoxFuture<'_, ToolOutcome> {
        Box::pin(async move {
            let params: T::Params = match serde_json::from_value(args) {
                Ok(p) => p,
                Err(e) => {
                    return ToolOutcome::failed(ToolFailure::invalid_arguments(format!(
                        "invalid arguments for '{}': {e}",
                        self.spec.name
                    )))
                }
            };
            let limits = self.spec.limits.tighten(ctx.limits);
            let ctx = CallContext { limits, ..ctx };
            match self.tool.call(params, ctx).await {
                Ok(output) => {
                    let text = self.tool.render(&output);
                    match serde_json::to_value(&output) {
                        Ok(structured) => ToolOutcome {
                            text,
                            structured: Some(structured),
                            failure: None,
                        },
                        Err(e) => ToolOutcome::failed(ToolFailure::new(
                            FailureKind::Execution,
                            format!("internal error: result could not be serialised: {e}"),
                        )),
                    }
                }
                Err(failure) => ToolOutcome::failed(failure),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[allow(dead_code)]
    #[derive(schemars::JsonSchema, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Fast,
        Exact,
    }

    #[allow(dead_code)]
    #[derive(schemars::JsonSchema, serde::Deserialize)]
    struct Params {
        expression: String,
        /// Digits.
        #[serde(default)]
        digits: Option<u32>,
        #[serde(default)]
        mode: Option<Mode>,
        #[serde(default)]
        nested: Option<Vec<Option<u8>>>,
    }

    #[test]
    fn optional_arguments_are_optional_not_nullable() {
        let s = input_schema_for::<Params>();
        let props = &s["properties"];
        assert_eq!(s["required"], json!(["expression"]));
        assert_eq!(props["digits"]["type"], "integer", "{s}");
        assert!(props["digits"].get("default").is_none(), "{s}");
        assert_eq!(props["digits"]["description"], "Digits.");
        assert_eq!(props["mode"]["enum"], json!(["fast", "exact"]), "{s}");
        assert_eq!(props["nested"]["type"], "array", "{s}");
        // What is not an optional argument keeps its `null`: an array's nullable items.
        assert_eq!(
            props["nested"]["items"]["type"],
            json!(["integer", "null"]),
            "{s}"
        );
        // Output schemas say what is serialised, `null`s included.
        let out = schema_for::<Params>();
        assert_eq!(
            out["properties"]["digits"]["type"],
            json!(["integer", "null"])
        );
    }
}
