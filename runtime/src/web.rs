//! The web tools' URL policy, answered by the permission policy: opening a URL is judged
//! exactly like a call of the `fetch` tool with that URL, so one set of domain rules (e.g.
//! `when = { "args.url" = { domain = [".python.org"] } }`) governs both what `fetch` may
//! read and which `web_search` results the model gets to see.

use std::sync::Arc;

use serde_json::json;
use verity_policies::{Caller, PolicyEngine, Request, Verdict};
use verity_tools::{
    web::{self, UrlPolicy, UrlVerdict, WebConfig},
    ToolRegistry,
};

/// [`UrlPolicy`] over the live policy (reloads apply at once). Filtering uses the pure
/// decision: it neither spends budgets nor writes audit records — the calls themselves do.
pub struct PolicyUrls {
    engine: Arc<PolicyEngine>,
}

impl PolicyUrls {
    /// Judges URLs with `engine`.
    pub fn new(engine: Arc<PolicyEngine>) -> Self {
        Self { engine }
    }
}

impl UrlPolicy for PolicyUrls {
    fn check(&self, caller: Option<&Caller>, url: &str) -> UrlVerdict {
        let cli = Caller::cli();
        let caller = caller.unwrap_or(&cli);
        let args = json!({ "url": url });
        let request = Request::new(caller, "fetch", &args).with_annotations(web::WEB_ANNOTATIONS);
        let d = self.engine.policy().decide(&request);
        match d.verdict {
            Verdict::Allow => UrlVerdict::Allow,
            Verdict::Ask => UrlVerdict::Ask {
                rule: d.rule_id,
                reason: d.reason,
            },
            Verdict::Deny => UrlVerdict::Deny {
                rule: d.rule_id,
                reason: d.reason,
            },
        }
    }
}

/// Every built-in tool, plus `web_search` and `fetch` when a web backend is configured.
pub fn builtin_tools(
    engine: &Arc<PolicyEngine>,
    web: Option<WebConfig>,
) -> Result<ToolRegistry, web::WebSetupError> {
    let mut registry = ToolRegistry::with_builtins();
    if let Some(config) = web {
        let (search, fetch) = web::tools(config, Arc::new(PolicyUrls::new(engine.clone())))?;
        registry.register(search);
        registry.register(fetch);
    }
    Ok(registry)
}
