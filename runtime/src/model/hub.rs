//! A Hugging Face model id before mistral.rs sees it: is it in the local cache, and if not,
//! can the hub be reached at all? Offline, mistral.rs answers an id with a network error
//! wrapped in a backtrace; this says in one line what happened and what works offline.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use super::ModelError;

/// How long name resolution and the TCP connect may each take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(4);

/// The hub cache: `$HF_HUB_CACHE`, `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub(crate) fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
        .or_else(|| dirs::home_dir().map(|h| h.join(".cache/huggingface/hub")))
}

/// Snapshot folders of `id` in the cache that hold `file`.
pub(crate) fn cached_file(id: &str, file: &str) -> Option<PathBuf> {
    let snapshots = cache_dir()?
        .join(format!("models--{}", id.replace('/', "--")))
        .join("snapshots");
    std::fs::read_dir(snapshots)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join(file))
        .find(|p| p.is_file())
}

/// The hub's base URL (`$HF_ENDPOINT` as the Hugging Face libraries read it).
fn endpoint() -> String {
    std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into())
}

/// Whether a TCP connection to the endpoint's host opens; `Err` says why not.
async fn probe(endpoint: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(endpoint).map_err(|e| format!("HF_ENDPOINT {endpoint}: {e}"))?;
    let host = url.host_str().ok_or("no host")?.to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<_> = tokio::time::timeout(
        PROBE_TIMEOUT,
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    .map_err(|_| format!("{host}: name resolution timed out"))?
    .map_err(|_| format!("{host}: the name does not resolve"))?
    .collect();
    let first = addrs.first().ok_or(format!("{host}: no address"))?;
    tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(first))
        .await
        .map_err(|_| format!("{host}:{port}: connecting timed out"))?
        .map_err(|e| format!("{host}:{port}: {}", e.kind()))?;
    Ok(())
}

/// Ok when `id` can be loaded: its config is cached, or the hub answers. Otherwise one
/// sentence naming the id, what failed and the offline alternatives.
pub(crate) async fn check_available(id: &str) -> Result<(), ModelError> {
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v == "true");
    check_with(id, &endpoint(), offline).await
}

async fn check_with(id: &str, endpoint: &str, offline_flag: bool) -> Result<(), ModelError> {
    if cached_file(id, "config.json").is_some() {
        return Ok(());
    }
    let cache = cache_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|| "the Hugging Face cache".into());
    let why = if offline_flag {
        "HF_HUB_OFFLINE is set".to_owned()
    } else {
        match probe(endpoint).await {
            Ok(()) => return Ok(()),
            Err(e) => format!("the hub could not be reached ({e})"),
        }
    };
    Err(ModelError::Load(format!(
        "{id}: not in {cache} and {why}. Offline, give a model folder \
         (`--model ./{name}`: config.json, *.safetensors, tokenizer.json) or a .gguf file \
         (`--model ./{lower}.gguf`); `verity model tiny --out DIR` writes a small test model",
        name = Path::new(id)
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        lower = Path::new(id)
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_hub_is_one_sentence_with_the_alternatives() {
        // The discard port on loopback: nothing listens there, the connect is refused.
        let e = check_with("nobody/NoSuchModel-7B", "http://127.0.0.1:9", false)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("nobody/NoSuchModel-7B"), "{e}");
        assert!(e.contains("could not be reached"), "{e}");
        assert!(e.contains(".gguf") && e.contains("model folder"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = check_with("nobody/NoSuchModel-7B", "http://127.0.0.1:9", true)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("HF_HUB_OFFLINE"), "{e}");
    }
}
