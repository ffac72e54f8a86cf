//! Checking what the engine's tool-call parser gave us: every call must name an offered
//! tool and carry a JSON object; call markup left in the text means a call the parser
//! could not read. Neither is ever silently treated as prose.

use serde::Serialize;
use serde_json::Value;

use super::{ToolCall, ToolDef};

/// A tool call the model attempted that could not be used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParseFailure {
    /// What the model wrote (the call, or the text around leftover markup).
    pub raw: String,
    /// What is wrong, written for the model.
    pub error: String,
}

/// Markers of native tool-call formats (Qwen/Hermes, Llama 3, Mistral, functionary).
const CALL_MARKERS: &[&str] = &[
    "<tool_call>",
    "<|python_tag|>",
    "[TOOL_CALLS]",
    "<function=",
];

/// Raw call as the engine parsed it: name and argument text.
#[derive(Debug, Clone)]
pub(crate) struct RawCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// Splits raw calls into usable calls and failures; also flags call markup left in `text`.
pub fn check_calls(
    tools: &[ToolDef],
    raw: Vec<(String, String, String)>,
    text: &str,
    truncated: bool,
) -> (Vec<ToolCall>, Vec<ParseFailure>) {
    let raw = raw
        .into_iter()
        .map(|(id, name, arguments)| RawCall {
            id,
            name,
            arguments,
        })
        .collect();
    check(tools, raw, text, truncated)
}

/// `truncated`: the reply hit its token limit (an unfinished call is then reported as such).
pub(crate) fn check(
    tools: &[ToolDef],
    raw: Vec<RawCall>,
    text: &str,
    truncated: bool,
) -> (Vec<ToolCall>, Vec<ParseFailure>) {
    let mut calls = Vec::new();
    let mut failures = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let raw_text = format!("{{\"name\": {:?}, \"arguments\": {}}}", r.name, r.arguments);
        if !tools.iter().any(|t| t.name == r.name) {
            let offered: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
            failures.push(ParseFailure {
                raw: raw_text,
                error: format!(
                    "there is no tool named '{}'; the tools are: {}",
                    r.name,
                    offered.join(", ")
                ),
            });
            continue;
        }
        let arguments = if r.arguments.trim().is_empty() {
            Ok(Value::Object(Default::default()))
        } else {
            serde_json::from_str::<Value>(&r.arguments)
        };
        match arguments {
            Ok(v @ Value::Object(_)) => calls.push(ToolCall {
                id: if r.id.is_empty() {
                    format!("call_{i}")
                } else {
                    r.id
                },
                name: r.name,
                arguments: v,
            }),
            Ok(other) => failures.push(ParseFailure {
                raw: raw_text,
                error: format!(
                    "the arguments of '{}' must be a JSON object, not {}",
                    r.name,
                    json_kind(&other)
                ),
            }),
            Err(e) => failures.push(ParseFailure {
                raw: raw_text,
                error: format!("the arguments of '{}' are not valid JSON: {e}", r.name),
            }),
        }
    }
    if let Some(marker) = CALL_MARKERS.iter().find(|m| text.contains(*m)) {
        let error = if truncated {
            format!(
                "the reply reached its token limit inside a tool call starting with {marker}; \
                 the call is incomplete (raise --max-tokens-per-call, or write a shorter call)"
            )
        } else {
            format!(
                "a tool call starting with {marker} could not be parsed; write exactly \
                 <tool_call>{{\"name\": \"TOOL\", \"arguments\": {{...}}}}</tool_call>"
            )
        };
        failures.push(ParseFailure {
            raw: text.to_owned(),
            error,
        });
    }
    (calls, failures)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tools() -> Vec<ToolDef> {
        vec![ToolDef {
            name: "calculator".into(),
            description: String::new(),
            parameters: json!({"type": "object"}),
        }]
    }

    fn raw(name: &str, args: &str) -> Vec<(String, String, String)> {
        vec![(String::new(), name.into(), args.into())]
    }

    #[test]
    fn good_call_passes_with_an_id() {
        let (calls, failures) = check_calls(
            &tools(),
            raw("calculator", r#"{"expression":"1+1"}"#),
            "",
            false,
        );
        assert!(failures.is_empty());
        assert_eq!(calls[0].id, "call_0");
        assert_eq!(calls[0].arguments, json!({"expression": "1+1"}));
    }

    #[test]
    fn unknown_tool_bad_json_non_object_and_leftover_markup_are_failures() {
        for (name, args, needle) in [
            ("calc", "{}", "no tool named 'calc'"),
            ("calculator", "{\"expression\":", "not valid JSON"),
            ("calculator", "[1]", "must be a JSON object, not an array"),
        ] {
            let (calls, failures) = check_calls(&tools(), raw(name, args), "", false);
            assert!(calls.is_empty());
            assert!(failures[0].error.contains(needle), "{failures:?}");
        }
        let (_, failures) = check_calls(&tools(), vec![], "sure <tool_call>{oops", false);
        assert!(failures[0].error.contains("<tool_call>"));
        let (_, failures) = check_calls(&tools(), vec![], "<tool_call>{\"na", true);
        assert!(failures[0].error.contains("token limit"), "{failures:?}");
    }
}
