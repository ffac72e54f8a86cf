"""Embedded decoding at a real model's size, against llama.cpp (issue 15 §8).

A Qwen3-0.6B-shaped checkpoint (the published dimensions and vocabulary, random weights,
f32; `verity model tiny --family qwen3 --shape qwen3-0.6b`) is loaded by Verity's embedded
engine (mistral.rs, the Hugging Face folder) and by llama.cpp's `llama-server` (the `.gguf`
beside it: same weights, same dtype), both on the same CPU threads. Both get the same
~2k-token chat prompt; runs alternate between the two.

- Verity: `verity run` twice per round, 1 token and 1 + N tokens; the recorded model time
  of the 1-token run is the time to first token, N / (difference) the decode rate.
- llama.cpp: the same messages to `/v1/chat/completions` with N + 1 tokens; its own
  `timings` give prompt time (time to first token, without the first token's decode) and
  the decode rate; prompt caching off so every round processes the prompt.

Usage: [VERITY_ARGS="--dtype bf16"] python3 bench/family_decode.py [VERITY_BIN] [ROUNDS] [N]
(defaults: target/release verity from $CARGO_TARGET_DIR, 3 rounds, 64 tokens). The model
is generated once under ~/.cache/verity-bench/.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

repo = Path(__file__).resolve().parent.parent
target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/verity-target"))
verity = sys.argv[1] if len(sys.argv) > 1 else str(target / "release/verity")
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
n = int(sys.argv[3]) if len(sys.argv) > 3 else 64
threads = str(os.cpu_count() or 2)
# More `verity run` flags, e.g. VERITY_ARGS="--dtype bf16".
extra_args = os.environ.get("VERITY_ARGS", "").split()
fixtures = repo / ".test-data/llama.cpp"
model = Path.home() / ".cache/verity-bench/qwen3-0.6b"
gguf = model / "verity-tiny-qwen3.gguf"
if not gguf.exists():
    subprocess.run(
        [verity, "model", "tiny", "--family", "qwen3", "--shape", "qwen3-0.6b",
         "--vocab", fixtures / "ggml-vocab-qwen2.gguf",
         "--template", fixtures / "templates/Qwen-Qwen3-0.6B.jinja", "--out", model],
        check=True,
    )

# ~2k tokens of ordinary English (Qwen's tokenizer: ~1.3 tokens per word).
paragraph = (
    "The committee reviewed the quarterly figures for each of the regional offices and "
    "noted that shipping costs had risen while returns had fallen, so the overall margin "
    "stayed roughly where it was in the spring. "
)
prompt = "Summarise the following notes in one sentence.\n\n" + paragraph * 45

with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    config = d / "config.toml"
    config.write_text("")

    def verity_run(tokens: int, i: int) -> dict:
        rec = d / f"r{i}-{tokens}.jsonl"
        subprocess.run(
            [verity, "run", *extra_args, "--config", config, "--model", model,
             "--tool-choice", "none",
             "--temperature", "0", "--max-turns", "1", "--max-tokens-per-call", str(tokens),
             "--record", rec, prompt],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        return json.loads(rec.read_text().splitlines()[0])

    # The exact messages Verity sent, for llama.cpp.
    first = verity_run(1, -1)
    messages = first["messages"][: first["prompt_messages"]]
    prompt_len = first["turns"][0]["prompt_len"]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [fixtures / "bin/llama-server", "-m", gguf, "--jinja", "--host", "127.0.0.1",
         "--port", str(port), "-t", threads, "-tb", threads, "-c", "4096", "--parallel", "1",
         "--no-cache-prompt"],
        stdout=subprocess.DEVNULL, stderr=open(d / "server.log", "w"),
    )
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except Exception:
                time.sleep(0.2)

        def llama_run() -> dict:
            body = {"messages": messages, "max_tokens": n + 1, "temperature": 0,
                    "ignore_eos": True, "cache_prompt": False}
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/chat/completions", json.dumps(body).encode(),
                {"content-type": "application/json"})
            return json.load(urllib.request.urlopen(req, timeout=600))

        v_ttft, v_rate, l_ttft, l_rate, l_prompt = [], [], [], [], None
        for i in range(rounds):
            order = ("verity", "llama") if i % 2 == 0 else ("llama", "verity")
            for who in order:
                if who == "verity":
                    one = verity_run(1, i)["turns"][0]
                    many = verity_run(n + 1, i)["turns"][0]
                    generated = many["usage"]["completion_tokens"]
                    v_ttft.append(one["model_ms"])
                    v_rate.append((generated - 1) / ((many["model_ms"] - one["model_ms"]) / 1000))
                else:
                    r = llama_run()
                    t = r["timings"]
                    l_prompt = r["usage"]["prompt_tokens"]
                    l_ttft.append(t["prompt_ms"])
                    l_rate.append(t["predicted_per_second"])
    finally:
        server.kill()

med = statistics.median
print(f"prompt: {prompt_len} tokens (Verity) / {l_prompt} tokens (llama.cpp); "
      f"{n} decoded tokens; {threads} threads; {rounds} rounds, medians")
print(f"time to first token  Verity {med(v_ttft):8.0f} ms   llama.cpp {med(l_ttft):8.0f} ms   "
      f"ratio {med(v_ttft) / med(l_ttft):.2f}x")
print(f"decode               Verity {med(v_rate):8.2f} t/s  llama.cpp {med(l_rate):8.2f} t/s  "
      f"ratio {med(v_rate) / med(l_rate):.2f}x (goal >= 0.8)")
