"""verl reward function that scores with Verity's own verifiers.

Written beside `verity export --format verl --out DATA.parquet`; point verl at it:

    custom_reward_function.path=/path/to/verity_reward.py
    custom_reward_function.name=compute_score

Each row's `extra_info.verifier` (the task's verifier spec, JSON) and
`reward_model.ground_truth` go to one long-lived `verity score --stdio` process per
worker, so verl grades exactly as `verity rollout` does. The binary is `$VERITY_BIN`,
else `verity` on PATH. Standard library only.
"""
import json
import os
import subprocess
import threading

_lock = threading.Lock()
_proc = None


def _scorer():
    global _proc
    if _proc is None or _proc.poll() is not None:
        binary = os.environ.get("VERITY_BIN", "verity")
        _proc = subprocess.Popen(
            [binary, "score", "--stdio"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
    return _proc


def score(answer, ground_truth, verifier=None, truncated=False, calls=None):
    """The full verdict: {score, passed, extracted, detail, ...}. `calls`: the reply's
    tool calls, [{"name", "arguments"}], for the tool_call verifier."""
    request = {"ground_truth": ground_truth, "answer": answer, "truncated": bool(truncated)}
    if calls:
        request["calls"] = calls
    if verifier is not None:
        spec = json.loads(verifier) if isinstance(verifier, str) else verifier
        request["verifier"] = spec
        # verl's ground_truth column is text; these verifiers compare JSON values.
        if spec.get("type") in ("tool_call", "json_field") and isinstance(ground_truth, str):
            try:
                request["ground_truth"] = json.loads(ground_truth)
            except ValueError:
                pass
    with _lock:
        p = _scorer()
        p.stdin.write(json.dumps(request) + "\n")
        p.stdin.flush()
        line = p.stdout.readline()
    if not line:
        raise RuntimeError("verity score --stdio exited")
    verdict = json.loads(line)
    if "error" in verdict:
        raise ValueError(verdict["error"])
    return verdict


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """verl's signature: the reward (0 or 1) for one decoded response."""
    verifier = (extra_info or {}).get("verifier")
    return float(score(solution_str, ground_truth, verifier)["score"])
