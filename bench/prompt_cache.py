"""Prompt cache: wai against llama-server on shared system prompts, same weights file, same run.

Both get chat requests on their OpenAI route (`/v1/chat/completions`, temperature 0), so both
apply the model's chat template; llama-server runs the file wai computes with (the Q8_0
conversion of the embedded SmolLM2), `-np` equal to wai's 8 slots, its default `--cache-ram`
(8 GiB), 2 threads. Three servers, in turns: wai (this tree), llama-server, and "wai before"
(the tree at `--before`, the revision before the prompt cache: one slot per client, reuse cut at
128-token multiples, no RAM cache, no copies between slots).

1. Shared system prompt (about 460 tokens), 8 requests arriving together with different
   questions, `max_tokens` 4: a cold round (a system prompt never seen), then the same 8
   again (warm). Prints cached tokens per request and the round's wall time.
2. 32 distinct system prompts of about 400 tokens, round-robin, 8 clients, 200 requests in
   all, streamed, `max_tokens` 8: cache hit rate (a hit: at least 300 of the system prompt's
   tokens reused), mean cached tokens, TTFT p50/p95 and the wall time.

Usage: .venv/bin/python bench/prompt_cache.py [--before REV] [--requests 200] [--skip NAME,...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from embeddings import llama_server_bin  # noqa: E402
from serve import converted, free_port, pct, process, sse_data  # noqa: E402

from wai.catalog import embedded_model_path  # noqa: E402

# llama.cpp threads for llama-server and llama-bench: what wai uses by default (every core)
THREADS = str(os.cpu_count() or 1)

SLOTS = 8
HIT = 300  # cached tokens that make a request a hit in workload 2
WORDS = [
    *("policy", "support", "customer", "refund", "order", "shipping", "account", "invoice"),
    *("warranty", "product", "careful", "polite", "answer", "question", "always", "never"),
    *("describe", "explain", "summarize", "concise", "friendly", "helpful", "service"),
    *("escalate", "manager", "ticket", "priority", "region", "language", "currency", "return"),
]


def system_prompt(tag: str, n_words: int) -> str:
    words = [WORDS[(i * 7 + len(tag)) % len(WORDS)] for i in range(n_words)]
    return f"[{tag}] You are the assistant of {tag}. Rules: " + " ".join(words) + "."


@dataclass
class Result:
    cached: int
    ttft: float
    total: float


async def chat(
    client: httpx.AsyncClient, base: str, system: str, question: str, max_tokens: int
) -> Result:
    """One streamed chat request: time to its first token, its end, and the cached tokens the
    server reports (wai: usage.prompt_tokens_details; llama-server: timings.cache_n)."""
    body = {
        "model": "@cf/meta/llama-3.1-8b-instruct",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    first = 0.0
    cached = 0
    async with client.stream("POST", f"{base}/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for data in sse_data(r):
            if data == "[DONE]":
                break
            ev = json.loads(data)
            if not first and ev.get("choices") and ev["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - t0
            usage = ev.get("usage") or {}
            details = usage.get("prompt_tokens_details") or {}
            cached = max(cached, int(details.get("cached_tokens") or 0))
            cached = max(cached, int((ev.get("timings") or {}).get("cache_n") or 0))
    total = time.perf_counter() - t0
    return Result(cached, first or total, total)


async def shared_rounds(base: str, warm_rounds: int) -> list[tuple[str, list[int], float]]:
    """Workload 1: a cold round and warm ones (the median) of 8 requests sharing a system
    prompt."""
    system = system_prompt(uuid.uuid4().hex[:8], 440)
    questions = [f"Question {i}: where is my order number {1000 + i}?" for i in range(SLOTS)]
    rows = []
    async with httpx.AsyncClient(timeout=600) as client:
        for name in ["cold"] + ["warm"] * warm_rounds:
            t0 = time.perf_counter()
            results = await asyncio.gather(*(chat(client, base, system, q, 4) for q in questions))
            rows.append((name, [r.cached for r in results], time.perf_counter() - t0))
    warm = sorted(rows[1:], key=lambda r: r[2])
    return [rows[0], warm[len(warm) // 2]]


async def tenants(base: str, n_requests: int) -> dict[str, float]:
    """Workload 2: 32 system prompts round-robin from 8 clients."""
    run = uuid.uuid4().hex[:6]
    systems = [system_prompt(f"tenant {run}-{t}", 380) for t in range(32)]
    counter = iter(range(n_requests))
    indexed: list[tuple[int, Result]] = []
    async with httpx.AsyncClient(timeout=600) as client:

        async def user() -> None:
            for i in counter:
                q = f"Request {i}: please check ticket {i * 13 % 997}."
                indexed.append((i, await chat(client, base, systems[i % 32], q, 8)))

        t0 = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(SLOTS)))
        wall = time.perf_counter() - t0
    results = [r for _, r in indexed]
    ttfts = [r.ttft for r in results]
    repeats = [r for i, r in indexed if i >= 32]  # their system prompt was sent before
    return {
        "hit_rate": sum(r.cached >= HIT for r in results) / len(results),
        "repeat_hit_rate": sum(r.cached >= HIT for r in repeats) / max(1, len(repeats)),
        "cached": sum(r.cached for r in results) / len(results),
        "ttft_p50": pct(ttfts, 50),
        "ttft_p95": pct(ttfts, 95),
        "wall": wall,
    }


def measure(base: str, args: argparse.Namespace) -> tuple[list[tuple[str, list[int], float]], dict]:
    rounds = asyncio.run(shared_rounds(base, args.warm_rounds))
    for name, cached, wall in rounds:
        print(f"  {name}: cached {cached}, {wall:.2f} s", flush=True)
    if not args.requests:
        return rounds, {}
    t = asyncio.run(tenants(base, args.requests))
    print(f"  tenants: {t}", flush=True)
    return rounds, t


def wai_cmd(port: int) -> list[str]:
    return [sys.executable, "-m", "wai.cli", "serve", "--port", str(port), "--slots", str(SLOTS)]


def before_tree(rev: str) -> Path:
    """A worktree of `rev` under bench/out (made once)."""
    path = ROOT / "bench" / "out" / f"tree-{rev}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=ROOT, check=True)
    return path


def run(name: str, args: argparse.Namespace) -> tuple[list[tuple[str, list[int], float]], dict]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    print(name, flush=True)
    if name == "llama-server":
        model = converted(embedded_model_path())
        cmd = [
            str(llama_server_bin() / "llama-server"), "-m", str(model), "--port", str(port),
            "-np", str(SLOTS), "-c", str(2048 * SLOTS), "-t", THREADS, "-tb", THREADS, "--no-webui",
        ]  # fmt: skip
        with process(cmd, f"{base}/health"):
            return measure(base, args)
    # run from the tree: its own `wai` (and its engine processes') comes first on sys.path
    tree = ROOT if name == "wai" else before_tree(args.before)
    with process(wai_cmd(port), f"{base}/healthz", env={"PYTHONPATH": str(tree)}, cwd=tree):
        return measure(base, args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default="0ae386c", help="the revision before the prompt cache")
    ap.add_argument("--requests", type=int, default=200, help="workload 2's; 0: skip it")
    ap.add_argument("--warm-rounds", type=int, default=5, help="workload 1's (the median)")
    ap.add_argument("--skip", default="", help="servers to leave out (comma-separated)")
    args = ap.parse_args()
    names = [n for n in ("wai", "llama-server", "wai before") if n not in args.skip.split(",")]
    out = {name: run(name, args) for name in names}
    print("\n| server | cold: cached per request | cold round | warm: cached | warm round |")
    print("|---|---|---:|---|---:|")
    for name, (rounds, _) in out.items():
        (_, cold, t_cold), (_, warm, t_warm) = rounds
        print(f"| {name} | {sorted(cold)} | {t_cold:.2f} s | {sorted(warm)} | {t_warm:.2f} s |")
    print(
        "\n| server | hit rate (all) | hit rate (repeats) | mean cached | TTFT p50 | TTFT p95 "
        "| wall |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (_, t) in out.items():
        if not t:
            continue
        print(
            f"| {name} | {t['hit_rate']:.0%} | {t['repeat_hit_rate']:.0%} | {t['cached']:.0f} "
            f"| {t['ttft_p50'] * 1e3:.0f} ms "
            f"| {t['ttft_p95'] * 1e3:.0f} ms | {t['wall']:.1f} s |"
        )
    if "wai" in out and "llama-server" in out:
        w, l_ = out["wai"][0], out["llama-server"][0]
        print(f"\nwarm round, llama-server / wai: {l_[1][2] / w[1][2]:.2f}x (>= 1.0: wai faster)")
    if "wai" in out and "wai before" in out:
        w, b = out["wai"][0], out["wai before"][0]
        print(f"cold round, wai before / wai: {b[0][2] / w[0][2]:.2f}x")


if __name__ == "__main__":
    main()
