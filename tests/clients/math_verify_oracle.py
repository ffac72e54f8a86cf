"""Reads (gold, reply) pairs as JSONL on stdin and prints math-verify's verdict for each
as JSONL: {"verdict": bool, "gold_parsed": str, "reply_parsed": str}. The reference side
of tests/suite/math_verify.rs. Gold answers are LaTeX, so they are parsed inside $…$ (as
math-verify's README does for gold); replies are parsed as the model wrote them."""
import json
import sys

from math_verify import parse, verify

for line in sys.stdin:
    if not line.strip():
        continue
    p = json.loads(line)
    gold = parse(f"${p['gold']}$")
    reply = parse(p["reply"])
    try:
        ok = bool(verify(gold, reply))
    except Exception as e:  # math-verify's own failures count as "not equal"
        ok = False
    print(json.dumps({"verdict": ok, "gold_parsed": str(gold), "reply_parsed": str(reply)}), flush=True)
