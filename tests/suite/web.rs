//! The web backend through the binary: `web_search` against a local stand-in for a
//! SearxNG instance, `fetch` of result pages, and the policy's domain rules on both.
//!
//! No remote site can be reached here, so one local server stands in for the search
//! engine *and* for the web: the `verity` process gets it as its HTTP proxy, which lets
//! the tests use real host names (`docs.python.org`, `evil.example`) that domain rules
//! can match, while every byte stays on this machine.

use std::{
    net::SocketAddr,
    process::{Command, Output, Stdio},
};

use axum::{
    extract::{Query, Request},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use serde_json::{json, Value};

use super::common::{stderr, stdout, verity, write_file};

const POLICY: &str = r#"
default = "ask"

[[rule]]
id = "web-search"
tool = "web_search"
decision = "allow"

[[rule]]
id = "python-docs"
tool = "fetch"
decision = "allow"
when = { "args.url" = { domain = [".python.org"] } }

[[rule]]
id = "no-evil"
tool = "fetch"
decision = "deny"
reason = "known bad site"
when = { "args.url" = { domain = ".evil.example" } }
"#;

/// Stand-in for a SearxNG instance (`/search?format=json`) and for the pages it finds.
async fn stand_in(Query(q): Query<Vec<(String, String)>>, req: Request) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let path = req.uri().path().to_owned();
    let html =
        |body: String| ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    match (host.as_str(), path.as_str()) {
        (_, "/search") => {
            let query = q.iter().find(|(k, _)| k == "q").map(|(_, v)| v.clone());
            let format = q.iter().find(|(k, _)| k == "format").map(|(_, v)| v.as_str());
            if format != Some("json") {
                return (StatusCode::FORBIDDEN, "format not allowed").into_response();
            }
            if query.as_deref() == Some("forbidden") {
                return (StatusCode::FORBIDDEN, "json disabled").into_response();
            }
            axum::Json(json!({
                "query": query,
                "results": [
                    {"url": "http://evil.example/json", "title": "JSON tricks", "content": "totally safe"},
                    {"url": "http://docs.python.org/3/library/json.html", "title": "json — JSON encoder and decoder", "content": "json.dumps(obj, indent=4)"},
                    {"url": "javascript:alert(1)", "title": "x", "content": "y"},
                    {"url": "http://other.example/json", "title": "Other", "content": "a blog"},
                ]
            }))
            .into_response()
        }
        ("docs.python.org", "/3/library/json.html") => html(
            "<html><head><title>json — JSON encoder and decoder</title><script>steal()</script></head>\
             <body><h1>json</h1><p>Use <code>json.dumps(obj, indent=4)</code> to pretty-print.</p></body></html>"
                .into(),
        ),
        // 200,000 nested elements (1.1 MB, under the size cap): parsing this took over
        // ten minutes before nesting was bounded.
        ("docs.python.org", "/deep") => html(format!(
            "<html><body>{}deep{}</body></html>",
            "<div>".repeat(200_000),
            "</div>".repeat(200_000)
        )),
        ("docs.python.org", "/go-elsewhere") => {
            (StatusCode::FOUND, [(header::LOCATION, "http://evil.example/landing")]).into_response()
        }
        ("docs.python.org", "/big") => html(format!("<p>{}</p>", "word ".repeat(200_000))),
        ("docs.python.org", "/image.png") => {
            ([(header::CONTENT_TYPE, "image/png")], vec![0u8; 16]).into_response()
        }
        _ => (StatusCode::NOT_FOUND, "no such page").into_response(),
    }
}

fn start() -> (tokio::runtime::Runtime, SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(get(stand_in));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    });
    (rt, addr)
}

fn call(
    addr: SocketAddr,
    policy: &std::path::Path,
    tool: &str,
    args: Value,
    extra: &[&str],
) -> (Output, Value) {
    let out = Command::new(verity())
        .args([
            "tools",
            "call",
            tool,
            &args.to_string(),
            "--json",
            "--policy",
        ])
        .arg(policy)
        .args(extra)
        .env("VERITY_SEARXNG_URL", format!("http://{addr}"))
        .env("HTTP_PROXY", format!("http://{addr}"))
        .env("http_proxy", format!("http://{addr}"))
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let v = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    (out, v)
}

#[test]
fn web_search_hides_denied_domains_and_marks_ask_ones() {
    let (_rt, addr) = start();
    let dir = tempfile::tempdir().unwrap();
    let policy = write_file(dir.path(), "web.toml", POLICY);
    let (out, v) = call(
        addr,
        &policy,
        "web_search",
        json!({"query": "json dumps"}),
        &[],
    );
    assert!(out.status.success(), "{v:#}");
    let r = &v["result"];
    let urls: Vec<&str> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        [
            "http://docs.python.org/3/library/json.html",
            "http://other.example/json"
        ]
    );
    assert_eq!(r["results"][0]["fetch_allowed"], true);
    assert_eq!(
        r["results"][1]["fetch_allowed"], false,
        "other.example falls to default=ask"
    );
    assert_eq!(r["hidden_by_policy"], 1);
    assert_eq!(r["hiding_rules"], json!(["no-evil"]));
    assert!(v["text"]
        .as_str()
        .unwrap()
        .contains("1 results hidden by policy rule no-evil"));

    let (out, v) = call(
        addr,
        &policy,
        "web_search",
        json!({"query": "forbidden"}),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        v["text"].as_str().unwrap().contains("search.formats"),
        "{v:#}"
    );
}

#[test]
fn fetch_reads_allowed_pages_and_refuses_the_rest() {
    let (_rt, addr) = start();
    let dir = tempfile::tempdir().unwrap();
    let policy = write_file(dir.path(), "web.toml", POLICY);

    let (out, v) = call(
        addr,
        &policy,
        "fetch",
        json!({"url": "http://docs.python.org/3/library/json.html"}),
        &[],
    );
    assert!(out.status.success(), "{v:#}");
    assert_eq!(v["decision"]["rule_id"], "python-docs");
    assert_eq!(v["result"]["title"], "json — JSON encoder and decoder");
    let text = v["result"]["text"].as_str().unwrap();
    assert!(
        text.contains("json.dumps(obj, indent=4)") && !text.contains("steal"),
        "{text}"
    );

    // Pathologically nested HTML is refused at once, not parsed for minutes.
    let started = std::time::Instant::now();
    let (out, v) = call(
        addr,
        &policy,
        "fetch",
        json!({"url": "http://docs.python.org/deep"}),
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    assert!(
        v["text"]
            .as_str()
            .unwrap_or_default()
            .contains("nested more than"),
        "{v:#}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    // A denied domain never reaches the network.
    let (out, v) = call(
        addr,
        &policy,
        "fetch",
        json!({"url": "http://evil.example/json"}),
        &["--yes"],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(v["decision"]["rule_id"], "no-evil");

    // Look-alikes of an allowed domain are other domains.
    for url in [
        "http://docs.python.org.evil.example/",
        "http://docs.python.org@evil.example/",
    ] {
        let (out, v) = call(addr, &policy, "fetch", json!({ "url": url }), &[]);
        assert_eq!(out.status.code(), Some(3), "{url}: {v:#}");
    }

    // An allowed page cannot bounce the fetch to a denied host.
    let (out, v) = call(
        addr,
        &policy,
        "fetch",
        json!({"url": "http://docs.python.org/go-elsewhere"}),
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{v:#}");
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("redirected to http://evil.example/landing"),
        "{v:#}"
    );

    // Size caps and content types.
    let (out, v) = call(
        addr,
        &policy,
        "fetch",
        json!({"url": "http://docs.python.org/big", "max_chars": 1000}),
        &[],
    );
    assert!(out.status.success(), "{v:#}");
    assert_eq!(v["result"]["truncated"], true);
    assert!(v["result"]["text"].as_str().unwrap().chars().count() <= 1000);
    let (out, v) = call(
        addr,
        &policy,
        "fetch",
        json!({"url": "http://docs.python.org/image.png"}),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(v["text"].as_str().unwrap().contains("image/png"), "{v:#}");
}

#[test]
fn fetch_never_reaches_this_machine_or_non_http_schemes() {
    let (_rt, addr) = start();
    let dir = tempfile::tempdir().unwrap();
    let policy = write_file(dir.path(), "open.toml", "default = \"allow\"\n");
    for url in [
        format!("http://{addr}/search?q=x&format=json"),
        "http://localhost/".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "file:///etc/passwd".to_owned(),
    ] {
        let (out, v) = call(addr, &policy, "fetch", json!({ "url": url }), &[]);
        assert_eq!(out.status.code(), Some(3), "{url}: {v:#}");
        assert_eq!(v["error_kind"], "denied", "{url}");
    }
    let listed = Command::new(verity())
        .args(["tools", "list"])
        .env("VERITY_SEARXNG_URL", format!("http://{addr}"))
        .output()
        .unwrap();
    let text = stdout(&listed);
    assert!(
        text.contains("web_search") && text.contains("fetch"),
        "{text}"
    );
    let plain = Command::new(verity())
        .args(["tools", "list"])
        .env_remove("VERITY_SEARXNG_URL")
        .output()
        .unwrap();
    assert!(!stdout(&plain).contains("web_search"));
}
