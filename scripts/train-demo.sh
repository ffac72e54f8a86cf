#!/usr/bin/env bash
# Teaches a tiny model to use the calculator — from random weights, offline, on the CPU —
# with nothing but Verity: seeded word problems, a scripted teacher whose calls really run
# through the policy and the calculator, an SFT export of its verified runs, `verity train
# sft`, then a question the model has not seen. The README's first command runs this.
#
#   scripts/train-demo.sh [OUT_DIR]      (default: ~/.local/share/verity/demo)
#
# Set VERITY to use another binary (default: `verity` on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
verity="${VERITY:-verity}"
out="${1:-${XDG_DATA_HOME:-$HOME/.local/share}/verity/demo}"
mkdir -p "$out"
step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "a tiny Qwen3-architecture model with random weights (tools listed one per line)"
"$verity" model tiny --compact-tools --out "$out/base" >/dev/null
step "2,000 seeded word problems: one or two calculator calls, or none (scripts/tasks.py)"
python3 scripts/tasks.py arithmetic --n 2000 --seed 0 > "$out/tasks.jsonl"
step "teacher demonstrations: the model forced to write each task's plan; the calculator runs"
rm -f "$out/demos.jsonl" "$out/demos.jsonl.head" "$out/demos."*
"$verity" rollout "$out/tasks.jsonl" --model "$out/base" --teacher --samples 1 \
    --policy trusted --tools calculator --out "$out/demos.jsonl" >/dev/null
"$verity" export "$out/demos.jsonl" --format trl-sft --min-reward 1 --out "$out/sft.jsonl"
step "supervised fine-tuning (candle, CPU): 2,000 steps of 16 runs, ~10 minutes on 2 cores"
# The first 1,200 steps see each turn with only the 160 tokens before it: on short context
# the model learns to copy numbers into its calls within ~1,000 steps; on whole rows the
# same model was still guessing digits after 2,000 (BENCHMARKS.md, `verity train`).
"$verity" train sft "$out/sft.jsonl" --model "$out/base" --out "$out/calc-model" \
    --steps 2000 --batch-size 16 --short-context-steps 1200 >/dev/null
step "the trained model on a question it has not seen"
"$verity" run --model "$out/calc-model" --tools calculator --max-turns 3 \
    "A box holds 64 pencils. How many pencils are in 37 boxes?"
