//! The compiled interpreter: one wasmtime `Engine` per process with epoch interruption (a
//! ticker thread advances the epoch every 10 ms), the module compiled once to a `.cwasm`
//! on disk and deserialized in milliseconds afterwards, and a `Linker` + `InstancePre`
//! built once. A call only builds a WASI context and instantiates (copy-on-write memory).

use std::{
    fs,
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use wasmtime::{Config, Engine, InstancePre, Linker, Module};

use super::{
    install::{cache_dir, private_dir, sha256_file},
    run::State,
    CodeError,
};

/// Epoch tick: the granularity of wall-clock limits and of cooperative yields.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// A ready-to-instantiate interpreter. Cheap to share (`Arc`).
pub struct PythonEngine {
    pub(crate) engine: Engine,
    pub(crate) pre: InstancePre<State>,
    /// Where the compiled module came from, and whether it was compiled now.
    pub cwasm: PathBuf,
    /// Whether this load compiled the module (false: loaded from the cache).
    pub compiled: bool,
}

impl std::fmt::Debug for PythonEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PythonEngine")
            .field("cwasm", &self.cwasm)
            .field("compiled", &self.compiled)
            .finish()
    }
}

fn config() -> Config {
    let mut c = Config::new();
    c.epoch_interruption(true);
    // Host backtraces are never shown to a model; don't pay for them.
    c.wasm_backtrace_max_frames(None);
    c.cranelift_opt_level(wasmtime::OptLevel::Speed);
    c
}

impl PythonEngine {
    /// Loads (or compiles and caches) the interpreter at `wasm`.
    pub fn load(wasm: &Path) -> Result<Arc<Self>, CodeError> {
        if !wasm.exists() {
            return Err(CodeError::NotInstalled(wasm.to_owned()));
        }
        let engine = Engine::new(&config()).map_err(|e| CodeError::Engine(e.to_string()))?;
        let wasm_sha = sha256_file(wasm)?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let key = format!("{}-{:016x}", &wasm_sha[..16], h.finish());
        let dir = cache_dir().join("cwasm");
        private_dir(&dir)?;
        let cwasm = dir.join(format!("{key}.cwasm"));
        let (module, compiled) = match load_cached(&engine, &cwasm) {
            Some(m) => (m, false),
            None => (compile_and_store(&engine, wasm, &cwasm)?, true),
        };
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut State| &mut s.wasi)
            .and_then(|()| super::quota::add_to_linker(&mut linker))
            .map_err(|e| CodeError::Engine(e.to_string()))?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| CodeError::Engine(e.to_string()))?;
        start_ticker(&engine);
        Ok(Arc::new(Self {
            engine,
            pre,
            cwasm,
            compiled,
        }))
    }
}

/// Loads a cached `.cwasm` only if its recorded checksum matches (corruption) and wasmtime
/// accepts it (version/configuration mismatch); otherwise it is discarded.
fn load_cached(engine: &Engine, cwasm: &Path) -> Option<Module> {
    let sum_path = cwasm.with_extension("sha256");
    let recorded = fs::read_to_string(&sum_path).ok()?;
    let actual = sha256_file(cwasm).ok()?;
    if recorded.trim() != actual {
        tracing::warn!(path = %cwasm.display(), "cached module is corrupt; recompiling");
        let _ = fs::remove_file(cwasm);
        return None;
    }
    // SAFETY: `deserialize_file` trusts the file to be wasmtime's own output. It is: the
    // cache directory is private to the user (0700), the file was written atomically by
    // `compile_and_store` below, and its SHA-256 was checked against the one recorded
    // at that time just above. wasmtime additionally checks version and configuration.
    #[allow(unsafe_code)]
    let module = unsafe { Module::deserialize_file(engine, cwasm) };
    match module {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(path = %cwasm.display(), error = %e, "cached module rejected; recompiling");
            let _ = fs::remove_file(cwasm);
            None
        }
    }
}

fn compile_and_store(engine: &Engine, wasm: &Path, cwasm: &Path) -> Result<Module, CodeError> {
    let bytes = fs::read(wasm).map_err(|e| CodeError::io(wasm, e))?;
    tracing::info!(wasm = %wasm.display(), "compiling the Python interpreter (once)");
    let compiled = engine
        .precompile_module(&bytes)
        .map_err(|e| CodeError::Engine(format!("cannot compile {}: {e}", wasm.display())))?;
    let dir = cwasm.parent().unwrap_or(Path::new("."));
    // Atomic: write a temp file, fsync, rename; the checksum goes last.
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| CodeError::io(dir, e))?;
    std::io::Write::write_all(&mut tmp, &compiled).map_err(|e| CodeError::io(dir, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| CodeError::io(dir, e))?;
    tmp.persist(cwasm)
        .map_err(|e| CodeError::io(cwasm, e.error))?;
    let sum = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&compiled));
    fs::write(cwasm.with_extension("sha256"), sum).map_err(|e| CodeError::io(cwasm, e))?;
    // SAFETY: we produced these bytes with this engine a moment ago.
    #[allow(unsafe_code)]
    let module = unsafe { Module::deserialize(engine, &compiled) };
    module.map_err(|e| CodeError::Engine(e.to_string()))
}

fn start_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("verity-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(TICK);
            match weak.upgrade() {
                Some(e) => e.increment_epoch(),
                None => return,
            }
        })
        .map(|_| ())
        .unwrap_or_else(|e| tracing::error!("cannot start the epoch ticker: {e}"));
}
