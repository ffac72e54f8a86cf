"""The reference for Verity's code-sandbox benchmark: llm-wasm-sandbox 0.4.4 (PyPI), the
nearest existing Python tool, running the same snippets on the same machine.

Install it in its own venv (it pulls wasmtime-py):
    python3 -m venv .venv-bench && .venv-bench/bin/pip install llm-wasm-sandbox==0.4.4
Run (the Rust harness runs this itself, side by side):
    .venv-bench/bin/python bench/reference/llm_wasm_sandbox_bench.py --runs 10
Prints one JSON object of timings in milliseconds.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from sandbox import ExecutionPolicy, RuntimeType, create_sandbox


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * q)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=4)
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="lws-bench-")
    out = {}

    sb = create_sandbox(runtime=RuntimeType.PYTHON, workspace_root=root)
    sb.execute("print(2+2)")  # warm-up
    lat = []
    for _ in range(a.runs):
        t = time.perf_counter()
        r = sb.execute("print(2+2)")
        lat.append((time.perf_counter() - t) * 1000)
        assert r.stdout.strip() == "4", r
    out["warm_p50_ms"] = statistics.median(lat)
    out["warm_p95_ms"] = pct(lat, 0.95)

    # Its "session" is the same call (each execute re-instantiates); state persists only
    # through pickled globals when auto_persist_globals is on.
    sess = create_sandbox(runtime=RuntimeType.PYTHON, workspace_root=root, auto_persist_globals=True)
    sess.execute("x = 1")
    lat = []
    for _ in range(a.runs):
        t = time.perf_counter()
        sess.execute("x = x + 1")
        lat.append((time.perf_counter() - t) * 1000)
    out["session_p50_ms"] = statistics.median(lat)

    # First call in a new process.
    code = ("import tempfile; from sandbox import create_sandbox, RuntimeType; "
            "print(create_sandbox(runtime=RuntimeType.PYTHON, workspace_root=tempfile.mkdtemp()).execute('print(2+2)').stdout)")
    firsts = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        firsts.append((time.perf_counter() - t) * 1000)
    out["first_call_new_process_ms"] = statistics.median(firsts)

    # N concurrent executions (threads; wasmtime-py releases the GIL while running).
    def one():
        s = create_sandbox(runtime=RuntimeType.PYTHON, workspace_root=root)
        s.execute("print(sum(range(10**5)))")
    t = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(a.concurrency)]
    [th.start() for th in threads]
    [th.join() for th in threads]
    out["concurrent_wall_ms"] = (time.perf_counter() - t) * 1000
    out["concurrency"] = a.concurrency

    # Time limit: `time.sleep(60)` under a 1 s timeout; give up watching after 10 s.
    pol = ExecutionPolicy(timeout_seconds=1.0)
    s = create_sandbox(runtime=RuntimeType.PYTHON, workspace_root=root, policy=pol)
    done = {}

    def sleeper():
        t = time.perf_counter()
        try:
            s.execute("import time\ntime.sleep(60)")
        except Exception:
            pass
        done["ms"] = (time.perf_counter() - t) * 1000

    th = threading.Thread(target=sleeper, daemon=True)
    th.start()
    th.join(10)
    out["sleep_under_1s_limit_stopped_after_ms"] = done.get("ms")  # None: not stopped in 10 s
    print(json.dumps(out))


if __name__ == "__main__":
    main()
