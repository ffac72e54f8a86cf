//! `verity key new [--out PATH]`: an Ed25519 key pair for signing trajectory records
//! (`--sign` on `run` and `rollout`; `verify --key` checks them).

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use verity_runtime::trajectory::{chain::ChainWriter, sign};

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Make a key pair: the private key (mode 0600) and `PATH.pub`. Never overwrites.
    New {
        /// Where the private key goes (default: `$XDG_CONFIG_HOME/verity/signing.key`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn default_path() -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("verity")
        .join("signing.key")
}

pub fn run(args: KeyArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        KeyCommand::New { out } => {
            let path = out.unwrap_or_else(default_path);
            let signer = sign::Signer::generate(&path)?;
            eprintln!(
                "verity: wrote {} (private, keep it) and {} (public, give it to whoever verifies)",
                path.display(),
                sign::public_path(&path).display()
            );
            println!("{}", signer.key_id());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `writer`, signing with the key at `key` when given.
pub fn signed(writer: ChainWriter, key: Option<&std::path::Path>) -> anyhow::Result<ChainWriter> {
    Ok(match key {
        Some(k) => writer.with_signer(Arc::new(sign::Signer::load(k).with_context(|| {
            format!(
                "signing key {} (--sign, or `sign` in the config file)",
                k.display()
            )
        })?)),
        None => writer,
    })
}
