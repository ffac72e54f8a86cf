"""Drives a Verity MCP server with the official Python SDK (`mcp` on PyPI).

Used by the Rust end-to-end tests: it lists tools, makes the calls given on the command
line, and prints one JSON document with what a client saw. It is a client nobody on the
Verity team wrote the protocol side of.

    python mcp_client.py --stdio /path/to/verity serve --policy default -- \
        --calls '[["calculator", {"expression": "17/3"}]]'
    python mcp_client.py --url http://127.0.0.1:8765/mcp --token SECRET --calls '[...]'
"""

import argparse
import asyncio
import json
import os
import sys
import time

import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters, get_default_environment
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--url")
    p.add_argument("--token")
    p.add_argument("--mode", default="auto")
    p.add_argument("--calls", default="[]")
    p.add_argument("--calls-file", help="read the calls JSON from this file (large batches)")
    p.add_argument("--elicit", choices=["none", "accept", "decline"], default="none")
    p.add_argument("--client-name", default="python-sdk-test")
    p.add_argument("--cancel-after", type=float, default=None,
                   help="cancel the first call after this many seconds")
    p.add_argument("--start-after", type=float, default=0.0,
                   help="wait this many seconds after initialising before the first call")
    p.add_argument("--stdio", nargs=argparse.REMAINDER)
    return p.parse_args()


async def main():
    a = parse_args()
    if a.stdio:
        cmd = a.stdio
        if "--" in cmd:
            cmd = cmd[: cmd.index("--")]
        # The SDK passes servers a minimal environment; forward Verity's own settings.
        env = get_default_environment()
        env.update({k: v for k, v in os.environ.items() if k.startswith("VERITY_")})
        server = StdioServerParameters(command=cmd[0], args=cmd[1:], env=env)
    else:
        headers = {"Authorization": f"Bearer {a.token}"} if a.token else None
        http = create_mcp_http_client(headers=headers)
        server = streamable_http_client(a.url, http_client=http)

    elicited = []

    async def on_elicit(context, params):
        elicited.append(params.message)
        if a.elicit == "accept":
            return types.ElicitResult(action="accept", content={"approve": True})
        return types.ElicitResult(action="decline")

    kwargs = dict(mode=a.mode, client_info=types.Implementation(name=a.client_name, version="1.0"))
    if a.elicit != "none":
        kwargs["elicitation_callback"] = on_elicit

    out = {"calls": [], "elicited": elicited}
    async with Client(server, **kwargs) as client:
        tools = await client.list_tools()
        out["tools"] = [json.loads(t.model_dump_json(by_alias=True, exclude_none=True)) for t in tools.tools]
        batch = json.loads(open(a.calls_file).read() if a.calls_file else a.calls)
        if a.start_after:
            await asyncio.sleep(a.start_after)
        for name, args in batch:
            progress = []

            async def on_progress(p, total, message, progress=progress):
                progress.append({"progress": p, "total": total, "message": message})

            started = time.perf_counter()
            try:
                call = client.call_tool(name, args, progress_callback=on_progress)
                if a.cancel_after is not None:
                    r = await asyncio.wait_for(call, a.cancel_after)
                else:
                    r = await call
                text = "".join(c.text for c in r.content if getattr(c, "type", None) == "text")
                out["calls"].append({
                    "is_error": bool(r.is_error),
                    "text": text,
                    "structured": r.structured_content,
                    "progress": progress,
                    "elapsed_ms": (time.perf_counter() - started) * 1000.0,
                })
            except asyncio.TimeoutError:
                out["calls"].append({"cancelled": True})
            except Exception as e:  # a protocol error is an outcome the test checks
                out["calls"].append({"protocol_error": str(e)})
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:
        print(json.dumps({"fatal": repr(e)}))
        sys.exit(1)
