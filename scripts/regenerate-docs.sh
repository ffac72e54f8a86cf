#!/usr/bin/env bash
# Regenerates the trajectory docs from the code: docs/trajectory.schema.json from the record
# types (runtime/src/trajectory/record.rs) and docs/trajectory.example.json from a real
# record of the tiny model (the README's first command, recorded). Tests fail when either
# is stale. Needs a built `verity` (cargo build) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/verity-target}"
VERITY_UPDATE_SCHEMA=1 cargo test --locked --lib schema_file_is_generated -- --quiet
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$CARGO_TARGET_DIR/debug/verity" run --model tiny --strict --tool-choice calculator --tools calculator \
  --max-tokens-per-call 100 --max-turns 2 --record "$tmp/example.jsonl" "What is 2+2?" >/dev/null
# Pretty-printed, arrays of numbers and strings kept on one line.
python3 - "$tmp/example.jsonl" > docs/trajectory.example.json <<'PY'
import json, sys
def dump(v, ind=0):
    sp = "  " * ind
    if isinstance(v, dict):
        if not v:
            return "{}"
        items = [f"{sp}  {json.dumps(k, ensure_ascii=False)}: {dump(x, ind + 1)}" for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + sp + "}"
    if isinstance(v, list):
        if all(not isinstance(x, (dict, list)) for x in v):
            return "[" + ", ".join(json.dumps(x, ensure_ascii=False) for x in v) + "]"
        return "[\n" + ",\n".join(f"{sp}  {dump(x, ind + 1)}" for x in v) + "\n" + sp + "]"
    return json.dumps(v, ensure_ascii=False)
print(dump(json.loads(open(sys.argv[1]).readline())))
PY
echo "regenerated docs/trajectory.schema.json and docs/trajectory.example.json"
