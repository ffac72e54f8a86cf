#!/usr/bin/env python3
"""Held-out solve rate of `verity train`, over seeds: untrained → SFT → each GRPO iteration.

For each seed S: a fresh tiny base model (`verity model tiny --compact-tools --seed S`),
training tasks (`scripts/tasks.py arithmetic --seed S`), teacher demonstrations through
the real runtime (`verity rollout --teacher`), `verity train sft --seed S`, then
`verity train grpo` iterations; every model is scored greedily with the math verifier on
the same evaluation sets, one axis of generalisation at a time (EVAL_SETS: new numbers,
three-digit numbers, other phrasings) and then all of them at once (`--split heldout`).
Writes results.json, a Markdown table and one SVG plot per set into --out, and prints the
table. Timings are recorded too (demonstrations, SFT tokens/s, GRPO iteration seconds).

    python3 bench/train_heldout.py --verity target/release/verity --out /tmp/train-bench

After the per-seed tables comes GRPO's gain over SFT, paired (each seed's GRPO checkpoints
against its own SFT model, on the same problems): the mean and spread of the gain, the
problems that got better or worse, and an exact sign test. Seeds can run as separate
processes (`--seeds 0`, `--seeds 1`, ... into separate --out folders) and be merged:

    python3 bench/train_heldout.py --out /tmp/all --report-only --merge /tmp/s0 /tmp/s1 /tmp/s2
"""

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Evaluation sets (`scripts/tasks.py arithmetic` arguments), each scored greedily.
EVAL_SETS = {
    # The training phrasings and number range, numbers the model was not trained on.
    "new_numbers": [],
    # The training phrasings with three-digit operands (training saw 2-99).
    "larger_numbers": ["--numbers", "100-999"],
    # Phrasings never trained on (one of them a three-step chain), training-sized numbers.
    "other_phrasings": ["--split", "heldout", "--numbers", "2-99"],
    # The held-out split: other phrasings, three-digit numbers and three-step chains at once.
    "heldout": ["--split", "heldout"],
}
TITLES = {
    "new_numbers": "training phrasings, new numbers (2-99)",
    "larger_numbers": "training phrasings, numbers 100-999",
    "other_phrasings": "other phrasings (one three-step), numbers 2-99",
    "heldout": "held-out split: other phrasings, 100-999, three steps",
    "new_numbers_sampled": "new numbers, sampled at temperature 1 (--sampled-runs each)",
}


def sh(args, **kw):
    started = time.time()
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, args))}\n{p.stderr[-3000:]}")
    return p.stdout, time.time() - started


def tasks(out, *args):
    text, _ = sh([sys.executable, REPO / "scripts/tasks.py", "arithmetic", *args])
    out.write_text(text)
    return out


def rollout(verity, model, task_file, out, config, *extra):
    if out.exists():
        out.unlink()
    text, secs = sh([verity, "rollout", task_file, "--model", model, "--out", out,
                     "--config", config, "--policy", "trusted", "--tools", "calculator",
                     "--max-turns", "5", "--max-tokens-per-call", "128", *extra])
    return json.loads(text), secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--verity", default=str(REPO / "target/release/verity"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train-n", type=int, default=2000)
    ap.add_argument("--heldout-n", type=int, default=40)
    ap.add_argument("--new-numbers-n", type=int,
                    help="tasks in the new-numbers set (default --heldout-n): the set GRPO "
                         "is expected to move, so the one worth a smaller standard error")
    ap.add_argument("--sampled-runs", type=int, default=4,
                    help="runs per new-numbers task sampled at temperature 1")
    ap.add_argument("--phrasings", choices=["basic", "rich"], default="basic",
                    help="the training tasks' templates (scripts/tasks.py arithmetic "
                         "--phrasings): the SFT tasks and GRPO's fresh pool; the evaluation "
                         "sets stay the same")
    ap.add_argument("--sft-steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--grpo-iterations", type=int, default=2)
    ap.add_argument("--grpo-tasks", type=int, default=24)
    ap.add_argument("--grpo-samples", type=int, default=8)
    ap.add_argument("--grpo-lr", type=float, default=5e-4)
    ap.add_argument("--sft-min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--sft-short-context-steps", type=int, default=0)
    ap.add_argument("--sft-short-context-tokens", type=int, default=160)
    ap.add_argument("--grpo-dynamic-sampling", type=int, default=0)
    ap.add_argument("--grpo-epochs", type=int, default=1)
    ap.add_argument("--grpo-temperature", type=float, default=1.0)
    ap.add_argument("--score-every", type=int, default=1,
                    help="score every K-th GRPO checkpoint (and always the last)")
    ap.add_argument("--grpo-kind", choices=["mixed", "one", "two", "none"], default="mixed",
                    help="the fresh pool's task kind (scripts/tasks.py arithmetic --kind): two "
                         "puts GRPO's samples where a converged SFT model still fails (two "
                         "chained calls) instead of on problems it almost always solves")
    ap.add_argument("--grpo-pool", choices=["fresh", "train"], default="fresh",
                    help="GRPO's tasks: fresh (a pool of --train-n new tasks in the training "
                         "phrasings and numbers, seed 500+S, none of them demonstrated) or "
                         "train (the SFT tasks themselves)")
    ap.add_argument("--grpo-arg", action="append", default=[], metavar="ARG",
                    help="passed on to `verity train grpo` (repeat: --grpo-arg=--kl-beta "
                         "--grpo-arg=0.05)")
    ap.add_argument("--reuse-sft", metavar="OLD_OUT",
                    help="take the untrained and SFT stages (models, tasks, scores, timings) "
                         "from an earlier --out and run only GRPO and its scores: SFT is "
                         "deterministic, so this compares GRPO settings on the same models")
    ap.add_argument("--reuse-scores", action="store_true",
                    help="with --reuse-sft, take the untrained and SFT scores from there too "
                         "instead of scoring again (they are deterministic for one build of "
                         "verity; not across builds)")
    ap.add_argument("--score-existing", action="store_true",
                    help="do not run `verity train grpo`: score the checkpoints an earlier, "
                         "possibly interrupted, run left in --out (its summary.json lists "
                         "every finished iteration)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the table and plots from --out's results.json")
    ap.add_argument("--merge", nargs="+", metavar="OUT",
                    help="with --report-only: first merge the seeds of these earlier --out "
                         "folders (e.g. one process per seed) into --out's results.json")
    a = ap.parse_args()
    out = Path(a.out).resolve()
    if a.report_only:
        if a.merge:
            merged = {"settings": vars(a), "seeds": {}}
            for other in a.merge:
                part = json.loads((Path(other) / "results.json").read_text())
                for seed, r in part["seeds"].items():
                    find_runs(r, [Path(other), Path(part["settings"].get("reuse_sft") or other)],
                              seed)
                merged["seeds"].update(part["seeds"])
            out.mkdir(parents=True, exist_ok=True)
            (out / "results.json").write_text(json.dumps(merged, indent=2))
        report(out, json.loads((out / "results.json").read_text()))
        return
    out.mkdir(parents=True, exist_ok=True)
    config = out / "config.toml"
    config.write_text("")
    results = {"settings": vars(a), "seeds": {}}
    old = json.loads((Path(a.reuse_sft) / "results.json").read_text()) if a.reuse_sft else None
    for seed in a.seeds:
        d = out / f"seed-{seed}"
        d.mkdir(exist_ok=True)
        r = {"stages": []}
        src = Path(a.reuse_sft) / f"seed-{seed}" if old else d
        train = src / "train.jsonl"
        pool = d / "grpo-tasks.jsonl"
        evals = {name: src / f"eval-{name}.jsonl" for name in EVAL_SETS}

        def score(model, name):
            stage = {"stage": name}
            for split, file in evals.items():
                s, secs = rollout(a.verity, model, file, d / f"{split}-{name}.jsonl", config,
                                  "--samples", "1", "--temperature", "0")
                stage[split] = s["solve_rate"]
                stage[f"{split}_eval_seconds"] = secs
                stage[f"{split}_runs"] = str(d / f"{split}-{name}.jsonl")
            # What GRPO optimises: the expected reward of runs sampled at temperature 1.
            s, _ = rollout(a.verity, model, evals["new_numbers"], d / f"sampled-{name}.jsonl",
                           config, "--samples", a.sampled_runs, "--temperature", "1",
                           "--seed", seed)
            stage["new_numbers_sampled"] = s["mean_reward"]
            stage["new_numbers_sampled_runs"] = str(d / f"sampled-{name}.jsonl")
            r["stages"].append(stage)
            print(f"seed {seed} {name}: " + ", ".join(f"{k} {stage[k]:.3f}" for k in TITLES),
                  file=sys.stderr)

        if old:
            before = old["seeds"][str(seed)]
            r.update({k: v for k, v in before.items() if k not in ("grpo", "stages")})
            if a.reuse_scores:
                r["stages"] = [st for st in before["stages"] if st["stage"] in ("untrained", "sft")]
            else:
                score(src / "base", "untrained")
                score(src / "sft", "sft")
        else:
            base = d / "base"
            sh([a.verity, "model", "tiny", "--compact-tools", "--seed", 1000 + seed,
                "--out", base])
            tasks(train, "--n", a.train_n, "--seed", seed, "--phrasings", a.phrasings)
            # One file per axis of generalisation, then all of them at once.
            for name, args in EVAL_SETS.items():
                n = a.new_numbers_n if name == "new_numbers" and a.new_numbers_n else a.heldout_n
                tasks(evals[name], "--n", n, *args, "--seed", 900 + seed)
            score(base, "untrained")
            demos = d / "demos.jsonl"
            s, r["demo_seconds"] = rollout(a.verity, base, train, demos, config, "--teacher",
                                           "--samples", "1")
            r["demo_mean_reward"] = s["mean_reward"]
            sft_rows = d / "sft.jsonl"
            sh([a.verity, "export", demos, "--format", "trl-sft", "--min-reward", "1",
                "--out", sft_rows])
            text, r["sft_seconds"] = sh([a.verity, "train", "sft", sft_rows, "--model", base,
                                         "--out", d / "sft", "--steps", a.sft_steps,
                                         "--batch-size", a.batch_size, "--seed", seed,
                                         "--min-lr-ratio", a.sft_min_lr_ratio,
                                         "--short-context-steps", a.sft_short_context_steps,
                                         "--short-context-tokens",
                                         a.sft_short_context_tokens])
            r["sft"] = json.loads(text)
            score(d / "sft", "sft")
        if a.grpo_iterations == 0:
            r["grpo"] = []
        elif a.score_existing:
            r["grpo"] = json.loads((d / "grpo" / "summary.json").read_text())
            r["grpo_seconds"] = sum(it["iteration_seconds"] for it in r["grpo"])
        else:
            if a.grpo_pool == "fresh":
                tasks(pool, "--n", a.train_n, "--seed", 500 + seed, "--phrasings", a.phrasings,
                      "--kind", a.grpo_kind)
            else:
                pool = train
            text, r["grpo_seconds"] = sh([
                a.verity, "train", "grpo", pool, "--model", src / "sft", "--out", d / "grpo",
                "--config", config, "--policy", "trusted", "--tools", "calculator",
                "--max-turns", "5", "--max-tokens-per-call", "128",
                "--iterations", a.grpo_iterations, "--tasks-per-iteration", a.grpo_tasks,
                "--samples", a.grpo_samples, "--lr", a.grpo_lr, "--seed", seed,
                "--dynamic-sampling", a.grpo_dynamic_sampling, "--epochs", a.grpo_epochs,
                "--temperature", a.grpo_temperature, *a.grpo_arg])
            r["grpo"] = json.loads(text)["iterations"]
        # Every --score-every-th GRPO checkpoint, and the last.
        for it in r["grpo"]:
            if it["iteration"] % a.score_every == 0 or it is r["grpo"][-1]:
                score(it["checkpoint"], f"grpo-{it['iteration']}")
        results["seeds"][seed] = r
        (out / "results.json").write_text(json.dumps(results, indent=2))

    report(out, results)


def report(out, results):
    stages = [s["stage"] for s in next(iter(results["seeds"].values()))["stages"]]
    plots, table = {}, []
    for key, title in TITLES.items():
        if not all(key in x for r in results["seeds"].values() for x in r["stages"]):
            continue  # an earlier run without this measurement
        table += [f"| model | {title}: solve rate per seed | mean | std |", "|---|---|---|---|"]
        for st in stages:
            rates = [next(x[key] for x in r["stages"] if x["stage"] == st)
                     for r in results["seeds"].values()]
            m, sd = statistics.mean(rates), statistics.stdev(rates) if len(rates) > 1 else 0.0
            plots.setdefault(key, (title, []))[1].append((st, rates, m, sd))
            table.append(f"| {st} | {' / '.join(f'{x:.3f}' for x in rates)} | {m:.3f} | {sd:.3f} |")
        table.append("")
    sft_tps = [r["sft"]["trained_tokens_per_second"] for r in results["seeds"].values()]
    comp_tps = [r["sft"]["computed_tokens_per_second"] for r in results["seeds"].values()]
    iters = [it["iteration_seconds"] for r in results["seeds"].values() for it in r["grpo"]]
    table.append("")
    table.append(f"SFT: {statistics.mean(sft_tps):.0f} trained tokens/s "
                 f"({statistics.mean(comp_tps):.0f} computed tokens/s)"
                 + (f"; GRPO rollout→train iteration: {statistics.mean(iters):.1f} s mean"
                    if iters else ""))
    table += paired(results, stages)
    md = "\n".join(table)
    (out / "table.md").write_text(md + "\n")
    for key, (title, rows) in plots.items():
        (out / f"{key.replace('_', '-')}.svg").write_text(svg(rows, title))
    print(md)


def find_runs(r, outs, seed):
    """Fill in the rollout files of stages scored before results.json kept their paths."""
    names = {split: split for split in EVAL_SETS} | {"new_numbers_sampled": "sampled"}
    for stage in r["stages"]:
        for key, name in names.items():
            for out in outs:
                path = out.resolve() / f"seed-{seed}" / f"{name}-{stage['stage']}.jsonl"
                if f"{key}_runs" not in stage and path.exists():
                    stage[f"{key}_runs"] = str(path)


def task_rewards(path):
    """Mean reward per task id over a rollout file's runs (one run each when greedy)."""
    per = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind") == "traj":
                per.setdefault(r["task"]["id"], []).append((r.get("reward") or {}).get("total", 0.0))
    return {t: statistics.mean(v) for t, v in per.items()}


def sign_test(fixed, broken):
    """Two-sided exact sign test: how likely a split this uneven is if GRPO changed nothing."""
    n, k = fixed + broken, max(fixed, broken)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired(results, stages):
    """GRPO's gain over SFT, paired: per seed, and per problem on the same problems.

    The seed spread of the models (above) mixes how good each seed's SFT model is with what
    GRPO adds; the question is the second one, so each later stage is compared with its own
    seed's SFT model on the same problems: the gain per seed (mean and spread of the gain),
    and over all seeds' problems the ones it now solves that SFT did not (better) and the
    other way round (worse), with the paired standard error of the mean gain and an exact
    sign test on better vs worse (for the sampled set, a problem is better when its mean
    reward over its runs rose).
    """
    later = [st for st in stages if st not in ("untrained", "sft")]
    lines = [""]
    for key, label in (("new_numbers", "greedy"), ("new_numbers_sampled", "sampled at T=1")):
        field = f"{key}_runs"
        seeds = list(results["seeds"].values())
        if not later or not all(field in x for r in seeds for x in r["stages"]
                                if x["stage"] in later + ["sft"]):
            continue  # an earlier run that did not keep its rollout files' paths
        lines += [f"| model | gain over SFT, new numbers {label}: per seed | mean | std | "
                  f"problems better / worse | paired s.e. | sign test p |",
                  "|---|---|---|---|---|---|---|"]
        for st in later:
            gains, diffs = [], []
            for r in seeds:
                at = {x["stage"]: x for x in r["stages"]}
                if st not in at:
                    break
                before, after = task_rewards(at["sft"][field]), task_rewards(at[st][field])
                gains.append(at[st][key] - at["sft"][key])
                diffs += [after.get(t, 0.0) - v for t, v in before.items()]
            else:
                fixed = sum(1 for x in diffs if x > 0)
                broken = sum(1 for x in diffs if x < 0)
                se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else 0.0
                sd = statistics.stdev(gains) if len(gains) > 1 else 0.0
                lines.append(f"| {st} | {' / '.join(f'{g:+.3f}' for g in gains)} | "
                             f"{statistics.mean(gains):+.3f} | {sd:.3f} | {fixed} / {broken} | "
                             f"{se:.3f} | {sign_test(fixed, broken):.3g} |")
        lines.append("")
    return lines


def svg(rows, title):
    """Mean solve rate per stage with a ±1 std bar and each seed as a dot."""
    w, h, left, bottom, top = 560, 300, 60, 40, 20
    n = len(rows)
    step = (w - left - 20) / max(n, 1)
    y = lambda v: top + (h - top - bottom) * (1 - v)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             f'font-family="sans-serif" font-size="11">',
             f'<line x1="{left}" y1="{y(0)}" x2="{w - 10}" y2="{y(0)}" stroke="#333"/>',
             f'<line x1="{left}" y1="{y(0)}" x2="{left}" y2="{y(1)}" stroke="#333"/>']
    for v in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4}" text-anchor="end">{v:.2f}</text>')
        parts.append(f'<line x1="{left}" y1="{y(v)}" x2="{w - 10}" y2="{y(v)}" '
                     f'stroke="#ddd"/>')
    pts = []
    for i, (st, rates, m, sd) in enumerate(rows):
        x = left + step * (i + 0.5)
        pts.append(f"{x:.1f},{y(m):.1f}")
        parts.append(f'<line x1="{x:.1f}" y1="{y(max(0, m - sd)):.1f}" x2="{x:.1f}" '
                     f'y2="{y(min(1, m + sd)):.1f}" stroke="#1f77b4" stroke-width="2"/>')
        for r in rates:
            parts.append(f'<circle cx="{x + 8:.1f}" cy="{y(r):.1f}" r="2.5" fill="#999"/>')
        parts.append(f'<text x="{x:.1f}" y="{h - bottom + 16}" text-anchor="middle">{st}</text>')
    parts.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="#1f77b4" '
                 f'stroke-width="2"/>')
    parts.append(f'<text x="{left}" y="{top - 6}">{title}: solve rate (mean ± std over '
                 f'seeds; grey: each seed)</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    main()
