//! Documents → passages: text extracted from HTML (scripts, styles and navigation dropped;
//! title from `<title>` or the first heading), Markdown, plain text and JSONL of
//! `{id, title, text, url}`. Long sections are split into passages that remember their
//! heading path, so a hit points at the section, not just the page.

use std::path::Path;

use scraper::{node::Node, Html};
use serde::Deserialize;

/// Passages longer than this are split at paragraph boundaries.
const PASSAGE_CHARS: usize = 1_500;

/// One searchable unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    /// Stable id: `relative/path.html#anchor` (or `#n`), or the JSONL record's id.
    pub id: String,
    /// Document title.
    pub title: String,
    /// Heading path within the document (`itertools › Itertool functions`).
    pub heading: String,
    /// Plain text.
    pub text: String,
    /// URL, when known.
    pub url: String,
}

/// Which files are indexed.
pub fn is_indexable(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("html" | "htm" | "md" | "markdown" | "txt" | "jsonl")
    )
}

/// Extracts the passages of one file; `rel` is its path relative to the indexed root.
pub fn passages(rel: &str, bytes: &[u8]) -> Result<Vec<Passage>, ExtractError> {
    let text = String::from_utf8_lossy(bytes);
    let ext = rel
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => {
            let depth = approx_depth(&text, MAX_HTML_DEPTH);
            if depth > MAX_HTML_DEPTH {
                return Err(ExtractError::TooDeep {
                    file: rel.to_owned(),
                    depth,
                });
            }
            Ok(html(rel, &text))
        }
        "md" | "markdown" => Ok(markdown(rel, &text)),
        "jsonl" => jsonl(rel, &text),
        _ => Ok(plain(rel, &text)),
    }
}

/// A whole document as readable text: its title and its sections in order, each headed
/// by its heading path. `name` picks the format by extension, as for [`passages`].
pub fn document_text(name: &str, bytes: &[u8]) -> Result<(String, String), ExtractError> {
    let parts = passages(name, bytes)?;
    let title = parts.first().map(|p| p.title.clone()).unwrap_or_default();
    let mut text = String::new();
    let mut last_heading = "";
    for p in &parts {
        if !p.heading.is_empty() && p.heading != last_heading {
            text.push_str(&format!("\n## {}\n", p.heading));
            last_heading = &p.heading;
        }
        text.push_str(&p.text);
        text.push('\n');
    }
    Ok((title, text.trim().to_owned()))
}

struct Section {
    anchor: Option<String>,
    heading: Vec<String>,
    text: String,
}

fn finish(rel: &str, title: &str, sections: Vec<Section>) -> Vec<Passage> {
    let mut out = Vec::new();
    for (i, s) in sections.into_iter().enumerate() {
        let body = normalize_ws(&s.text);
        if body.is_empty() && s.heading.is_empty() {
            continue;
        }
        let anchor = s.anchor.unwrap_or_else(|| i.to_string());
        for (j, chunk) in split_long(&body).into_iter().enumerate() {
            let id = if j == 0 {
                format!("{rel}#{anchor}")
            } else {
                format!("{rel}#{anchor}~{j}")
            };
            out.push(Passage {
                id,
                title: title.to_owned(),
                heading: s.heading.join(" › "),
                text: chunk,
                url: String::new(),
            });
        }
    }
    out
}

fn normalize_ws(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for para in s.split("\n\n") {
        let line = para.split_whitespace().collect::<Vec<_>>().join(" ");
        if !line.is_empty() {
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            out.push_str(&line);
        }
    }
    out
}

fn split_long(text: &str) -> Vec<String> {
    if text.chars().count() <= PASSAGE_CHARS {
        return vec![text.to_owned()];
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    for para in text.split("\n\n") {
        if !cur.is_empty() && cur.chars().count() + para.chars().count() > PASSAGE_CHARS {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push_str("\n\n");
        }
        cur.push_str(para);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Elements whose text is never content.
const SKIP: &[&str] = &[
    "script", "style", "nav", "noscript", "template", "footer", "svg",
];

/// Page chrome (sidebars, breadcrumbs) of common doc generators (Sphinx, MkDocs).
const CHROME_CLASSES: &[&str] = &[
    "sphinxsidebar",
    "related",
    "footer",
    "navigation",
    "md-sidebar",
    "headerlink",
];

fn html(rel: &str, src: &str) -> Vec<Passage> {
    let doc = Html::parse_document(src);
    let mut title = String::new();
    let mut sections = vec![Section {
        anchor: None,
        heading: Vec::new(),
        text: String::new(),
    }];
    let mut path: Vec<(u8, String)> = Vec::new();
    let mut skip_depth = 0usize;
    let mut in_title = false;
    let mut heading: Option<(u8, String, Option<String>)> = None;
    let mut section_ids: Vec<Option<String>> = Vec::new();
    for edge in doc.root_element().traverse() {
        match edge {
            ego_tree::iter::Edge::Open(node) => match node.value() {
                Node::Element(e) => {
                    let name = e.name();
                    if skip_depth > 0 {
                        skip_depth += 1;
                        continue;
                    }
                    let chrome = e.attr("role") == Some("navigation")
                        || e.classes().any(|c| CHROME_CLASSES.contains(&c));
                    if SKIP.contains(&name) || chrome {
                        skip_depth = 1;
                        continue;
                    }
                    if name == "title" {
                        in_title = true;
                        continue;
                    }
                    if name == "section" || name == "div" {
                        section_ids.push(e.id().map(str::to_owned));
                    }
                    if let Some(level) = name
                        .strip_prefix('h')
                        .and_then(|l| l.parse::<u8>().ok())
                        .filter(|l| (1..=4).contains(l))
                    {
                        let anchor = e
                            .id()
                            .map(str::to_owned)
                            .or_else(|| section_ids.iter().rev().flatten().next().cloned());
                        heading = Some((level, String::new(), anchor));
                    } else if matches!(
                        name,
                        "p" | "li"
                            | "pre"
                            | "dt"
                            | "dd"
                            | "div"
                            | "section"
                            | "tr"
                            | "br"
                            | "blockquote"
                            | "table"
                    ) {
                        if let Some(s) = sections.last_mut() {
                            s.text.push_str("\n\n");
                        }
                    }
                }
                Node::Text(t) => {
                    if skip_depth > 0 {
                        continue;
                    }
                    if in_title {
                        title.push_str(t);
                    } else if let Some((_, h, _)) = heading.as_mut() {
                        h.push_str(t);
                    } else if let Some(s) = sections.last_mut() {
                        s.text.push_str(t);
                    }
                }
                _ => {}
            },
            ego_tree::iter::Edge::Close(node) => {
                if let Node::Element(e) = node.value() {
                    let name = e.name();
                    if skip_depth > 0 {
                        skip_depth -= 1;
                        continue;
                    }
                    if name == "title" {
                        in_title = false;
                        continue;
                    }
                    if name == "section" || name == "div" {
                        section_ids.pop();
                    }
                    if heading
                        .as_ref()
                        .is_some_and(|(l, _, _)| format!("h{l}") == name)
                    {
                        if let Some((level, text, anchor)) = heading.take() {
                            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                            let text = text.trim_end_matches('¶').trim().to_owned();
                            path.retain(|(l, _)| *l < level);
                            path.push((level, text));
                            sections.push(Section {
                                anchor,
                                heading: path.iter().map(|(_, t)| t.clone()).collect(),
                                text: String::new(),
                            });
                        }
                    }
                }
            }
        }
    }
    let mut title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    if title.is_empty() {
        title = sections
            .iter()
            .find_map(|s| s.heading.first().cloned())
            .unwrap_or_else(|| rel.to_owned());
    }
    finish(rel, &title, sections)
}

fn markdown(rel: &str, src: &str) -> Vec<Passage> {
    let mut sections = vec![Section {
        anchor: None,
        heading: Vec::new(),
        text: String::new(),
    }];
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut in_fence = false;
    for line in src.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !in_fence && (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            let text = line[hashes..].trim().to_owned();
            path.retain(|(l, _)| *l < hashes);
            path.push((hashes, text.clone()));
            let anchor = text
                .to_lowercase()
                .chars()
                .map(|c| if c.is_alphanumeric() { c } else { '-' })
                .collect::<String>();
            sections.push(Section {
                anchor: Some(anchor),
                heading: path.iter().map(|(_, t)| t.clone()).collect(),
                text: String::new(),
            });
        } else if let Some(s) = sections.last_mut() {
            s.text.push_str(line);
            s.text.push('\n');
        }
    }
    let title = sections
        .iter()
        .find_map(|s| s.heading.first().cloned())
        .unwrap_or_else(|| rel.to_owned());
    finish(rel, &title, sections)
}

fn plain(rel: &str, src: &str) -> Vec<Passage> {
    let title = src
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(rel)
        .chars()
        .take(120)
        .collect::<String>();
    finish(
        rel,
        &title,
        vec![Section {
            anchor: None,
            heading: Vec::new(),
            text: src.to_owned(),
        }],
    )
}

#[derive(Deserialize)]
struct Record {
    id: serde_json::Value,
    #[serde(default)]
    title: String,
    text: String,
    #[serde(default)]
    url: Option<String>,
}

/// A document that cannot be split into passages: a malformed JSONL corpus line, or HTML
/// nested too deep to parse in bounded time (other formats are read as text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// A JSONL line that is not a passage record.
    #[error("{file}:{line}: expected {{\"id\", \"title\", \"text\", \"url\"?}}: {message}")]
    Jsonl {
        /// The file (relative to the indexed root).
        file: String,
        /// 1-based line.
        line: usize,
        /// What the JSON parser said.
        message: String,
    },
    /// HTML whose elements nest deeper than the parser handles in linear time (its tree
    /// builder checks the stack of open elements per tag: 200,000 nested `<div>`s took
    /// over 10 minutes).
    #[error(
        "{file}: HTML nested more than {MAX_HTML_DEPTH} elements deep (real pages nest a \
         few dozen); not parsed"
    )]
    TooDeep {
        /// The file or URL.
        file: String,
        /// The nesting seen (approximate: a tag scan, not a parse).
        depth: usize,
    },
}

/// Deepest element nesting accepted in HTML (by [`approx_depth`]).
pub const MAX_HTML_DEPTH: usize = 1_000;

/// Elements that never take a closing tag.
const VOID: [&str; 15] = [
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr", "param", "keygen",
];

/// The deepest nesting of open elements, by a linear scan of tags: `<!…>` and void or
/// self-closed elements do not nest; unclosed `<p>`s and tags inside comments count, so it
/// errs high, never low. Stops counting once past `cap`.
pub fn approx_depth(src: &str, cap: usize) -> usize {
    let b = src.as_bytes();
    let (mut depth, mut max) = (0usize, 0usize);
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        let close = b.get(i + 1) == Some(&b'/');
        let start = i + 1 + usize::from(close);
        if !b.get(start).is_some_and(u8::is_ascii_alphabetic) {
            i += 1;
            continue;
        }
        let name_end = b[start..]
            .iter()
            .position(|c| !c.is_ascii_alphanumeric() && *c != b'-')
            .map_or(b.len(), |k| start + k);
        let Some(gt) = b[name_end..]
            .iter()
            .position(|c| *c == b'>')
            .map(|k| name_end + k)
        else {
            break;
        };
        let name = src[start..name_end].to_ascii_lowercase();
        if close {
            depth = depth.saturating_sub(1);
        } else if !VOID.contains(&name.as_str()) && b[gt - 1] != b'/' {
            depth += 1;
            max = max.max(depth);
            if max > cap {
                return max;
            }
        }
        i = gt + 1;
    }
    max
}

fn jsonl(rel: &str, src: &str) -> Result<Vec<Passage>, ExtractError> {
    let mut out = Vec::new();
    for (n, line) in src.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: Record = serde_json::from_str(line).map_err(|e| ExtractError::Jsonl {
            file: rel.to_owned(),
            line: n + 1,
            message: e.to_string(),
        })?;
        let id = match r.id {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        for (j, chunk) in split_long(&normalize_ws(&r.text)).into_iter().enumerate() {
            out.push(Passage {
                id: if j == 0 {
                    id.clone()
                } else {
                    format!("{id}~{j}")
                },
                title: r.title.clone(),
                heading: String::new(),
                text: chunk,
                url: r.url.clone().unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deeply_nested_html_is_refused_in_linear_time() {
        let nested = format!("{}x{}", "<div>".repeat(200_000), "</div>".repeat(200_000));
        let started = std::time::Instant::now();
        let e = passages("deep.html", nested.as_bytes()).unwrap_err();
        assert!(matches!(e, ExtractError::TooDeep { .. }), "{e}");
        assert!(e.to_string().contains("deep.html"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Void, self-closed and closed elements do not nest (a tag inside a comment
        // counts: the scan errs high, never low).
        assert_eq!(
            approx_depth("<p>a<br><img src=x/><b>c</b></p><!-- <div> -->", 99),
            2
        );
        let fine = format!("{}x{}", "<div>".repeat(500), "</div>".repeat(500));
        assert!(passages("ok.html", fine.as_bytes()).is_ok());
    }

    #[test]
    fn html_sections_with_headings_and_no_scripts() {
        let html = r#"<html><head><title>json — JSON encoder</title><script>var x = "secret";</script></head>
        <body><nav>Navigation junk</nav><section id="json"><h1>json<a>¶</a></h1><p>Intro text.</p>
        <section id="basic-usage"><h2>Basic Usage</h2><p>Use <code>dumps</code> with indent.</p><style>.x{}</style></section></section></body></html>"#;
        let p = passages("library/json.html", html.as_bytes()).unwrap_or_default();
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].title, "json — JSON encoder");
        assert_eq!(p[0].heading, "json");
        assert_eq!(p[0].text, "Intro text.");
        assert_eq!(p[1].id, "library/json.html#basic-usage");
        assert_eq!(p[1].heading, "json › Basic Usage");
        assert_eq!(p[1].text, "Use dumps with indent.");
        assert!(!p
            .iter()
            .any(|x| x.text.contains("secret") || x.text.contains("Navigation")));
    }

    #[test]
    fn markdown_and_jsonl() {
        let p = passages("a.md", b"# Title\nintro\n## Part\nbody text\n").unwrap_or_default();
        assert_eq!(
            p.iter().map(|x| x.heading.as_str()).collect::<Vec<_>>(),
            ["Title", "Title › Part"]
        );
        let p = passages(
            "d.jsonl",
            b"{\"id\": 7, \"title\": \"T\", \"text\": \"hello\", \"url\": \"https://x\"}\n",
        )
        .unwrap_or_default();
        assert_eq!(p[0].id, "7");
        assert_eq!(p[0].url, "https://x");
        assert!(passages("d.jsonl", b"{\"title\": 1}\n")
            .is_err_and(|e| e.to_string().starts_with("d.jsonl:1:")));
    }
}
