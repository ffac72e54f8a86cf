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
step "supervised fine-tuning (candle, CPU): 2,000 steps of 16 runs, ~13 minutes on 2 cores"
"$verity" train sft "$out/sft.jsonl" --model "$out/base" --out "$out/calc-model" \
    --steps 2000 --batch-size 16 --min-lr-ratio 0.5 >/dev/null
# Measured: after 2,000 steps this model still miscopied digits (64*35 for 64 x 37);
# 1,000 more, resumed from the checkpoint with the schedule stretched to 3,000, made it
# copy (77.5% of 40 new-number problems solved). --resume continues a run exactly.
step "1,000 more steps, resumed from the checkpoint (~7 minutes)"
"$verity" train sft "$out/sft.jsonl" --model "$out/base" --out "$out/calc-model" \
    --steps 3000 --batch-size 16 --min-lr-ratio 0.5 --resume >/dev/null
step "the trained model on a question it has not seen"
"$verity" run --model "$out/calc-model" --tools calculator --max-turns 3 \
    "A box holds 64 pencils. How many pencils are in 37 boxes?"
