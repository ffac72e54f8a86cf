"""What a `verity train grpo` iteration's forward passes compute under three micro-batchings,
from the records of its first iteration: positions (rows x padded width) and attention
(rows x width^2). Reads each run's flat token view; groups with signal only (rewards not
all equal, the teacher's demonstration counted); a step is 8 groups and a micro-batch 4
(BENCHMARKS.md's guided recipe); the order of groups is simulated over 200 shuffles.

    python3 bench/grpo_padding.py OUT/runs.jsonl     (after `train grpo --guide teacher`)
"""
import json, random, statistics, sys
if len(sys.argv) != 2:
    sys.exit(__doc__)
runs = sys.argv[1]
groups = {}
n = 0
with open(runs) as f:
    for line in f:
        r = json.loads(line)
        if r.get("kind") != "traj":
            continue
        tid = r["task"]["id"]
        base = tid.removesuffix("~guide")
        if n >= 64 * 8 + 64 and not tid.endswith("~guide"):
            break
        n += 1
        v = r["tokens"]
        if not v.get("available"):
            continue
        groups.setdefault(base, []).append((len(v["prompt_ids"]) + len(v["response_ids"]),
                                            r["reward"]["total"], bool(r.get("parse_failures"))))
def signal(g):
    return len({x[1] for x in g}) > 1
trained = [g for g in groups.values() if signal(g)]
def cost(batches):
    pos = sum(len(b) * max(b) for b in batches)
    att = sum(len(b) * max(b) ** 2 for b in batches)
    return pos, att
def by_groups(step):
    return [[l for g in step[i:i + 4] for l, _, _ in g] for i in range(0, len(step), 4)]
def packed(step):
    rows = sorted(l for g in step for l, _, _ in g)
    count = -(-len(step) // 4)
    budget = -(-len(rows) // count) * rows[len(rows) // 2]
    out = []
    for l in rows:
        if out and (len(out[-1]) + 1) * l <= budget:
            out[-1].append(l)
        else:
            out.append([l])
    return out
def iteration(scheme, gs, rng):
    order = gs[:]; rng.shuffle(order)
    tot = [0, 0]
    for i in range(0, len(order), 8):
        p, a = cost(scheme(order[i:i + 8]))
        tot[0] += p; tot[1] += a
    return tot
without = [[x for x in g if not x[2]] for g in groups.values()]
without = [g for g in without if signal(g)]
res = {}
for name, scheme, gs in [("before the fix (malformed runs dropped), 4 groups a pass", by_groups, without),
                         ("malformed runs trained, 4 groups a pass", by_groups, trained),
                         ("malformed runs trained, packed by padded size", packed, trained)]:
    rng = random.Random(0)
    xs = [iteration(scheme, gs, rng) for _ in range(200)]
    res[name] = (statistics.mean(x[0] for x in xs), statistics.mean(x[1] for x in xs))
    rows = sum(len(g) for g in gs); toks = sum(l for g in gs for l, _, _ in g)
    print(f"{name}: {len(gs)} groups, {rows} runs, {toks} tokens; positions {res[name][0]:,.0f}, "
          f"attention (rows x width^2) {res[name][1]:.3g}")
