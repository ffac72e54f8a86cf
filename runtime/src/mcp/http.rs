//! Streamable HTTP transport: loopback by default, Origin validated, bearer tokens
//! (required beyond loopback), request bodies capped, graceful shutdown.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    serve::ListenerExt as _,
    Router,
};
use rmcp::transport::streamable_http_server::{
    session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
};
use tokio_util::sync::CancellationToken;

use crate::{
    error::{Error, Result},
    mcp::server::McpServer,
};

/// A named bearer token. The name (not the secret) identifies the caller to policies and
/// in audit records.
#[derive(Clone)]
pub struct Token {
    /// Caller id used by policies (`mcp-client:NAME`).
    pub name: String,
    /// The secret.
    pub secret: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl std::str::FromStr for Token {
    type Err = String;
    /// `NAME:SECRET`, or just `SECRET` (named `token`).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (name, secret) = match s.split_once(':') {
            Some((n, s)) if !n.is_empty() => (n.to_owned(), s.to_owned()),
            _ => ("token".to_owned(), s.to_owned()),
        };
        if secret.len() < 16 {
            return Err(format!(
                "token '{name}' is {} characters long; use at least 16 (e.g. `openssl rand -hex 24`)",
                secret.len()
            ));
        }
        Ok(Token { name, secret })
    }
}

/// Options of `verity serve --http`.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Address to bind (`127.0.0.1:8765`).
    pub addr: SocketAddr,
    /// Accepted bearer tokens; required when `addr` is not loopback.
    pub tokens: Vec<Token>,
    /// Browser origins allowed to call (e.g. `http://localhost:6274`); any other
    /// `Origin` gets 403. Requests without `Origin` (non-browser clients) pass.
    pub allowed_origins: Vec<String>,
    /// Extra `Host` values to accept when bound beyond loopback (DNS-rebinding guard).
    pub allowed_hosts: Vec<String>,
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
}

impl HttpOptions {
    /// Loopback-only defaults on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            tokens: Vec::new(),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_body_bytes: 1 << 20,
        }
    }

    /// Refuses unsafe configurations before anything is bound.
    pub fn validate(&self) -> Result<()> {
        if !self.addr.ip().is_loopback() && self.tokens.is_empty() {
            return Err(Error::Config(format!(
                "refusing to serve on {} without authentication: binding beyond loopback requires a bearer token (--token NAME:SECRET or VERITY_TOKEN)",
                self.addr
            )));
        }
        Ok(())
    }
}

/// Marks a request whose bearer token was accepted.
#[derive(Debug, Clone)]
pub(crate) struct Authenticated {
    pub token_name: String,
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(
    State(tokens): State<Arc<Vec<Token>>>,
    mut req: Request,
    next: Next,
) -> Response {
    if tokens.is_empty() {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
        return unauthorized("missing bearer token (send `Authorization: Bearer <token>`)");
    };
    // Compare against every token so timing does not reveal which name matched.
    let mut found = None;
    for t in tokens.iter() {
        if constant_time_eq(t.secret.as_bytes(), presented.as_bytes()) {
            found = Some(t.name.clone());
        }
    }
    match found {
        Some(token_name) => {
            req.extensions_mut().insert(Authenticated { token_name });
            next.run(req).await
        }
        None => unauthorized("invalid bearer token"),
    }
}

fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"verity\"")],
        Body::from(format!("{{\"error\":\"{message}\"}}")),
    )
        .into_response()
}

/// Builds the HTTP app (for embedding or tests): `/mcp` is the MCP endpoint.
pub fn router(server: McpServer, opts: &HttpOptions, shutdown: CancellationToken) -> Router {
    let mut origins = opts.allowed_origins.clone();
    if opts.addr.ip().is_loopback() {
        // Pages served from this machine (e.g. the MCP Inspector UI) may call a loopback
        // server; a DNS-rebinding page carries its own, foreign Origin and is refused.
        for host in ["localhost", "127.0.0.1", "[::1]"] {
            origins.push(format!("http://{host}:*"));
            origins.push(format!("https://{host}:*"));
        }
    }
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown.child_token())
        .with_max_request_body_bytes(opts.max_body_bytes)
        .with_allowed_origins(origins)
        .enforce_origin_validation();
    if opts.addr.ip().is_loopback() {
        let port = opts.addr.port();
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]", "::1"]
            .iter()
            .flat_map(|h| [h.to_string(), format!("{h}:{port}")])
            .collect();
        hosts.extend(opts.allowed_hosts.iter().cloned());
        config = config.with_allowed_hosts(hosts);
    } else if opts.allowed_hosts.is_empty() {
        // Beyond loopback a token is required, and the public host name is unknown here.
        config = config.disable_allowed_hosts();
    } else {
        config = config.with_allowed_hosts(opts.allowed_hosts.clone());
    }
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let tokens = Arc::new(opts.tokens.clone());
    Router::new()
        .nest_service("/mcp", service)
        .layer(middleware::from_fn_with_state(tokens, require_token))
}

/// Binds and serves until `shutdown` fires; in-flight requests finish first.
pub async fn serve_http(
    server: McpServer,
    opts: HttpOptions,
    shutdown: CancellationToken,
) -> Result<()> {
    opts.validate()?;
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|source| Error::Io {
            context: format!("cannot bind {}", opts.addr),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| Error::Io {
        context: "cannot read the bound address".into(),
        source,
    })?;
    tracing::info!(%local, auth = !opts.tokens.is_empty(), "serving MCP over streamable HTTP");
    eprintln!("verity: serving MCP on http://{local}/mcp");
    let app = router(server, &opts, shutdown.clone());
    // Small JSON-RPC replies must not wait for delayed ACKs (Nagle): ~40 ms per call.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(|source| Error::Io {
            context: "HTTP server failed".into(),
            source,
        })
}
