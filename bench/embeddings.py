"""Embeddings: wai against llama.cpp's own `llama-server --embedding` on the same GGUF, same run.

Each client sends `--requests` requests one after another, each with 8 texts of about 100
tokens; wai gets them on its OpenAI route (`/v1/embeddings`, floats) and llama-server on its
own, so both do the same JSON work. The GGUF is the one wai writes for its embedded
all-MiniLM-L6-v2 (f32), mean pooling, normalized. llama-server runs with `-np` equal to the
clients (at most 32) and a 2048-token batch, as wai packs its calls; both use every core.

The two are measured in turns (`--rounds`, wai then llama-server, at each level) on a shared,
noisy machine, and each level reports its best round of each: drift then hits both alike.
Prints texts per second and p50/p95 request latency per level, the ratio wai/llama-server, and
the share of wai's wall time its embedding engine spent inside `llama_decode`.

Usage: .venv/bin/python bench/embeddings.py [--clients 1,8,32] [--requests 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from serve import free_port, pct, process  # noqa: E402

from wai.catalog import EMBEDDED_EMBEDDING_NAME, embedded_embedding_source  # noqa: E402
from wai.settings import Settings  # noqa: E402
from wai.weights.bert import converted  # noqa: E402

TEXTS_PER_REQUEST = 8
WORDS = [
    "river",
    "mountain",
    "library",
    "quiet",
    "engine",
    "garden",
    "yellow",
    "market",
    "window",
    "theory",
    "ocean",
    "violin",
    "paper",
    "circle",
    "travel",
    "winter",
    "signal",
    "forest",
    "planet",
    "bridge",
    "harvest",
    "lantern",
]


def text_for(i: int, j: int) -> str:
    """About 100 tokens of plain words, different for every request and text."""
    return " ".join(WORDS[(i * 7 + j * 3 + k) % len(WORDS)] for k in range(98))


async def client(base: str, model: str, c: int, n: int) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(timeout=600) as http:
        for r in range(n):
            texts = [text_for(c * 1000 + r, j) for j in range(TEXTS_PER_REQUEST)]
            t0 = time.perf_counter()
            resp = await http.post(f"{base}/embeddings", json={"model": model, "input": texts})
            resp.raise_for_status()
            assert len(resp.json()["data"]) == TEXTS_PER_REQUEST
            latencies.append(time.perf_counter() - t0)
    return latencies


def level(base: str, model: str, clients: int, n: int) -> dict[str, float]:
    async def go() -> tuple[float, list[float]]:
        t0 = time.perf_counter()
        runs = await asyncio.gather(*(client(base, model, c, n) for c in range(clients)))
        return time.perf_counter() - t0, [x for r in runs for x in r]

    asyncio.run(client(base, model, 99, 1))  # warm-up
    wall, lat = asyncio.run(go())
    ms = [x * 1000 for x in lat]
    return {
        "clients": clients,
        "texts_s": clients * n * TEXTS_PER_REQUEST / wall,
        "p50_ms": statistics.median(ms),
        "p95_ms": pct(ms, 95),
    }


def decode_seconds(base: str) -> float:
    """Seconds wai's embedding engine has spent in llama_decode so far (0 before its load)."""
    stats = httpx.get(f"{base}/wai/v1/stats", timeout=10).json()["models"]
    return float(stats.get(EMBEDDED_EMBEDDING_NAME, {}).get("decode_seconds", 0.0))


def wai_level(base: str, clients: int, n: int) -> dict[str, float]:
    before = decode_seconds(base)
    t0 = time.perf_counter()
    row = level(f"{base}/v1", "@cf/baai/bge-small-en-v1.5", clients, n)
    wall = time.perf_counter() - t0
    # the warm-up request is in both: a slight overstatement of the share
    row["decode_share"] = (decode_seconds(base) - before) / wall
    return row


def best(rows: list[dict[str, float]]) -> dict[str, float]:
    return max(rows, key=lambda r: r["texts_s"])


def llama_server_cmd(gguf: Path, port: int, clients: int) -> list[str]:
    slots = min(max(clients, 1), 32)
    return [
        str(llama_server_bin() / "llama-server"), "-m", str(gguf), "--embedding",
        "--pooling", "mean", "--port", str(port), "-np", str(slots), "-b", "2048",
        "-ub", "2048", "-c", str(512 * slots),
    ]  # fmt: skip


def llama_server_bin() -> Path:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "llama_server.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--requests", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    levels = [int(x) for x in args.clients.split(",")]
    gguf = converted(embedded_embedding_source(), Settings().cache_dir, EMBEDDED_EMBEDDING_NAME)
    rows: dict[str, list[dict[str, float]]] = {"wai": [], "llama-server": []}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    wai = [sys.executable, "-m", "wai.cli", "serve", "--port", str(port)]
    with process(wai, f"{base}/healthz"):
        for n in levels:
            mine, theirs = [], []
            ls_port = free_port()
            with process(llama_server_cmd(gguf, ls_port, n), f"http://127.0.0.1:{ls_port}/health"):
                for _ in range(args.rounds):
                    mine.append(wai_level(base, n, args.requests))
                    theirs.append(level(f"http://127.0.0.1:{ls_port}/v1", "m", n, args.requests))
            rows["wai"].append(best(mine))
            rows["llama-server"].append(best(theirs))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "embeddings.json").write_text(json.dumps(rows, indent=1))
    print(f"\n{gguf.name}, {TEXTS_PER_REQUEST} texts of ~100 tokens per request, "
          f"{args.requests} requests per client, best of {args.rounds} rounds")  # fmt: skip
    print("| clients | wai texts/s | llama-server texts/s | wai / llama-server "
          "| wai p50 / p95 ms | llama-server p50 / p95 ms | wai in llama_decode |")  # fmt: skip
    print("|---:|---:|---:|---:|---|---|---:|")
    for w, s in zip(rows["wai"], rows["llama-server"], strict=True):
        print(
            f"| {w['clients']:.0f} | {w['texts_s']:.1f} | {s['texts_s']:.1f} "
            f"| {w['texts_s'] / s['texts_s']:.2f}x | {w['p50_ms']:.0f} / {w['p95_ms']:.0f} "
            f"| {s['p50_ms']:.0f} / {s['p95_ms']:.0f} | {w['decode_share']:.0%} |"
        )


if __name__ == "__main__":
    main()
