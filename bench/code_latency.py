"""Warm `code` call and session call latency over MCP stdio, two `verity` binaries side by
side (issue 17: watched stdin, per-caller sessions, capped marker lines and the per-write
disk quota must not slow calls by more than 10 %). Each binary serves over stdio to the
official Python SDK client; N warm one-shot calls (`print(2+2)`), N session calls
(`x = x + 1`) and N/10 write-heavy calls (1,000 flushed 1 KiB writes to /scratch: every
one is a checked `fd_write`) are timed client-side, alternating binaries per round. Run
with the test venv:
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
    oneshot, session, writes = [], [], []
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
        for _ in range(max(1, n // 10)):
            t = time.perf_counter()
            r = await c.call_tool("code", {"code": WRITES})
            writes.append(time.perf_counter() - t)
            assert not r.is_error and r.structured_content["exit_code"] == 0, r
    return oneshot, session, writes


WRITES = "f = open('w', 'wb')\nfor i in range(1000):\n    f.write(b'x' * 1024)\n    f.flush()\nf.close()"


async def main():
    before, after = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    res = {before: ([], [], []), after: ([], [], [])}
    for i in range(rounds):
        for b in (before, after) if i % 2 == 0 else (after, before):
            for acc, got in zip(res[b], await measure(b, n)):
                acc.extend(got)
    for name, b in (("before", before), ("after", after)):
        o, s, w = res[b]
        print(f"{name:7} warm code p50 {statistics.median(o)*1000:.2f} ms   "
              f"session p50 {statistics.median(s)*1000:.2f} ms   "
              f"1,000 writes p50 {statistics.median(w)*1000:.2f} ms   ({len(o)} calls each)")
    ob, sb, wb = (statistics.median(x) for x in res[before])
    oa, sa, wa = (statistics.median(x) for x in res[after])
    print(f"after/before: warm code {oa/ob:.2f}x, session {sa/sb:.2f}x, writes {wa/wb:.2f}x")


asyncio.run(main())
