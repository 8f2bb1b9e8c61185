"""The batch queue: does a backlog stay out of interactive traffic's way, and how fast does it
drain? One wai server, the embedded model and embedding model, measured in the same run:

1. Interactive TTFT: `--clients` clients (4) send streaming chat requests one after another
   for `--seconds`, first alone, then while a backlog of `--embed-items` (2,000) embedding
   items and `--gen-items` (200) generation items is queued. Target: p95 with the backlog
   within 1.2x of p95 without. Also printed: how many backlog items finished meanwhile.
2. Throughput: the same backlog drained by the queue with nothing else running, against the
   same items sent as `--concurrency` (8) concurrent interactive requests. Target: the queue
   at least 0.9x as fast.

Interactive requests: SmolLM2's chat template (raw), 32 greedy tokens, `ignore_eos`, each
prompt different. Generation items: the same shape, 32 tokens; embedding items: one ~12-word
text each. Prints two tables (bench/RESULTS.md keeps the figures). Not `bench/queue.py`: a
script's folder comes first on `sys.path`, and that name would hide the standard library's
`queue` from everything the script imports.

Usage: .venv/bin/python bench/batch_queue.py [--seconds 30] [--clients 4] [--embed-items 2000]
       [--gen-items 200] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from embeddings import WORDS  # noqa: E402
from serve import MODEL_ID, free_port, pct, process, prompt_for, sse_data  # noqa: E402

BGE = "@cf/baai/bge-base-en-v1.5"
TOKENS = 32


def generation(i: int) -> dict[str, Any]:
    return {"prompt": prompt_for(i), "raw": True, "max_tokens": TOKENS, "ignore_eos": True,
            "temperature": 0}  # fmt: skip


def embedding(i: int) -> dict[str, Any]:
    return {"text": " ".join(WORDS[(i * 5 + k) % len(WORDS)] for k in range(12)) + f" {i}"}


async def ttft_client(http: httpx.AsyncClient, url: str, c: int, until: float) -> list[float]:
    """Streaming requests one after another until `until`: each one's time to first token."""
    out = []
    i = c * 100_000
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        async with http.stream("POST", url, json={**generation(i), "stream": True}) as r:
            r.raise_for_status()
            first = None
            async for data in sse_data(r):
                if first is None and data != "[DONE]" and "usage" not in json.loads(data):
                    first = time.perf_counter() - t0
        out.append(first if first is not None else float("nan"))
        i += 1
    return out


async def interactive(base: str, clients: int, seconds: float) -> list[float]:
    url = f"{base}/client/v4/accounts/bench/ai/run/{MODEL_ID}"
    until = time.perf_counter() + seconds
    async with httpx.AsyncClient(timeout=600) as http:
        per = await asyncio.gather(*(ttft_client(http, url, c, until) for c in range(clients)))
    return [t for ts in per for t in ts]


async def submit(http: httpx.AsyncClient, base: str, model: str, items: list[Any]) -> str:
    url = f"{base}/client/v4/accounts/bench/ai/run/{model}?queueRequest=true"
    r = await http.post(url, json={"requests": items})
    r.raise_for_status()
    rid: str = r.json()["result"]["request_id"]
    return rid


async def wait_done(http: httpx.AsyncClient, base: str, model: str, rid: str) -> None:
    url = f"{base}/client/v4/accounts/bench/ai/run/{model}?queueRequest=true"
    while True:
        r = await http.post(url, json={"request_id": rid})
        r.raise_for_status()
        result = r.json()["result"]
        if "responses" in result:
            assert all(x["success"] for x in result["responses"]), "a backlog item failed"
            return
        await asyncio.sleep(0.2)


async def finished_items(http: httpx.AsyncClient, base: str) -> int:
    text = (await http.get(f"{base}/metrics")).text
    line = next(x for x in text.splitlines() if x.startswith('wai_batch_items{state="finished"}'))
    return int(float(line.split()[-1]))


async def one_by_one(base: str, model: str, items: list[Any], concurrency: int) -> float:
    """Seconds to send `items` as interactive requests, `concurrency` at a time."""
    url = f"{base}/client/v4/accounts/bench/ai/run/{model}"
    todo = iter(items)

    async def worker(http: httpx.AsyncClient) -> None:
        for item in todo:
            (await http.post(url, json=item)).raise_for_status()

    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=600) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return time.perf_counter() - t0


async def queued(base: str, model: str, items: list[Any]) -> float:
    """Seconds from queueing `items` as one batch to its last result."""
    async with httpx.AsyncClient(timeout=600) as http:
        t0 = time.perf_counter()
        rid = await submit(http, base, model, items)
        await wait_done(http, base, model, rid)
        return time.perf_counter() - t0


async def bench(base: str, args: argparse.Namespace) -> None:
    embeds = [embedding(i) for i in range(args.embed_items)]
    gens = [generation(i) for i in range(args.gen_items)]
    await one_by_one(base, BGE, embeds[:16], 4)  # both models loaded and warm
    await one_by_one(base, MODEL_ID, gens[:4], 4)
    alone = await interactive(base, args.clients, args.seconds)
    async with httpx.AsyncClient(timeout=600) as http:
        before = await finished_items(http, base)
        rids = [await submit(http, base, BGE, embeds), await submit(http, base, MODEL_ID, gens)]
        backlog = await interactive(base, args.clients, args.seconds)
        meanwhile = await finished_items(http, base) - before
        for rid, model in zip(rids, (BGE, MODEL_ID), strict=True):
            await wait_done(http, base, model, rid)
    again = await interactive(base, args.clients, args.seconds)  # drift: alone, once more
    throughput = []
    for model, items in ((BGE, embeds), (MODEL_ID, gens)):
        # the last interactive requests' 5 s window passes: the queue may use every slot
        await asyncio.sleep(6)
        q = await queued(base, model, items)
        direct = await one_by_one(base, model, items, args.concurrency)
        throughput.append((model, len(items), q, direct))
    print(_tables(args, alone, backlog, again, meanwhile, throughput))


def _tables(
    args: argparse.Namespace,
    alone: list[float],
    backlog: list[float],
    again: list[float],
    meanwhile: int,
    throughput: list[tuple[str, int, float, float]],
) -> str:
    ms = [(pct(x, 50) * 1000, pct(x, 95) * 1000) for x in (alone, backlog, again)]
    none95 = (ms[0][1] + ms[2][1]) / 2  # the runs without a backlog, before and after
    total = args.embed_items + args.gen_items
    lines = [
        f"Interactive TTFT, {args.clients} clients x {args.seconds:g} s, {TOKENS} tokens each "
        "(p95 vs none: against the mean p95 of the two runs without a backlog)",
        "",
        "| backlog | requests | TTFT p50 ms | TTFT p95 ms | p95 vs none |",
        "|---|---:|---:|---:|---:|",
        f"| none | {len(alone)} | {ms[0][0]:.0f} | {ms[0][1]:.0f} | {ms[0][1] / none95:.2f}x |",
        f"| {args.embed_items} embeddings + {args.gen_items} generations queued "
        f"({meanwhile} of {total} finished meanwhile) | {len(backlog)} | {ms[1][0]:.0f} | "
        f"{ms[1][1]:.0f} | {ms[1][1] / none95:.2f}x |",
        f"| none, after the backlog drained | {len(again)} | {ms[2][0]:.0f} | {ms[2][1]:.0f} | "
        f"{ms[2][1] / none95:.2f}x |",
        "",
        f"Backlog throughput: queued as one batch vs {args.concurrency} concurrent requests",
        "",
        "| items | queue s | items/s | interactive s | items/s | queue vs interactive |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for model, n, q, direct in throughput:
        lines.append(
            f"| {n} x {model} | {q:.1f} | {n / q:.1f} | {direct:.1f} | {n / direct:.1f} | "
            f"{direct / q:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--embed-items", type=int, default=2000)
    parser.add_argument("--gen-items", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"WAI_USAGE_DB": str(Path(tmp) / "usage.db"), "WAI_METRICS_PUBLIC": "true"}
        cmd = [sys.executable, "-m", "wai.cli", "serve", "--port", str(port)]
        with process(cmd, f"http://127.0.0.1:{port}/healthz", env):
            asyncio.run(bench(f"http://127.0.0.1:{port}", args))


if __name__ == "__main__":
    main()
