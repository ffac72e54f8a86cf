//! Model families' own tool-call layouts, read by Verity rather than by the engine.
//!
//! mistral.rs 0.8.1 keeps only the first `<tool_call>` block of a reply; a reply with two
//! parallel calls in Qwen's layout (one block per call) lost the second. Here every call of
//! a reply is read, in the layout the family's chat template writes:
//!
//! | format | families | a call in a reply |
//! |---|---|---|
//! | `hermes` | Qwen 2.5 / 3, Hermes 2 Pro / 3, SmolLM3 | `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`, one block per call |
//! | `llama3` | Llama 3.1 – 3.3 | `{"name": …, "parameters": {…}}` as the whole reply (after an optional `<|python_tag|>`), several separated by `;` |
//! | `mistral` | Mistral Nemo, Small 3.x, Magistral | `[TOOL_CALLS][{"name": …, "arguments": {…}}, …]` (v3) or `[TOOL_CALLS]name[ARGS]{…}` per call (v11) |
//!
//! The format is detected from the chat template ([`CallFormat::detect`]) and can be named
//! with `--tool-format`.

use std::{fmt, str::FromStr};

use serde_json::Value;

use super::toolcall::{ParseFailure, RawCall};

/// A family's tool-call layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFormat {
    /// `<tool_call>` blocks of `{"name", "arguments"}` (Qwen, Hermes).
    Hermes,
    /// Bare `{"name", "parameters"}` JSON (Llama 3.1–3.3).
    Llama3,
    /// `[TOOL_CALLS]` followed by a JSON array or by `name[ARGS]{…}` (Mistral).
    Mistral,
}

/// Every format, with the families it serves (for `--tool-format` errors and help).
pub const FORMATS: &[(&str, CallFormat, &str)] = &[
    (
        "hermes",
        CallFormat::Hermes,
        "Qwen 2.5/3, Hermes 2 Pro/3, SmolLM3: <tool_call> blocks",
    ),
    (
        "llama3",
        CallFormat::Llama3,
        "Llama 3.1-3.3: {\"name\", \"parameters\"} JSON",
    ),
    (
        "mistral",
        CallFormat::Mistral,
        "Mistral Nemo, Small 3.x: [TOOL_CALLS]",
    ),
];

/// An unknown `--tool-format` name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tool-call format '{0}'; the formats are: {list}", list = format_list())]
pub struct UnknownFormat(pub String);

fn format_list() -> String {
    FORMATS
        .iter()
        .map(|(n, _, what)| format!("{n} ({what})"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for CallFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let alias = match s.as_str() {
            "qwen" | "qwen2" | "qwen3" | "hermes" => "hermes",
            "llama" | "llama3" | "llama3.1" | "llama3.2" => "llama3",
            "mistral" | "nemo" => "mistral",
            other => other,
        };
        FORMATS
            .iter()
            .find(|(n, _, _)| *n == alias)
            .map(|(_, f, _)| *f)
            .ok_or(UnknownFormat(s))
    }
}

impl fmt::Display for CallFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = FORMATS
            .iter()
            .find(|(_, c, _)| c == self)
            .map(|(n, _, _)| *n)
            .unwrap_or("?");
        f.write_str(name)
    }
}

impl CallFormat {
    /// The format a chat template writes calls in, or `None` when it shows none Verity
    /// knows (then the engine's own parser is used).
    pub fn detect(template: &str) -> Option<Self> {
        // `<tool_call>` alone is not enough: Qwen3-Coder, GLM and Nemotron put XML-like
        // `<function=…>` / `<arg_key>` bodies in it, a different layout.
        // Nor is `"parameters"` with Llama's headers: functionary writes `<function=…>`.
        // Apriel's `<tool_calls>[…]` and MiniMax's `<invoke>` are other layouts again.
        let xml_body = [
            "<function=",
            "<arg_key>",
            "<parameter=",
            "<invoke",
            "<tool_calls>",
        ]
        .iter()
        .any(|m| template.contains(m));
        let json_body = template.contains("tojson") || template.contains("\"name\"");
        if template.contains("<tool_call>") && json_body && !xml_body {
            Some(Self::Hermes)
        } else if template.contains("[TOOL_CALLS]") {
            Some(Self::Mistral)
        } else if template.contains("<|start_header_id|>")
            && !template.contains("<tool_call>")
            && !xml_body
            && (template.contains("<|python_tag|>") || template.contains("\"parameters\""))
        {
            Some(Self::Llama3)
        } else {
            None
        }
    }

    /// The format a reply's own call markers show, for text a server returned unparsed.
    pub fn from_markers(text: &str) -> Option<Self> {
        [
            ("<tool_call>", Self::Hermes),
            ("[TOOL_CALLS]", Self::Mistral),
            ("<|python_tag|>", Self::Llama3),
        ]
        .into_iter()
        .find(|(m, _)| text.contains(m))
        .map(|(_, f)| f)
    }

    /// Every call in `text` (a reply decoded with its control tokens), the text around
    /// them, and what could not be read.
    pub fn parse(self, text: &str) -> Parsed {
        match self {
            Self::Hermes => hermes(text),
            Self::Llama3 => llama3(text),
            Self::Mistral => mistral(text),
        }
    }
}

/// A reply split into prose and calls.
#[derive(Debug, Default, Clone)]
pub struct Parsed {
    /// The reply without its calls (trimmed).
    pub content: String,
    /// The calls, in order.
    pub(crate) calls: Vec<RawCall>,
    /// Calls that could not be read.
    pub failures: Vec<ParseFailure>,
}

impl Parsed {
    /// The calls read, as (name, argument JSON text).
    pub fn calls(&self) -> impl Iterator<Item = (&str, &str)> {
        self.calls
            .iter()
            .map(|c| (c.name.as_str(), c.arguments.as_str()))
    }

    fn call(&mut self, name: String, arguments: &Value) {
        let arguments = match arguments {
            // Some models write the arguments as a JSON string holding the object.
            Value::String(s) => s.clone(),
            Value::Null => "{}".into(),
            other => other.to_string(),
        };
        self.calls.push(RawCall {
            id: String::new(),
            name,
            arguments,
        });
    }

    fn fail(&mut self, raw: &str, error: impl Into<String>) {
        self.failures.push(ParseFailure {
            raw: raw.to_owned(),
            error: error.into(),
        });
    }

    /// Reads one `{"name", "arguments"|"parameters"}` object (or an array of them).
    fn object(&mut self, raw: &str, v: &Value, example: &str) {
        match v {
            Value::Array(items) => {
                for item in items {
                    self.object(raw, item, example);
                }
            }
            Value::Object(o) => match o.get("name").and_then(Value::as_str) {
                Some(name) => {
                    let args = o
                        .get("arguments")
                        .or_else(|| o.get("parameters"))
                        .unwrap_or(&Value::Null);
                    self.call(name.to_owned(), args);
                    // A call may carry its id (Mistral v3 writes one in history).
                    if let (Some(id), Some(call)) =
                        (o.get("id").and_then(Value::as_str), self.calls.last_mut())
                    {
                        call.id = id.to_owned();
                    }
                }
                None => self.fail(
                    raw,
                    format!("a tool call needs a \"name\" string; write exactly {example}"),
                ),
            },
            _ => self.fail(raw, format!("a tool call must be a JSON object: {example}")),
        }
    }
}

const HERMES_EXAMPLE: &str =
    "<tool_call>\n{\"name\": \"TOOL\", \"arguments\": {...}}\n</tool_call>";

fn hermes(text: &str) -> Parsed {
    let mut out = Parsed::default();
    let mut content = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("<tool_call>") {
        content.push_str(&rest[..start]);
        let after = &rest[start + "<tool_call>".len()..];
        let (body, next) = match after.find("</tool_call>") {
            Some(end) => (&after[..end], &after[end + "</tool_call>".len()..]),
            // The stop token may end a reply right after the JSON; a complete object
            // still counts.
            None => (after, ""),
        };
        match serde_json::from_str::<Value>(body.trim()) {
            Ok(v) => out.object(body.trim(), &v, HERMES_EXAMPLE),
            Err(e) => out.fail(
                body.trim(),
                format!("a tool call is not valid JSON ({e}); write exactly {HERMES_EXAMPLE}"),
            ),
        }
        rest = next;
    }
    content.push_str(rest);
    if content.contains("</tool_call>") {
        out.fail(
            content.trim(),
            format!("</tool_call> without its <tool_call>; write exactly {HERMES_EXAMPLE}"),
        );
    }
    out.content = content.trim().to_owned();
    out
}

const LLAMA_EXAMPLE: &str = "{\"name\": \"TOOL\", \"parameters\": {...}}";

fn llama3(text: &str) -> Parsed {
    let mut out = Parsed::default();
    let tagged = text.trim_start().starts_with("<|python_tag|>");
    let body = text
        .trim_start()
        .trim_start_matches("<|python_tag|>")
        .trim();
    if !body.starts_with('{') {
        if tagged {
            out.fail(body, format!("after <|python_tag|> write {LLAMA_EXAMPLE}"));
        }
        out.content = body.to_owned();
        return out;
    }
    // One or more objects, separated by `;` or whitespace.
    let mut values = Vec::new();
    let mut rest = body;
    loop {
        rest = rest.trim_start().trim_start_matches(';').trim_start();
        if rest.is_empty() {
            break;
        }
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) => {
                values.push(v);
                rest = &rest[stream.byte_offset()..];
            }
            _ => {
                values.clear();
                break;
            }
        }
    }
    let is_call = |v: &Value| v.get("name").is_some_and(Value::is_string);
    if values.is_empty() || !values.iter().all(is_call) {
        // JSON that is not a call (an answer in JSON) is prose, unless the model marked
        // it as a call or clearly meant one.
        if tagged || body.contains("\"parameters\"") {
            out.fail(
                body,
                format!("a tool call could not be read; write exactly {LLAMA_EXAMPLE}"),
            );
        } else {
            out.content = body.to_owned();
        }
        return out;
    }
    for v in &values {
        out.object(body, v, LLAMA_EXAMPLE);
    }
    out
}

const MISTRAL_EXAMPLE: &str = "[TOOL_CALLS][{\"name\": \"TOOL\", \"arguments\": {...}}]";

fn mistral(text: &str) -> Parsed {
    let mut out = Parsed::default();
    let mut parts = text.split("[TOOL_CALLS]");
    let content = parts.next().unwrap_or_default().trim().to_owned();
    for part in parts {
        let part = part.trim();
        if part.starts_with('[') {
            // v3: a JSON array of calls.
            let mut stream = serde_json::Deserializer::from_str(part).into_iter::<Value>();
            match stream.next() {
                Some(Ok(v)) => out.object(part, &v, MISTRAL_EXAMPLE),
                _ => out.fail(
                    part,
                    format!("the calls are not a JSON array; write exactly {MISTRAL_EXAMPLE}"),
                ),
            }
        } else if let Some((head, args)) = part.split_once("[ARGS]") {
            // v11: name[ARGS]{…}, or v7's name[CALL_ID]id[ARGS]{…}.
            let name = head.split("[CALL_ID]").next().unwrap_or_default().trim();
            let mut stream = serde_json::Deserializer::from_str(args.trim()).into_iter::<Value>();
            match (name.is_empty(), stream.next()) {
                (false, Some(Ok(v @ Value::Object(_)))) => out.call(name.to_owned(), &v),
                _ => out.fail(part, "write [TOOL_CALLS]TOOL[ARGS]{...} with a JSON object"),
            }
        } else {
            out.fail(
                part,
                format!("a tool call could not be read; write exactly {MISTRAL_EXAMPLE}"),
            );
        }
    }
    out.content = content;
    // Mistral's templates require each call id to be nine letters or digits (and raise
    // on anything else); a model does not write them. Derived from the reply and the
    // call's place in it, so the same reply always gets the same ids.
    portable_call_ids(&mut out.calls, text);
    out
}

/// Gives every call without a nine-character alphanumeric id one, derived from its old id
/// (or from `reply` when it has none) and its place: Mistral's templates refuse any other
/// id (llama.cpp's own ids included), and no other template minds the form.
pub(crate) fn portable_call_ids(calls: &mut [RawCall], reply: &str) {
    for (i, call) in calls.iter_mut().enumerate() {
        if !is_mistral_id(&call.id) {
            call.id = mistral_id(if call.id.is_empty() { reply } else { &call.id }, i);
        }
    }
}

fn is_mistral_id(id: &str) -> bool {
    id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Nine letters and digits from SHA-256 of `seed` and the call's index.
fn mistral_id(seed: &str, index: usize) -> String {
    use sha2::{Digest, Sha256};
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let digest = Sha256::new()
        .chain_update(seed.as_bytes())
        .chain_update(index.to_le_bytes())
        .finalize();
    digest[..9]
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &Parsed) -> Vec<(String, Value)> {
        p.calls
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    serde_json::from_str(&c.arguments).unwrap_or(Value::Null),
                )
            })
            .collect()
    }

    #[test]
    fn hermes_reads_every_block_not_only_the_first() {
        let text = "Let me compute both.\n<tool_call>\n{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2+2\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"tokio\"}}\n</tool_call>";
        let p = CallFormat::Hermes.parse(text);
        assert!(p.failures.is_empty(), "{:?}", p.failures);
        assert_eq!(
            names(&p),
            vec![
                (
                    "calculator".into(),
                    serde_json::json!({"expression": "2+2"})
                ),
                ("search".into(), serde_json::json!({"query": "tokio"})),
            ]
        );
        assert_eq!(p.content, "Let me compute both.");
        // Verity's older strict layout (an array in one block) and a block cut by the stop
        // token both still read.
        let p = CallFormat::Hermes.parse("<tool_call>[{\"name\":\"a\",\"arguments\":{}},{\"name\":\"b\",\"arguments\":{}}]</tool_call>");
        assert_eq!(p.calls.len(), 2);
        let p = CallFormat::Hermes
            .parse("<tool_call>\n{\"name\": \"a\", \"arguments\": \"{\\\"x\\\": 1}\"}\n");
        assert_eq!(names(&p), vec![("a".into(), serde_json::json!({"x": 1}))]);
        let p = CallFormat::Hermes.parse("<tool_call>\n{\"name\": \"a\", \"argu\n</tool_call>");
        assert!(
            p.failures[0].error.contains("not valid JSON"),
            "{:?}",
            p.failures
        );
        assert!(CallFormat::Hermes.parse("no calls here").calls.is_empty());
    }

    #[test]
    fn llama3_reads_bare_json_calls_and_leaves_json_answers_alone() {
        let p = CallFormat::Llama3.parse(
            "<|python_tag|>{\"name\": \"calculator\", \"parameters\": {\"expression\": \"17*23\"}}",
        );
        assert_eq!(
            names(&p),
            vec![(
                "calculator".into(),
                serde_json::json!({"expression": "17*23"})
            )]
        );
        let p = CallFormat::Llama3.parse(
            "{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {\"q\": 1}}",
        );
        assert_eq!(p.calls.len(), 2);
        let p = CallFormat::Llama3.parse("{\"answer\": 42}");
        assert!(p.calls.is_empty() && p.failures.is_empty());
        assert_eq!(p.content, "{\"answer\": 42}");
        let p = CallFormat::Llama3.parse("The answer is 391.");
        assert_eq!(p.content, "The answer is 391.");
        let p = CallFormat::Llama3.parse("<|python_tag|>{\"name\": \"a\", \"parameters\": ");
        assert_eq!(p.failures.len(), 1);
    }

    #[test]
    fn mistral_reads_v3_arrays_and_v11_name_args() {
        let p = CallFormat::Mistral.parse("[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"x\": 1}, \"id\": \"abcdefghi\"}, {\"name\": \"b\", \"arguments\": {}}]");
        assert_eq!(p.calls.len(), 2);
        let p = CallFormat::Mistral.parse("Sure.[TOOL_CALLS]calculator[ARGS]{\"expression\": \"1+1\"}[TOOL_CALLS]search[ARGS]{\"query\": \"x\"}");
        assert_eq!(
            names(&p),
            vec![
                (
                    "calculator".into(),
                    serde_json::json!({"expression": "1+1"})
                ),
                ("search".into(), serde_json::json!({"query": "x"})),
            ]
        );
        assert_eq!(p.content, "Sure.");
        assert_eq!(
            CallFormat::Mistral.parse("[TOOL_CALLS]oops").failures.len(),
            1
        );
    }

    #[test]
    fn formats_are_detected_from_templates_and_named_on_the_command_line() {
        assert_eq!(
            CallFormat::detect("{{- '<tool_call>\\n' }}{{ tool_call | tojson }}"),
            Some(CallFormat::Hermes)
        );
        assert_eq!(
            CallFormat::detect("<tool_call>\\n<function={{ name }}>{{ tool_call | tojson }}"),
            None
        );
        assert_eq!(
            CallFormat::detect("[TOOL_CALLS][{{ x }}]"),
            Some(CallFormat::Mistral)
        );
        assert_eq!(
            CallFormat::detect("<|start_header_id|>ipython<|end_header_id|>{{ '<|python_tag|>' }}"),
            Some(CallFormat::Llama3)
        );
        assert_eq!(CallFormat::detect("{{ messages }}"), None);
        assert_eq!("qwen".parse::<CallFormat>(), Ok(CallFormat::Hermes));
        let e = "gpt-oss".parse::<CallFormat>().unwrap_err().to_string();
        assert!(
            e.contains("hermes") && e.contains("llama3") && e.contains("mistral"),
            "{e}"
        );
    }

    #[test]
    fn mistral_calls_get_ids_its_templates_accept() {
        let reply = "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", \"arguments\": {}, \"id\": \"Abc123xyz\"}]";
        let p = CallFormat::Mistral.parse(reply);
        let ids: Vec<&str> = p.calls.iter().map(|c| c.id.as_str()).collect();
        assert!(is_mistral_id(ids[0]), "{ids:?}");
        assert_eq!(ids[1], "Abc123xyz", "a valid id the model wrote is kept");
        // The same reply, the same ids; another reply, others.
        assert_eq!(CallFormat::Mistral.parse(reply).calls[0].id, ids[0]);
        let other =
            CallFormat::Mistral.parse("[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"x\": 1}}]");
        assert_ne!(other.calls[0].id, ids[0]);
        let v11 = CallFormat::Mistral.parse("[TOOL_CALLS]a[ARGS]{}[TOOL_CALLS]a[ARGS]{}");
        assert!(v11.calls.iter().all(|c| is_mistral_id(&c.id)));
        assert_ne!(v11.calls[0].id, v11.calls[1].id);
    }
}
