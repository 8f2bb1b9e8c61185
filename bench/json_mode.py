"""Grammar cost: tok/s with and without a grammar, at 1 and 8 concurrent clients.

One `wai serve` (the embedded model), clients sending chat requests (greedy, up to 128 tokens):
free text (the anchor); the same request constrained to a JSON schema (nested object, array,
enums, ranges); free text after the system message that describes two tools ("prompt-only",
the anchor for the tool modes: same prompt length); with the two tools and `tool_choice:
"auto"` (a lazy grammar: the engine watches the text for a call's opener); and with
`tool_choice: "required"` (the call's grammar from the first token). Aggregate completion
tok/s per mode, each level run twice with the modes alternated (in order, then in reverse:
a mode right after one that shares its prompt prefix finds it cached), after one untimed
request per mode.

Usage: .venv/bin/python bench/json_mode.py [--clients 1,8] [--requests 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402

MODEL = "@cf/meta/llama-2-7b-chat-int8"
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "colors": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "maxItems": 3},
        "pet": {
            "type": "object",
            "properties": {"kind": {"enum": ["cat", "dog"]}, "legs": {"type": "integer"}},
            "required": ["kind", "legs"],
        },
    },
    "required": ["name", "age", "colors", "pet"],
}


TOOLS = [
    {"name": "save_person", "description": "Store a person", "parameters": SCHEMA},
    {
        "name": "get_time",
        "description": "The time in a zone",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
]
MODES = ("free", "json", "prompt-only", "tools-auto", "tools-required")


def _tools_prompt() -> str:
    """The system message wai adds for these tools (the embedded model's template knows no
    tools): "prompt-only" sends it as plain text, so that tools-auto / prompt-only is the cost
    of the lazy grammar's watch alone, at the same prompt length."""
    from wai.backends.local.chat import Message
    from wai.backends.local.tools import Tool, generic_messages

    tools = [Tool(t["name"], t["description"], t["parameters"]) for t in TOOLS]
    return generic_messages([Message("user", "x")], tools)[0].content


def anchor(mode: str) -> str:
    return "prompt-only" if mode.startswith("tools") else "free"


def body(mode: str, i: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "messages": [{"role": "user", "content": f"Describe person number {i} and their pet."}],
        "max_tokens": 128,
        "temperature": 0,
    }
    if mode == "json":
        out["response_format"] = {"type": "json_schema", "json_schema": SCHEMA}
    elif mode == "prompt-only":
        out["messages"].insert(0, {"role": "system", "content": _tools_prompt()})
    elif mode.startswith("tools"):
        out["tools"] = TOOLS
        out["tool_choice"] = mode.removeprefix("tools-")
    return out


async def level(base: str, clients: int, n: int, mode: str) -> float:
    tokens = 0

    async def client(c: int) -> None:
        nonlocal tokens
        async with httpx.AsyncClient(timeout=600) as http:
            for k in range(n):
                r = await http.post(
                    f"{base}/client/v4/accounts/b/ai/run/{MODEL}", json=body(mode, c * n + k)
                )
                if r.status_code == 200:
                    tokens += r.json()["result"]["usage"]["completion_tokens"]

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    return tokens / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", default="1,8")
    ap.add_argument("--requests", type=int, default=4)
    args = ap.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wai.cli", "serve", "--port", str(port), "--slots", "8"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        print("| clients | " + " | ".join(f"{m} tok/s" for m in MODES) + " | "
              + " | ".join(f"{m} / {anchor(m)}" for m in MODES[1:]) + " |")  # fmt: skip
        print("|---:" * (2 * len(MODES)) + "|")
        for mode in MODES:  # warm-up: the prefix cache holds each mode's shared prefix
            asyncio.run(level(base, 1, 1, mode))
        for clients in (int(c) for c in args.clients.split(",")):
            rates: dict[str, list[float]] = {m: [] for m in MODES}
            for order in (MODES, MODES[::-1]):  # twice, the second time in reverse: a mode
                for mode in order:  # right after another with its prefix finds it cached
                    rates[mode].append(asyncio.run(level(base, clients, args.requests, mode)))
            mean = {m: sum(r) / len(r) for m, r in rates.items()}
            cells = [f"{mean[m]:.1f}" for m in MODES]
            cells += [f"{mean[m] / mean[anchor(m)]:.2f}x" for m in MODES[1:]]
            print(f"| {clients} | " + " | ".join(cells) + " |", flush=True)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
