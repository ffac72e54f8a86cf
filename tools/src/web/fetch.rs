//! `fetch`: one web page as text — only from hosts the policy allows, every redirect hop
//! re-checked, size-capped while downloading, HTML reduced to its readable text.

use futures::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{is_private_host, UrlVerdict, Web};
use crate::{
    error::{FailureKind, ToolFailure},
    search::extract::document_text,
    tool::{Annotations, CallContext, Tool},
};

/// Arguments of `fetch`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchParams {
    /// The page (http or https), typically a `web_search` result.
    pub url: String,
    /// Most characters of text to return (default and cap: the configured limit).
    #[serde(default)]
    pub max_chars: Option<usize>,
}

/// A fetched page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FetchOutput {
    /// The URL finally read (after redirects).
    pub url: String,
    /// HTTP status.
    pub status: u16,
    /// Content type.
    pub content_type: String,
    /// Page title, when it has one.
    pub title: String,
    /// Readable text.
    pub text: String,
    /// Whether the download or the text was cut at a limit.
    pub truncated: bool,
}

/// The `fetch` tool.
pub struct Fetch {
    web: Web,
}

impl std::fmt::Debug for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetch").finish()
    }
}

impl Fetch {
    pub(crate) fn new(web: Web) -> Self {
        Self { web }
    }

    /// Refuses URLs a web tool must never open, whatever the policy says.
    fn check_target(&self, url: &url::Url) -> Result<(), ToolFailure> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ToolFailure::new(
                FailureKind::Denied,
                format!(
                    "only http and https URLs can be fetched, not {}:",
                    url.scheme()
                ),
            ));
        }
        let Some(host) = url.host() else {
            return Err(ToolFailure::invalid_arguments(format!("{url} has no host")));
        };
        if !self.web.config.allow_private_addresses && is_private_host(&host) {
            return Err(ToolFailure::new(
                FailureKind::Denied,
                format!(
                    "{host} is this machine or a private network; fetching it is disabled \
                     (allow_private_addresses in the web configuration)"
                ),
            ));
        }
        Ok(())
    }

    async fn get(&self, p: &FetchParams, ctx: &CallContext) -> Result<FetchOutput, ToolFailure> {
        let cfg = &self.web.config;
        let max_chars = p
            .max_chars
            .unwrap_or(cfg.fetch_max_chars)
            .min(cfg.fetch_max_chars);
        let mut url = url::Url::parse(p.url.trim()).map_err(|e| {
            ToolFailure::invalid_arguments(format!("{:?} is not a URL: {e}", p.url))
        })?;
        let mut hops = 0;
        let response = loop {
            self.check_target(&url)?;
            // The gate already judged the first URL; redirects are judged here.
            if hops > 0 {
                match self.web.policy.check(ctx.caller.as_ref(), url.as_str()) {
                    UrlVerdict::Allow => {}
                    UrlVerdict::Ask { rule, .. } | UrlVerdict::Deny { rule, .. } => {
                        return Err(ToolFailure::new(
                            FailureKind::Denied,
                            format!(
                                "the page redirected to {url}, which policy rule '{rule}' does \
                                 not allow without approval; fetch that URL directly if needed"
                            ),
                        ))
                    }
                }
            }
            let response = self.web.client.get(url.clone()).send().await.map_err(|e| {
                if e.is_timeout() {
                    ToolFailure::new(
                        FailureKind::Timeout,
                        format!("{url} did not answer within {} s", cfg.timeout.as_secs()),
                    )
                } else {
                    ToolFailure::execution(format!("fetching {url}: {e}"))
                }
            })?;
            if !response.status().is_redirection() {
                break response;
            }
            hops += 1;
            if hops > cfg.max_redirects {
                return Err(ToolFailure::execution(format!(
                    "more than {} redirects from {}",
                    cfg.max_redirects, p.url
                )));
            }
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    ToolFailure::execution(format!("{url} redirected without a Location"))
                })?;
            url = url.join(location).map_err(|e| {
                ToolFailure::execution(format!("{url} redirected to a bad URL {location:?}: {e}"))
            })?;
        };
        let status = response.status();
        if !status.is_success() {
            return Err(ToolFailure::execution(format!(
                "{url} answered HTTP {status}"
            )));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_ascii_lowercase();
        let kind = if content_type.contains("html") {
            "page.html"
        } else if content_type.contains("markdown") {
            "page.md"
        } else if content_type.starts_with("text/") || content_type.contains("json") {
            "page.txt"
        } else {
            return Err(ToolFailure::execution(format!(
                "{url} is {content_type}; only text, HTML, Markdown and JSON pages can be read"
            )));
        };
        let mut body = Vec::new();
        let mut truncated = false;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ToolFailure::execution(format!("reading {url}: {e}")))?;
            let room = cfg.fetch_max_bytes - body.len();
            if chunk.len() >= room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        // Parsing is CPU work (up to 2 MiB of HTML): on a blocking thread, so a large page
        // never holds an async worker other clients' calls need.
        let (title, text) = tokio::task::spawn_blocking(move || document_text(kind, &body))
            .await
            .map_err(|e| ToolFailure::execution(format!("{url}: extracting the text failed: {e}")))?
            .map_err(|e| ToolFailure::execution(format!("{url}: {e}")))?;
        let mut text = text;
        if text.chars().count() > max_chars {
            text = text.chars().take(max_chars).collect();
            truncated = true;
        }
        Ok(FetchOutput {
            url: url.to_string(),
            status: status.as_u16(),
            content_type,
            title,
            text,
            truncated,
        })
    }
}

impl Tool for Fetch {
    type Params = FetchParams;
    type Output = FetchOutput;

    fn name(&self) -> &str {
        "fetch"
    }

    fn title(&self) -> Option<&str> {
        Some("Fetch a web page")
    }

    fn description(&self) -> &str {
        "Reads one web page (http/https) and returns its title and readable text, size-capped. \
         Only pages on domains the user's policy allows can be read; use it on web_search \
         results."
    }

    fn annotations(&self) -> Annotations {
        super::WEB_ANNOTATIONS
    }

    async fn call(&self, p: FetchParams, ctx: CallContext) -> Result<FetchOutput, ToolFailure> {
        tokio::select! {
            r = self.get(&p, &ctx) => r,
            () = ctx.cancel.cancelled() => {
                Err(ToolFailure::new(FailureKind::Cancelled, "the fetch was cancelled"))
            }
        }
    }

    fn render(&self, o: &FetchOutput) -> String {
        let mut s = String::new();
        if !o.title.is_empty() {
            s.push_str(&format!("# {}\n", o.title));
        }
        s.push_str(&format!("<{}>\n\n{}", o.url, o.text));
        if o.truncated {
            s.push_str("\n\n[truncated]");
        }
        s
    }
}
