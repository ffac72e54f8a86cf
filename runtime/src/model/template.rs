//! Chat templates rendered the way Hugging Face `transformers` renders them — what models
//! are trained and served with.
//!
//! mistral.rs renders templates too, but not identically: its `tojson` writes compact JSON
//! (`{"a":1}`) with HTML-escaped `<>&'`, and its maps are key-sorted, so a tools section comes
//! out as `{"type":"function","function":{"description":…` where `transformers` writes
//! `{"type": "function", "function": {"name": …` — the first prompt already differs from the
//! real one. Here: the same Jinja settings as `transformers` (`trim_blocks`, `lstrip_blocks`,
//! Python string methods), `tojson` as Python's `json.dumps(x, ensure_ascii=False)`
//! (`", "` and `": "`, `indent=` honoured, no escaping beyond JSON's), maps in insertion
//! order, and the same globals (`raise_exception`, `strftime_now`, `bos_token`, …).

use std::sync::Arc;

use minijinja::{
    value::{Enumerator, Kwargs, Object, ObjectRepr},
    Environment, Error, ErrorKind, Value,
};
use serde::Serialize;

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// The special tokens passed to the template (`bos_token`, `eos_token`, …).
    tokens: Vec<(String, String)>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

/// A template that does not compile or render.
#[derive(Debug, Clone, thiserror::Error)]
#[error("chat template: {0}")]
pub struct TemplateError(pub String);

impl From<Error> for TemplateError {
    fn from(e: Error) -> Self {
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(&format!(": {s}"));
            source = s.source();
        }
        Self(msg)
    }
}

impl ChatTemplate {
    /// Compiles `source`; `tokens` are the tokenizer's special tokens by role
    /// (`bos_token`, `eos_token`, `pad_token`, `unk_token`).
    pub fn new(source: &str, tokens: Vec<(String, String)>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        // Python's reversed slice, which Jinja2 evaluates and minijinja does not parse.
        let source = source.replace("[::-1]", "|reverse");
        env.add_template_owned("chat", source)?;
        Ok(Self { env, tokens })
    }

    /// The text of the special token named `role` (`eos_token`, …) given to the template.
    pub fn token(&self, role: &str) -> Option<&str> {
        self.tokens
            .iter()
            .find(|(k, _)| k == role)
            .map(|(_, v)| v.as_str())
    }

    /// Renders `messages` (OpenAI/HF-shaped JSON objects) and `tools` (`{"type":
    /// "function", "function": {...}}`) as `apply_chat_template(..., tokenize=False)` does.
    pub fn render(
        &self,
        messages: &[serde_json::Value],
        tools: Option<&[serde_json::Value]>,
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        let template = self.env.get_template("chat")?;
        let mut ctx: Vec<(String, Value)> = vec![
            (
                "messages".into(),
                Value::from(messages.iter().map(from_json).collect::<Vec<_>>()),
            ),
            (
                "tools".into(),
                tools
                    .map(|t| Value::from(t.iter().map(from_json).collect::<Vec<_>>()))
                    .unwrap_or(Value::UNDEFINED),
            ),
            (
                "add_generation_prompt".into(),
                Value::from(add_generation_prompt),
            ),
        ];
        for (k, v) in &self.tokens {
            ctx.push((k.clone(), Value::from(v.as_str())));
        }
        let ctx: Value = ctx.into_iter().collect();
        Ok(template.render(ctx)?)
    }
}

/// A JSON object as a template value that keeps its keys' order (minijinja's own maps
/// are sorted).
#[derive(Debug)]
struct JsonMap(Vec<(String, Value)>);

impl Object for JsonMap {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.0
                .iter()
                .map(|(k, _)| Value::from(k.as_str()))
                .collect(),
        )
    }
}

fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Object(m) => Value::from_object(JsonMap(
            m.iter().map(|(k, v)| (k.clone(), from_json(v))).collect(),
        )),
        serde_json::Value::Array(a) => Value::from(a.iter().map(from_json).collect::<Vec<_>>()),
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (_, Some(u), _) => Value::from(u),
            (_, _, Some(f)) => Value::from(f),
            _ => Value::from(()),
        },
    }
}

/// Python's `json.dumps` separators: `", "` between items, `": "` after keys.
struct PySeparators;

impl serde_json::ser::Formatter for PySeparators {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        item_separator(writer, first)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        item_separator(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

fn item_separator<W: ?Sized + std::io::Write>(writer: &mut W, first: bool) -> std::io::Result<()> {
    if first {
        Ok(())
    } else {
        writer.write_all(b", ")
    }
}

/// `tojson` as `transformers` defines it: `json.dumps(x, ensure_ascii=False, indent=indent)`.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    // `transformers` accepts these too; the defaults are what it uses.
    let _: Option<Value> = kwargs.get("separators")?;
    let _: Option<bool> = kwargs.get("sort_keys")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let mut buf = Vec::new();
    let result = match indent {
        Some(n) => {
            let pad = vec![b' '; n];
            let mut ser = serde_json::Serializer::with_formatter(
                &mut buf,
                serde_json::ser::PrettyFormatter::with_indent(&pad),
            );
            value.serialize(&mut ser)
        }
        None => {
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, PySeparators);
            value.serialize(&mut ser)
        }
    };
    result.map_err(|e| Error::new(ErrorKind::BadSerialization, e.to_string()))?;
    let text = String::from_utf8(buf)
        .map_err(|e| Error::new(ErrorKind::BadSerialization, e.to_string()))?;
    Ok(Value::from_safe_string(text))
}

fn raise_exception(msg: String) -> Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

fn strftime_now(format: String) -> String {
    // Templates use it for "Today Date: …" lines; `chrono` formats the directives they
    // use (%d %b %B %Y) as Python's strftime does.
    chrono::Utc::now().format(&format).to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tojson_writes_what_python_json_dumps_writes() {
        let render = |src: &str, x: serde_json::Value| {
            ChatTemplate::new(src, vec![])
                .unwrap()
                .render(&[x], None, false)
                .unwrap()
        };
        // Keys in insertion order, `", "` / `": "`, nothing HTML-escaped, UTF-8 kept.
        let x = json!({"name": "calc", "a": [1, "é<>&'"], "b": {}});
        assert_eq!(
            render("{{ messages[0] | tojson }}", x),
            r#"{"name": "calc", "a": [1, "é<>&'"], "b": {}}"#
        );
        assert_eq!(
            render("{{ messages[0] | tojson(indent=2) }}", json!({"a": [1, 2]})),
            "{\n  \"a\": [\n    1,\n    2\n  ]\n}"
        );
    }

    #[test]
    fn python_methods_order_and_reversed_slices_work() {
        let t = ChatTemplate::new(
            "{% for m in messages[::-1] %}{{ m.content.strip() }}{% if m.content.startswith(' a') %}!{% endif %}{% endfor %}{% for k in messages[0] %}{{ k }}{% endfor %}{{ bos_token }}",
            vec![("bos_token".into(), "<s>".into())],
        )
        .unwrap();
        let out = t
            .render(
                &[
                    json!({"role": "user", "content": " a "}),
                    json!({"role": "x", "content": "b"}),
                ],
                None,
                false,
            )
            .unwrap();
        assert_eq!(out, "ba!rolecontent<s>");
        let e = ChatTemplate::new("{{ raise_exception('no tools here') }}", vec![])
            .unwrap()
            .render(&[], None, false)
            .unwrap_err();
        assert!(e.to_string().contains("no tools here"), "{e}");
    }
}
