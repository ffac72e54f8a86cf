"""Strict-mode decode throughput, two `verity` binaries side by side (issue 16: the
sampler's own grammar matcher must not slow strict decoding). Alternates the binaries
run by run, each a strict tiny-model run at temperature 1 with a fixed seed per run, and
reports generated tokens per second of model time (from the recorded turns).
Usage: python3 bench/strict_decode.py BEFORE_BIN AFTER_BIN [RUNS]"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

before, after = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 10
totals = {before: [0, 0], after: [0, 0]}
with tempfile.TemporaryDirectory() as d:
    for i in range(runs):
        for b in (before, after) if i % 2 == 0 else (after, before):
            rec = Path(d) / f"{i}-{abs(hash(b))}.jsonl"
            subprocess.run(
                [b, "run", "--model", "tiny", "--strict", "--tool-choice", "calculator",
                 "--tools", "calculator", "--temperature", "1", "--seed", str(i + 1),
                 "--max-tokens-per-call", "256", "--max-turns", "1", "--record", str(rec),
                 "What is 2+2?"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            )
            r = json.loads(rec.read_text().splitlines()[0])
            for t in r["turns"]:
                totals[b][0] += t["usage"]["completion_tokens"]
                totals[b][1] += t["model_ms"]
for name, b in (("before", before), ("after", after)):
    tok, ms = totals[b]
    print(f"{name:7} {tok:6d} tokens in {ms/1000:.2f} s of model time: {tok / (ms / 1000):.0f} tokens/s")
