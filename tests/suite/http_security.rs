//! Streamable HTTP edges with a raw HTTP client: malformed JSON-RPC, oversized bodies,
//! hostile Origin and Host, bearer tokens, refusing to bind beyond loopback without a
//! token, graceful shutdown. After every bad request the server still serves.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::json;

use super::common::{run, stderr, HttpServer};

fn initialize_body() -> String {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "raw-http-test", "version": "1"}}
    })
    .to_string()
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn post(url: &str, body: String, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut req = client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("request failed: {e}"));
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (status, text)
}

async fn assert_still_serves(url: &str, headers: &[(&str, &str)]) {
    let (status, body) = post(url, initialize_body(), headers).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("\"serverInfo\"") && body.contains("verity"),
        "{body}"
    );
}

#[tokio::test]
async fn malformed_and_oversized_requests_are_refused_and_serving_continues() {
    let mut server = HttpServer::start(&["--max-body-bytes", "65536"]);
    let url = server.url.clone();

    let (status, body) = post(&url, "{ this is not json".into(), &[]).await;
    assert!(status.is_client_error(), "{status} {body}");
    assert_still_serves(&url, &[]).await;

    let (status, body) = post(&url, json!({"jsonrpc": "2.0", "id": 7}).to_string(), &[]).await;
    assert!(
        status.is_client_error() || body.contains("\"error\""),
        "{status} {body}"
    );
    assert_still_serves(&url, &[]).await;

    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(200_000)
    );
    let (status, _) = post(&url, big, &[]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_still_serves(&url, &[]).await;
    assert!(server.is_running());
}

#[tokio::test]
async fn hostile_origin_and_host_get_403() {
    let server = HttpServer::start(&["--allow-origin", "http://localhost:6274"]);
    let url = server.url.clone();
    let (status, _) = post(
        &url,
        initialize_body(),
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = post(
        &url,
        initialize_body(),
        &[("origin", "http://localhost:6274")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // DNS rebinding: a foreign Host header pointing at our loopback socket.
    let (status, _) = post(&url, initialize_body(), &[("host", "evil.example")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_still_serves(&url, &[]).await;
}

#[tokio::test]
async fn bearer_token_is_enforced() {
    let server = HttpServer::start(&["--token", "ci:0123456789abcdef0123"]);
    let url = server.url.clone();
    let (status, _) = post(&url, initialize_body(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post(
        &url,
        initialize_body(),
        &[("authorization", "Bearer wrong-token-000000000")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post(
        &url,
        initialize_body(),
        &[("authorization", "Basic Y2k6eA==")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_still_serves(&url, &[("authorization", "Bearer 0123456789abcdef0123")]).await;
}

#[test]
fn binding_beyond_loopback_without_a_token_refuses_to_start() {
    let out = run(&["serve", "--http", "0.0.0.0:0"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("refusing to serve on 0.0.0.0:0 without authentication"),
        "{err}"
    );
    let out = run(&["serve", "--http", "127.0.0.1:0", "--token", "short"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("at least 16"), "{}", stderr(&out));
}

#[tokio::test]
async fn beyond_loopback_with_a_token_serves_and_requires_it() {
    let server = HttpServer::start_on("0.0.0.0:0", &["--token", "ci:0123456789abcdef0123"]);
    let url = format!("http://127.0.0.1:{}/mcp", server.port);
    let (status, _) = post(&url, initialize_body(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_still_serves(&url, &[("authorization", "Bearer 0123456789abcdef0123")]).await;
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let server = HttpServer::start(&[]);
    if let Err(e) = server.terminate() {
        panic!("verity serve did not exit cleanly on SIGTERM: {e}");
    }
}
