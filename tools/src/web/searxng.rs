//! `web_search`: a SearxNG instance's JSON API, results filtered by the URL policy.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{UrlVerdict, Web};
use crate::{
    error::{FailureKind, ToolFailure},
    tool::{Annotations, CallContext, Tool},
};

/// Arguments of `web_search`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebSearchParams {
    /// What to search the web for, in plain words.
    pub query: String,
    /// Number of results, 1 to 10 (default 5).
    #[serde(default)]
    #[schemars(range(min = 1, max = 10))]
    pub k: Option<usize>,
}

/// One web result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WebHit {
    /// Rank, from 1.
    pub rank: usize,
    /// Page title.
    pub title: String,
    /// Page URL.
    pub url: String,
    /// The engine's snippet.
    pub snippet: String,
    /// Whether `fetch` may open it without asking (false: it needs approval).
    pub fetch_allowed: bool,
}

/// Result of `web_search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WebSearchOutput {
    /// The query.
    pub query: String,
    /// Results the caller may see, best first.
    pub results: Vec<WebHit>,
    /// Results dropped because the policy denies their domain.
    pub hidden_by_policy: usize,
    /// Rules that hid them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hiding_rules: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct SearxResponse {
    #[serde(default)]
    results: Vec<SearxResult>,
}

#[derive(Debug, Deserialize)]
struct SearxResult {
    #[serde(default)]
    url: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    content: String,
}

/// Most raw results considered per search (the engine may return many more).
const SCAN_LIMIT: usize = 50;

/// The `web_search` tool.
pub struct WebSearch {
    web: Web,
}

impl std::fmt::Debug for WebSearch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSearch")
            .field("searxng", &self.web.config.searxng_url)
            .finish()
    }
}

impl WebSearch {
    pub(crate) fn new(web: Web) -> Self {
        Self { web }
    }
}

impl Tool for WebSearch {
    type Params = WebSearchParams;
    type Output = WebSearchOutput;

    fn name(&self) -> &str {
        "web_search"
    }

    fn title(&self) -> Option<&str> {
        Some("Web search")
    }

    fn description(&self) -> &str {
        "Searches the web (through the user's SearxNG instance) and returns titles, URLs and \
         snippets. Results on domains the user's policy does not allow are left out. Use \
         `fetch` to read a result page. k is the number of results (default 5, max 10)."
    }

    fn annotations(&self) -> Annotations {
        super::WEB_ANNOTATIONS
    }

    async fn call(
        &self,
        p: WebSearchParams,
        ctx: CallContext,
    ) -> Result<WebSearchOutput, ToolFailure> {
        let cfg = &self.web.config;
        let k = p.k.unwrap_or(5);
        if !(1..=cfg.max_results).contains(&k) {
            return Err(ToolFailure::invalid_arguments(format!(
                "k must be between 1 and {}, got {k}",
                cfg.max_results
            )));
        }
        let query = p.query.trim();
        if query.is_empty() {
            return Err(ToolFailure::invalid_arguments("the query is empty"));
        }
        if query.chars().count() > 500 {
            return Err(ToolFailure::new(
                FailureKind::LimitExceeded,
                "the query is over 500 characters",
            ));
        }
        let url = format!("{}/search", cfg.searxng_url);
        let endpoint = url::Url::parse_with_params(&url, &[("q", query), ("format", "json")])
            .map_err(|e| ToolFailure::execution(format!("bad SearxNG URL {url:?}: {e}")))?;
        let request = self.web.client.get(endpoint).send();
        let response = tokio::select! {
            r = request => r,
            () = ctx.cancel.cancelled() => {
                return Err(ToolFailure::new(FailureKind::Cancelled, "the search was cancelled"))
            }
        }
        .map_err(|e| {
            if e.is_timeout() {
                ToolFailure::new(
                    FailureKind::Timeout,
                    format!(
                        "the search engine did not answer within {} s",
                        cfg.timeout.as_secs()
                    ),
                )
            } else {
                ToolFailure::execution(format!("the search engine at {url} is unreachable: {e}"))
            }
        })?;
        let status = response.status();
        if status == reqwest::StatusCode::FORBIDDEN {
            return Err(ToolFailure::execution(format!(
                "the search engine at {url} refused format=json (HTTP 403); enable `json` under \
                 `search.formats` in the SearxNG settings.yml"
            )));
        }
        if !status.is_success() {
            return Err(ToolFailure::execution(format!(
                "the search engine at {url} answered HTTP {status}"
            )));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ToolFailure::execution(format!("reading the search results: {e}")))?;
        let parsed: SearxResponse = serde_json::from_slice(&bytes).map_err(|e| {
            ToolFailure::execution(format!(
                "the search engine at {url} did not return SearxNG JSON ({e})"
            ))
        })?;
        let caller = ctx.caller.as_ref();
        let mut results = Vec::new();
        let mut hidden = 0;
        let mut hiding_rules: Vec<String> = Vec::new();
        for r in parsed.results.into_iter().take(SCAN_LIMIT) {
            if results.len() == k {
                break;
            }
            let scheme_ok =
                url::Url::parse(&r.url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !scheme_ok {
                continue;
            }
            let fetch_allowed = match self.web.policy.check(caller, &r.url) {
                UrlVerdict::Allow => true,
                UrlVerdict::Ask { .. } => false,
                UrlVerdict::Deny { rule, .. } => {
                    hidden += 1;
                    if !hiding_rules.contains(&rule) {
                        hiding_rules.push(rule);
                    }
                    continue;
                }
            };
            results.push(WebHit {
                rank: results.len() + 1,
                title: clip(&r.title, 200),
                url: r.url,
                snippet: clip(&r.content, 400),
                fetch_allowed,
            });
        }
        Ok(WebSearchOutput {
            query: query.to_owned(),
            results,
            hidden_by_policy: hidden,
            hiding_rules,
        })
    }

    fn render(&self, o: &WebSearchOutput) -> String {
        let mut s = String::new();
        if o.results.is_empty() {
            s.push_str(&format!("no web results for {:?}", o.query));
        }
        for h in &o.results {
            let note = if h.fetch_allowed {
                ""
            } else {
                " (fetch needs approval)"
            };
            s.push_str(&format!(
                "{}. {} <{}>{note}\n   {}\n",
                h.rank, h.title, h.url, h.snippet
            ));
        }
        if o.hidden_by_policy > 0 {
            s.push_str(&format!(
                "({} results hidden by policy rule {})\n",
                o.hidden_by_policy,
                o.hiding_rules.join(", ")
            ));
        }
        s.trim_end().to_owned()
    }
}

pub(crate) fn clip(s: &str, max: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= max {
        one
    } else {
        let mut cut: String = one.chars().take(max).collect();
        cut.push('…');
        cut
    }
}
