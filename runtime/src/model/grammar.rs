//! Strict mode: a grammar (llguidance Lark) that only admits valid calls of offered tools,
//! in the model's native `<tool_call>{"name":…,"arguments":…}</tool_call>` format.
//!
//! Two llguidance settings matter with small or undertrained models (measured, see
//! FINDINGS.md): `whitespace_flexible: false` — otherwise a model can emit whitespace
//! forever inside a JSON object — and `additionalProperties: false` at every object level,
//! so the object can only grow by the keys the schema names. `<tool_call>` is written bare:
//! it names the special token, not its bytes.

use serde_json::{json, Map, Value};

use super::{ToolChoice, ToolDef};

/// The schema of one call of one of `tools`: `{"name": <const>, "arguments": <schema>}`.
pub fn call_schema(tools: &[&ToolDef]) -> Value {
    schema_of_calls(tools, "arguments", guidance())
}

/// One call of one of `tools` as `{"name": <const>, <args_key>: <schema>}`, decoded with
/// the llguidance options `guidance`.
fn schema_of_calls(tools: &[&ToolDef], args_key: &str, guidance: Value) -> Value {
    let variants: Vec<Value> = tools
        .iter()
        .map(|t| {
            json!({
                "type": "object",
                "properties": {"name": {"const": t.name}, args_key: closed(&t.parameters)},
                "required": ["name", args_key],
                "additionalProperties": false,
            })
        })
        .collect();
    let mut schema = if variants.len() == 1 {
        variants.into_iter().next().unwrap_or(Value::Null)
    } else {
        json!({ "anyOf": variants })
    };
    if let Value::Object(m) = &mut schema {
        m.insert("x-guidance".into(), guidance);
    }
    schema
}

/// The Lark grammar for one reply, or `None` when decoding should not be constrained.
///
/// - `required` / a named tool: exactly `calls` calls (of that tool), nothing else;
/// - `auto`: either plain text that does not start a call, or one call block;
/// - `none` or no tools: unconstrained.
///
/// Several calls go in *one* `<tool_call>` block as a JSON array: mistral.rs 0.8.1 ends
/// generation at the first complete block and reads an array inside it as parallel calls.
pub fn strict_lark(tools: &[ToolDef], choice: &ToolChoice, calls: usize) -> Option<String> {
    let offered = offered(tools, choice)?;
    let one = call_schema(&offered);
    let body = match (choice, calls.max(1)) {
        (ToolChoice::Auto, _) => json!({
            "anyOf": [one, {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_PARALLEL}],
            "x-guidance": guidance(),
        }),
        (_, 1) => one,
        (_, n) => json!({
            "type": "array", "items": one, "minItems": n, "maxItems": n,
            "x-guidance": guidance(),
        }),
    };
    let call_rule = format!("call: <tool_call> %json {body} </tool_call>");
    Some(match choice {
        ToolChoice::Auto => format!("start: TEXT | call\n{call_rule}\nTEXT: /[^<](.|\\n)*/\n"),
        _ => format!("start: call\n{call_rule}\n"),
    })
}

/// The tools a reply may call under `choice`; `None` when decoding should not be
/// constrained (`none`, or no tool left).
fn offered<'a>(tools: &'a [ToolDef], choice: &ToolChoice) -> Option<Vec<&'a ToolDef>> {
    let offered: Vec<&ToolDef> = match choice {
        ToolChoice::None => return None,
        ToolChoice::Named(name) => tools.iter().filter(|t| &t.name == name).collect(),
        ToolChoice::Auto | ToolChoice::Required => tools.iter().collect(),
    };
    (!offered.is_empty()).then_some(offered)
}

/// The layout a family's template writes calls in, for strict decoding: constrained output
/// is then in-distribution and re-renders identically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyLayout {
    /// `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`, one block per call,
    /// blocks separated by a newline (Qwen, Hermes).
    Hermes,
    /// `{"name": …, "parameters": {…}}`, calls separated by `; ` (Llama 3.1–3.3).
    Llama3,
    /// `[TOOL_CALLS][{"name": …, "arguments": {…}, "id": "<9 letters/digits>"}, …]` (Mistral
    /// v3 templates: Nemo). The template writes each call's id, so the model writes one.
    Mistral {
        /// The id of the `[TOOL_CALLS]` control token (5 in the v3 layout, 9 in Tekken).
        tool_calls: u32,
        /// The tokenizer starts text after a control token with a space (SentencePiece's
        /// `▁`), so `[TOOL_CALLS][` is `[TOOL_CALLS]` `▁[` and the model writes ` [`.
        space: bool,
    },
}

/// The Lark grammar for one reply in a family's own layout (see [`strict_lark`] for the
/// choices), JSON written as the templates write it (`", "`, `": "`), ending with the
/// family's end-of-turn token when one is given (so the stop token is the one the model
/// would write, e.g. `<|im_end|>`).
pub fn family_lark(
    tools: &[ToolDef],
    choice: &ToolChoice,
    calls: usize,
    layout: FamilyLayout,
    end_of_turn: Option<&str>,
) -> Option<String> {
    let offered = offered(tools, choice)?;
    let args_key = match layout {
        FamilyLayout::Hermes | FamilyLayout::Mistral { .. } => "arguments",
        FamilyLayout::Llama3 => "parameters",
    };
    let mut one = family_call_schema(&offered, args_key);
    if matches!(layout, FamilyLayout::Mistral { .. }) {
        with_call_id(&mut one);
    }
    let (call, sep) = match layout {
        FamilyLayout::Hermes => (
            format!("call: <tool_call> \"\\n\" %json {one} \"\\n\" </tool_call>"),
            "\"\\n\"",
        ),
        FamilyLayout::Llama3 => (format!("call: %json {one}"), "\"; \""),
        FamilyLayout::Mistral { .. } => (format!("call: %json {one}"), "\", \""),
    };
    let end = end_of_turn
        .filter(|t| t.starts_with('<') && t.ends_with('>'))
        .map(|t| format!(" {t}"))
        .unwrap_or_default();
    // Mistral's calls sit in one `[TOOL_CALLS][…]` array.
    let (open, close) = match layout {
        FamilyLayout::Mistral { tool_calls, space } => (
            format!("<[{tool_calls}]> \"{}[\" ", if space { " " } else { "" }),
            " \"]\"",
        ),
        _ => (String::new(), ""),
    };
    let calls_rule = match (choice, calls.max(1)) {
        (ToolChoice::Auto, _) => format!(
            "calls: {open}call ({sep} call){{0,{}}}{close}",
            MAX_PARALLEL - 1
        ),
        (_, n) => format!(
            "calls: {open}call{}{close}",
            format!(" {sep} call").repeat(n - 1)
        ),
    };
    Some(match choice {
        ToolChoice::Auto => {
            // Text that does not start like a call in this layout.
            let text = match layout {
                FamilyLayout::Hermes => "TEXT: /[^<](.|\\n)*/",
                FamilyLayout::Llama3 => "TEXT: /[^{<](.|\\n)*/",
                FamilyLayout::Mistral { .. } => "TEXT: /(.|\\n)+/",
            };
            format!("start: TEXT | calls{end}\n{calls_rule}\n{call}\n{text}\n")
        }
        _ => format!("start: calls{end}\n{calls_rule}\n{call}\n"),
    })
}

/// Adds the `"id"` Mistral's templates write after a call's arguments (nine letters or
/// digits) to each call variant of `schema`.
fn with_call_id(schema: &mut Value) {
    let id = json!({"type": "string", "pattern": "^[a-zA-Z0-9]{9}$"});
    let mut add = |v: &mut Value| {
        if let Some(props) = v.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert("id".into(), id.clone());
        }
        if let Some(req) = v.get_mut("required").and_then(Value::as_array_mut) {
            req.push(json!("id"));
        }
    };
    match schema.get_mut("anyOf").and_then(Value::as_array_mut) {
        Some(variants) => variants.iter_mut().for_each(&mut add),
        None => add(schema),
    }
}

/// One call with the JSON separators chat templates write (`", "`, `": "`).
fn family_call_schema(tools: &[&ToolDef], args_key: &str) -> Value {
    let mut guidance = guidance();
    guidance["item_separator"] = json!(", ");
    guidance["key_separator"] = json!(": ");
    schema_of_calls(tools, args_key, guidance)
}

/// JavaScript's `Number.MAX_SAFE_INTEGER`: the largest integer every JSON parser keeps exact.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Most calls one block may carry in `auto` strict mode.
const MAX_PARALLEL: usize = 8;

fn guidance() -> Value {
    json!({"whitespace_flexible": false, "lenient": true})
}

/// A copy of `schema` in which every object forbids keys it does not name, and formats
/// llguidance does not know are dropped.
pub fn closed(schema: &Value) -> Value {
    match schema {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                match k.as_str() {
                    "$schema" | "title" | "examples" | "default" => {}
                    "properties" | "$defs" | "definitions" | "patternProperties" => {
                        let inner = v
                            .as_object()
                            .map(|props| {
                                props
                                    .iter()
                                    .map(|(name, s)| (name.clone(), closed(s)))
                                    .collect::<Map<_, _>>()
                            })
                            .map(Value::Object)
                            .unwrap_or_else(|| v.clone());
                        out.insert(k.clone(), inner);
                    }
                    _ => {
                        out.insert(k.clone(), closed(v));
                    }
                }
            }
            // An integer without bounds lets a small model write digits until the token
            // limit (measured with the tiny model: `"seed":7777…`). The bound is JSON's
            // safe-integer range (±(2^53−1)): larger integers lose precision in most JSON
            // parsers, and llguidance reads bounds as f64 (so ±2^63 would overflow it).
            let is_integer = match out.get("type") {
                Some(Value::String(t)) => t == "integer",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
                _ => false,
            };
            if is_integer {
                if !out.contains_key("maximum") && !out.contains_key("exclusiveMaximum") {
                    out.insert("maximum".into(), json!(MAX_SAFE_INTEGER));
                }
                if !out.contains_key("minimum") && !out.contains_key("exclusiveMinimum") {
                    out.insert("minimum".into(), json!(-MAX_SAFE_INTEGER));
                }
            }
            let is_object = out.get("type").and_then(Value::as_str) == Some("object")
                || out.contains_key("properties");
            if is_object && !out.contains_key("additionalProperties") {
                out.insert("additionalProperties".into(), Value::Bool(false));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(closed).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calc() -> ToolDef {
        ToolDef {
            name: "calculator".into(),
            description: "math".into(),
            parameters: json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": "Args",
                "type": "object",
                "properties": {"expression": {"type": "string", "title": "E"},
                               "opts": {"type": "object", "properties": {"x": {"type": "integer"}}}},
                "required": ["expression"],
            }),
        }
    }

    #[test]
    fn every_object_level_is_closed_and_noise_is_dropped() {
        let c = closed(&calc().parameters);
        assert_eq!(c["additionalProperties"], json!(false));
        assert_eq!(
            c["properties"]["opts"]["additionalProperties"],
            json!(false)
        );
        assert!(c.get("$schema").is_none() && c.get("title").is_none());
        // A property *named* title survives; only the keyword goes.
        let p = closed(&json!({"type": "object", "properties": {"title": {"type": "string"}}}));
        assert!(p["properties"].get("title").is_some());
        // Unbounded integers get 64-bit bounds; given bounds are kept.
        assert_eq!(
            c["properties"]["opts"]["properties"]["x"]["maximum"],
            json!(MAX_SAFE_INTEGER)
        );
        let b = closed(&json!({"type": ["integer", "null"], "minimum": 0}));
        assert_eq!(
            (b["minimum"].clone(), b["maximum"].clone()),
            (json!(0), json!(MAX_SAFE_INTEGER))
        );
    }

    #[test]
    fn required_choice_fixes_the_number_of_calls() {
        let g = strict_lark(&[calc()], &ToolChoice::Required, 2).unwrap();
        assert!(g.starts_with("start: call\n"), "{g}");
        assert!(g.contains("<tool_call> %json {"));
        assert!(
            g.contains("\"minItems\":2") && g.contains("\"maxItems\":2"),
            "{g}"
        );
        assert!(g.contains("\"whitespace_flexible\":false"));
        assert!(strict_lark(&[calc()], &ToolChoice::None, 1).is_none());
        assert!(strict_lark(&[calc()], &ToolChoice::Named("nope".into()), 1).is_none());
        let auto = strict_lark(&[calc()], &ToolChoice::Auto, 1).unwrap();
        assert!(auto.starts_with("start: TEXT | call"));
    }

    #[test]
    fn family_layouts_write_one_block_per_call_and_the_end_of_turn() {
        let g = family_lark(
            &[calc()],
            &ToolChoice::Required,
            2,
            FamilyLayout::Hermes,
            Some("<|im_end|>"),
        )
        .unwrap();
        assert!(g.starts_with("start: calls <|im_end|>\n"), "{g}");
        assert!(g.contains("calls: call \"\\n\" call\n"), "{g}");
        assert!(g.contains("call: <tool_call> \"\\n\" %json {"), "{g}");
        assert!(g.contains("\"item_separator\":\", \""), "{g}");
        let l = family_lark(
            &[calc()],
            &ToolChoice::Auto,
            1,
            FamilyLayout::Llama3,
            Some("<|eot_id|>"),
        )
        .unwrap();
        assert!(l.contains("\"parameters\""), "{l}");
        assert!(l.starts_with("start: TEXT | calls <|eot_id|>"), "{l}");
        // Mistral: one `[TOOL_CALLS][…]` array, calls separated by ", ", each with its id.
        let m = family_lark(
            &[calc()],
            &ToolChoice::Required,
            2,
            FamilyLayout::Mistral {
                tool_calls: 5,
                space: true,
            },
            Some("</s>"),
        )
        .unwrap();
        assert!(m.starts_with("start: calls </s>\n"), "{m}");
        assert!(
            m.contains("calls: <[5]> \" [\" call \", \" call \"]\"\n"),
            "{m}"
        );
        assert!(m.contains("\"pattern\":\"^[a-zA-Z0-9]{9}$\""), "{m}");
        assert!(
            m.contains("\"required\":[\"name\",\"arguments\",\"id\"]"),
            "{m}"
        );
    }
}
