"""Warm `code` call and session call latency over MCP stdio, two `verity` binaries side by
side (issue 17: watched stdin, per-caller sessions and capped marker lines must not slow
sessions by more than 10 %). Each binary serves over stdio to the official Python SDK
client; N warm one-shot calls (`print(2+2)`) and N session calls (`x = x + 1`) are timed
client-side, alternating binaries per round. Run with the test venv:
    .venv/bin/python bench/code_latency.py BEFORE_BIN AFTER_BIN [N] [ROUNDS]"""
import asyncio
import statistics
import sys
import time

from mcp import Client
from mcp.client.stdio import StdioServerParameters, get_default_environment


async def measure(binary, n):
    server = StdioServerParameters(command=binary, args=["serve", "--policy", "trusted"],
                                   env=get_default_environment())
    oneshot, session = [], []
    async with Client(server, mode="auto") as c:
        await c.call_tool("code", {"code": "print(1)"})  # compile/load once
        await c.call_tool("code", {"code": "x = 0", "session_id": "bench"})
        for _ in range(n):
            t = time.perf_counter()
            r = await c.call_tool("code", {"code": "print(2+2)"})
            oneshot.append(time.perf_counter() - t)
            assert not r.is_error
            t = time.perf_counter()
            r = await c.call_tool("code", {"code": "x = x + 1", "session_id": "bench"})
            session.append(time.perf_counter() - t)
            assert not r.is_error
    return oneshot, session


async def main():
    before, after = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    res = {before: ([], []), after: ([], [])}
    for i in range(rounds):
        for b in (before, after) if i % 2 == 0 else (after, before):
            o, s = await measure(b, n)
            res[b][0].extend(o)
            res[b][1].extend(s)
    for name, b in (("before", before), ("after", after)):
        o, s = res[b]
        print(f"{name:7} warm code p50 {statistics.median(o)*1000:.2f} ms   "
              f"session p50 {statistics.median(s)*1000:.2f} ms   ({len(o)} calls each)")
    ob, sb = (statistics.median(x) for x in res[before])
    oa, sa = (statistics.median(x) for x in res[after])
    print(f"after/before: warm code {oa/ob:.2f}x, session {sa/sb:.2f}x")


asyncio.run(main())
