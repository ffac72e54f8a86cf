//! Optional Ed25519 signatures on trajectory records (ring). A hash chain shows a file was
//! not changed *after someone sealed it* — and anyone can re-seal an altered file. A
//! signature over each record's digest, by a key only the recorder holds, shows who sealed
//! it: `verity verify --key KEY.pub` fails on a record that key did not sign.
//!
//! Key files are text: `verity-ed25519-key/1 <hex PKCS#8>` (private, mode 0600) and
//! `verity-ed25519-pub/1 <hex public key>`.

use std::path::{Path, PathBuf};

use ring::{
    rand::SystemRandom,
    signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519},
};

use super::record::Signature;

const PRIVATE_TAG: &str = "verity-ed25519-key/1";
const PUBLIC_TAG: &str = "verity-ed25519-pub/1";

/// Why a key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading or writing a key file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a key of the expected kind.
    #[error("{path}: not a {expected} file ({why})")]
    Format {
        /// The file.
        path: PathBuf,
        /// `verity-ed25519-key/1` or `verity-ed25519-pub/1`.
        expected: &'static str,
        /// What is wrong.
        why: String,
    },
    /// Refusing to overwrite a key.
    #[error("{0} exists; a key is never overwritten (remove it first, or choose --out)")]
    Exists(PathBuf),
    /// The system's random source failed.
    #[error("generating a key: {0}")]
    Random(String),
}

/// Signs record digests.
#[derive(Debug)]
pub struct Signer {
    pair: Ed25519KeyPair,
    /// `ed25519:<hex public key>`.
    key_id: String,
}

fn key_id(public: &[u8]) -> String {
    format!("ed25519:{}", hex::encode(public))
}

/// The public key file beside a private one: `KEY.pub`.
pub fn public_path(private: &Path) -> PathBuf {
    let mut s = private.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

impl Signer {
    /// Makes a new key pair at `path` (0600) and `path.pub`; returns the signer.
    pub fn generate(path: &Path) -> Result<Self, KeyError> {
        if path.exists() {
            return Err(KeyError::Exists(path.to_path_buf()));
        }
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| KeyError::Io { path: p, source }
        };
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|e| KeyError::Random(e.to_string()))?;
        let signer = Self::from_pkcs8(pkcs8.as_ref(), path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let body = format!("{PRIVATE_TAG} {}\n", hex::encode(pkcs8.as_ref()));
        write_private(path, body.as_bytes()).map_err(io(path))?;
        let public = public_path(path);
        std::fs::write(
            &public,
            format!(
                "{PUBLIC_TAG} {}\n",
                hex::encode(signer.pair.public_key().as_ref())
            ),
        )
        .map_err(io(&public))?;
        Ok(signer)
    }

    /// Reads a private key file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |why: &str| KeyError::Format {
            path: path.to_path_buf(),
            expected: PRIVATE_TAG,
            why: why.to_owned(),
        };
        let hex_body = text
            .trim()
            .strip_prefix(PRIVATE_TAG)
            .ok_or_else(|| bad("it does not start with the tag"))?
            .trim();
        let der = hex::decode(hex_body).map_err(|_| bad("the key is not hex"))?;
        Self::from_pkcs8(&der, path)
    }

    fn from_pkcs8(der: &[u8], path: &Path) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|e| KeyError::Format {
            path: path.to_path_buf(),
            expected: PRIVATE_TAG,
            why: e.to_string(),
        })?;
        let key_id = key_id(pair.public_key().as_ref());
        Ok(Self { pair, key_id })
    }

    /// `ed25519:<hex public key>`.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The signature of a record's digest.
    pub fn sign(&self, digest: &str) -> Signature {
        Signature {
            key: self.key_id.clone(),
            sig: hex::encode(self.pair.sign(digest.as_bytes()).as_ref()),
        }
    }
}

#[cfg(unix)]
fn write_private(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(body)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, body: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, body)
}

/// A public key given as a `.pub` file or as `ed25519:<hex>`: its key id.
pub fn read_public(spec: &str) -> Result<String, KeyError> {
    if let Some(hex_key) = spec.strip_prefix("ed25519:") {
        return check_public(hex_key, Path::new(spec));
    }
    let path = Path::new(spec);
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let hex_key = text
        .trim()
        .strip_prefix(PUBLIC_TAG)
        .ok_or_else(|| KeyError::Format {
            path: path.to_path_buf(),
            expected: PUBLIC_TAG,
            why: "it does not start with the tag".into(),
        })?
        .trim();
    check_public(hex_key, path)
}

fn check_public(hex_key: &str, path: &Path) -> Result<String, KeyError> {
    match hex::decode(hex_key) {
        Ok(k) if k.len() == 32 => Ok(key_id(&k)),
        _ => Err(KeyError::Format {
            path: path.to_path_buf(),
            expected: PUBLIC_TAG,
            why: "the key is not 32 bytes of hex".into(),
        }),
    }
}

/// Whether `sig` is a valid signature of `digest` by the key it names.
pub fn verify(digest: &str, sig: &Signature) -> bool {
    let (Some(public), Ok(bytes)) = (
        sig.key
            .strip_prefix("ed25519:")
            .and_then(|h| hex::decode(h).ok()),
        hex::decode(&sig.sig),
    ) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, public)
        .verify(digest.as_bytes(), &bytes)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sign_and_signatures_verify_only_for_their_digest_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let s = Signer::generate(&path).unwrap();
        assert!(matches!(Signer::generate(&path), Err(KeyError::Exists(_))));
        let again = Signer::load(&path).unwrap();
        assert_eq!(again.key_id(), s.key_id());
        assert_eq!(
            read_public(public_path(&path).to_str().unwrap()).unwrap(),
            s.key_id()
        );
        let sig = s.sign("sha256:abc");
        assert!(verify("sha256:abc", &sig));
        assert!(!verify("sha256:abd", &sig));
        let other = Signer::generate(&dir.path().join("k2")).unwrap();
        let forged = Signature {
            key: other.key_id().to_owned(),
            ..sig.clone()
        };
        assert!(!verify("sha256:abc", &forged));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join("bad"), "nope").unwrap();
        let e = Signer::load(&dir.path().join("bad"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("verity-ed25519-key/1"), "{e}");
    }
}
