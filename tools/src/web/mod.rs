//! The optional web backend: `web_search` over a SearxNG instance's JSON API and `fetch`
//! of result pages — both behind the permission policy's domain rules.
//!
//! The tools know nothing of policies: the front end hands them a [`UrlPolicy`] that
//! answers "may this caller open this URL?". `web_search` drops results the policy would
//! not let the caller fetch (and says how many and by which rule); `fetch` re-asks for
//! every redirect hop, so an allowed page cannot bounce the call to a denied host.

mod fetch;
mod searxng;

use crate::Caller;
use std::{sync::Arc, time::Duration};

pub use fetch::{Fetch, FetchOutput, FetchParams};
pub use searxng::{WebHit, WebSearch, WebSearchOutput, WebSearchParams};

/// Both web tools read the world and change nothing.
pub const WEB_ANNOTATIONS: crate::Annotations = crate::Annotations {
    read_only: true,
    destructive: false,
    idempotent: true,
    open_world: true,
};

/// The policy's answer about one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlVerdict {
    /// The caller may open it.
    Allow,
    /// Only with approval (`rule` asked, `reason` says why).
    Ask {
        /// Rule id.
        rule: String,
        /// Why.
        reason: String,
    },
    /// Not at all.
    Deny {
        /// Rule id.
        rule: String,
        /// Why.
        reason: String,
    },
}

/// Decides which URLs a caller may open (implemented by the runtime over the policy).
pub trait UrlPolicy: Send + Sync {
    /// The verdict for `url` and the caller from [`crate::CallContext::caller`] (`None`:
    /// the call came with no caller, judged as the command line).
    fn check(&self, caller: Option<&Caller>, url: &str) -> UrlVerdict;
}

/// Settings of the web backend.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Base URL of the SearxNG instance (its `/search?format=json` must be enabled).
    pub searxng_url: String,
    /// Whole-request timeout of one search or one fetch hop.
    pub timeout: Duration,
    /// Most results returned by one search (after policy filtering).
    pub max_results: usize,
    /// Most bytes downloaded by one fetch.
    pub fetch_max_bytes: usize,
    /// Most characters of text a fetch returns.
    pub fetch_max_chars: usize,
    /// Redirects followed by one fetch.
    pub max_redirects: usize,
    /// Allow fetching loopback and private-network addresses (off: a model should not
    /// reach the machine's own services or the LAN through a web tool).
    pub allow_private_addresses: bool,
}

impl WebConfig {
    /// Defaults for the instance at `searxng_url`.
    pub fn new(searxng_url: impl Into<String>) -> Self {
        Self {
            searxng_url: searxng_url.into().trim_end_matches('/').to_owned(),
            timeout: Duration::from_secs(15),
            max_results: 10,
            fetch_max_bytes: 2 << 20,
            fetch_max_chars: 20_000,
            max_redirects: 5,
            allow_private_addresses: false,
        }
    }
}

/// Shared by both tools: one HTTP client (connection reuse), settings, the policy hook.
#[derive(Clone)]
pub(crate) struct Web {
    pub(crate) client: reqwest::Client,
    pub(crate) config: Arc<WebConfig>,
    pub(crate) policy: Arc<dyn UrlPolicy>,
}

impl Web {
    pub(crate) fn new(
        config: WebConfig,
        policy: Arc<dyn UrlPolicy>,
    ) -> Result<Self, WebSetupError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("verity/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            config: Arc::new(config),
            policy,
        })
    }
}

/// The web tools could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("building the HTTP client: {0}")]
pub struct WebSetupError(#[from] reqwest::Error);

/// Both web tools over one configuration.
pub fn tools(
    config: WebConfig,
    policy: Arc<dyn UrlPolicy>,
) -> Result<(WebSearch, Fetch), WebSetupError> {
    let web = Web::new(config, policy)?;
    Ok((WebSearch::new(web.clone()), Fetch::new(web)))
}

/// Whether a host is the machine itself or a private network (literal addresses and
/// `localhost`; names that resolve there are not caught — documented limitation).
pub(crate) fn is_private_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        url::Host::Ipv4(ip) => {
            ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.octets()[0] == 100 && (ip.octets()[1] & 0xC0) == 64
        }
        url::Host::Ipv6(ip) => {
            ip.is_loopback()
                || ip.is_unspecified()
                || (ip.segments()[0] & 0xfe00) == 0xfc00
                || (ip.segments()[0] & 0xffc0) == 0xfe80
                || ip
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_private_host(&url::Host::Ipv4(v4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_hosts() {
        for (u, private) in [
            ("http://127.0.0.1/", true),
            ("http://localhost:8080/", true),
            ("http://10.1.2.3/", true),
            ("http://192.168.0.1/", true),
            ("http://169.254.169.254/latest/meta-data", true),
            ("http://[::1]/", true),
            ("http://[::ffff:127.0.0.1]/", true),
            ("http://100.64.0.1/", true),
            ("https://python.org/", false),
            ("http://8.8.8.8/", false),
        ] {
            let url = url::Url::parse(u).unwrap();
            assert_eq!(is_private_host(&url.host().unwrap()), private, "{u}");
        }
    }
}
