"""Soak: N clients for M minutes against one `wai serve`, with a mix of streaming, non-streaming,
cancelled (the client hangs up mid-stream) and invalid requests.

Reports unexpected errors, latency p50/p95 per kind, and the server's resident memory over time
(table and PNG); drift is measured from the end of warm-up (the first tenth of the run, at least
one minute) to the end. Target: 30 minutes at 8 clients, 0 unexpected errors, drift under 5 %.

Usage: .venv/bin/python bench/soak.py [--clients 8] [--minutes 30] [--out bench/out]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import LLAMA2, start_server, stop_server  # noqa: E402

TOKEN = "soak-token-0123456789"
KINDS = [("stream", 0.4), ("complete", 0.3), ("cancel", 0.15), ("invalid", 0.15)]
TOPICS = ["the sea", "bread", "a lighthouse", "chess", "rain", "owls", "trains", "tea"]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def one(client: httpx.AsyncClient, url: str, kind: str, rng: random.Random) -> str | None:
    """Run one request; None if it went as expected, else what went wrong."""
    body: dict[str, object] = {
        "prompt": f"Tell me about {rng.choice(TOPICS)}.",
        "max_tokens": rng.randint(16, 64),
    }
    if kind == "invalid":
        body = rng.choice([{"prompt": 5}, {"messages": "x"}, {"prompt": "a", "top_k": 99}, {}])
        r = await client.post(url, json=body)
        return (
            None
            if r.status_code == 400 and r.json()["errors"][0]["code"] == 5006
            else f"invalid: {r.status_code} {r.text[:100]}"
        )
    if kind == "complete":
        r = await client.post(url, json=body)
        return (
            None
            if r.status_code == 200 and "response" in r.json()["result"]
            else f"complete: {r.status_code} {r.text[:100]}"
        )
    async with client.stream("POST", url, json={**body, "stream": True}) as r:
        if r.status_code != 200:
            return f"{kind}: {r.status_code}"
        seen = 0
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                seen += 1
                if kind == "cancel" and seen == 3:
                    return None  # leaving the block closes the connection mid-stream
                if line == "data: [DONE]":
                    return None
    return f"{kind}: stream ended without [DONE]"


async def client_loop(
    n: int, url: str, until: float, lat: dict[str, list[float]], errors: list[str]
) -> None:
    rng = random.Random(n)
    kinds, weights = zip(*KINDS, strict=True)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(headers=headers, timeout=120) as client:
        while time.monotonic() < until:
            kind = rng.choices(kinds, weights)[0]
            t0 = time.perf_counter()
            try:
                problem = await one(client, url, kind, rng)
            except (httpx.HTTPError, ValueError, KeyError) as e:
                problem = f"{kind}: {type(e).__name__}: {e}"
            lat[kind].append((time.perf_counter() - t0) * 1000)
            if problem:
                errors.append(problem)


async def sample_memory(
    pid: int, t0: float, until: float, samples: list[tuple[float, int]]
) -> None:
    while time.monotonic() < until:
        samples.append((time.monotonic() - t0, rss_kib(pid)))
        await asyncio.sleep(5)


def pct(values: list[float], p: int) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[p - 1]
        if len(values) > 1
        else (values[0] if values else 0.0)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    server = start_server(args.out, "--token", TOKEN, env=dict(os.environ))
    url = server.run_url(LLAMA2)
    lat: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    samples: list[tuple[float, int]] = []
    duration = args.minutes * 60

    async def run() -> None:
        t0 = time.monotonic()
        until = t0 + duration
        await asyncio.gather(
            sample_memory(server.proc.pid, t0, until, samples),
            *(client_loop(i, url, until, lat, errors) for i in range(args.clients)),
        )

    try:
        asyncio.run(run())
        final = httpx.get(
            f"{server.url}/wai/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"}
        ).json()
    finally:
        stop_server(server)
    warm_at = max(60.0, duration / 10)
    warm = next((kib for t, kib in samples if t >= warm_at), samples[0][1])
    end = samples[-1][1]
    drift = (end - warm) / warm * 100
    lines = ["| kind | requests | p50 ms | p95 ms |", "|---|---:|---:|---:|"]
    for kind, _ in KINDS:
        lines.append(
            f"| {kind} | {len(lat[kind])} | {pct(lat[kind], 50):.0f} | {pct(lat[kind], 95):.0f} |"
        )
    lines.append(
        f"\n{args.clients} clients for {args.minutes:g} min: "
        f"{sum(len(v) for v in lat.values())} requests, {len(errors)} unexpected "
        f"errors; server RSS {samples[0][1] / 1024:.0f} MiB at start, "
        f"{warm / 1024:.0f} MiB after warm-up ({warm_at:.0f} s), {end / 1024:.0f} MiB "
        f"at the end: drift {drift:+.2f} %; tracebacks in the server log: "
        f"{server.log.read_text().count('Traceback')}; engine after the run: "
        f"{json.dumps(next(iter(final['models'].values())))}"
    )
    report = "\n".join(lines)
    print(report)
    for e in errors[:20]:
        print("ERROR", e)
    (args.out / "soak.md").write_text(report + "\n")
    (args.out / "soak.json").write_text(
        json.dumps({"samples": samples, "errors": errors, "latency": lat}, indent=1)
    )
    plot(samples, lat, warm_at, args.out / "soak.png", args)


def plot(
    samples: list[tuple[float, int]],
    lat: dict[str, list[float]],
    warm_at: float,
    path: Path,
    args: argparse.Namespace,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot([t / 60 for t, _ in samples], [k / 1024 for _, k in samples])
    ax1.axvline(warm_at / 60, color="grey", linestyle="--", label="end of warm-up")
    ax1.set(xlabel="minutes", ylabel="server RSS (MiB)", title="Resident memory")
    ax1.legend()
    kinds = [k for k, _ in KINDS]
    ax2.bar(kinds, [pct(lat[k], 50) for k in kinds], label="p50")
    ax2.bar(
        kinds,
        [pct(lat[k], 95) - pct(lat[k], 50) for k in kinds],
        bottom=[pct(lat[k], 50) for k in kinds],
        alpha=0.5,
        label="p95",
    )
    ax2.set(ylabel="latency (ms)", title="Latency per kind")
    ax2.legend()
    fig.suptitle(f"soak: {args.clients} clients, {args.minutes:g} min, SmolLM2-135M, 2 cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
