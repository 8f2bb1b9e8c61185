"""Engine overhead: the time per engine step spent outside `llama_decode`, per sequence.

The engine runs in-process (no HTTP) with N sequences decoding together, each consumed by an
asyncio task as a route would. `llama_decode` is timed by wrapping it; everything else in the
step (sampling, detokenizing, stop strings, events, the event loop's share of the GIL) is the
overhead. A tiny model (the embedded SmolLM2) keeps the kernels cheap so the overhead shows; on
a GPU the kernels are cheap for every model, which is where this overhead decides throughput.
The anchor is `llama_decode` itself, measured in the same run.

Usage: .venv/bin/python bench/engine_overhead.py [--seqs 1,16,64] [--tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import llama_cpp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wai.catalog import embedded_model_path  # noqa: E402
from wai.engine.base import GenerationRequest, SamplingParams  # noqa: E402
from wai.engine.llamacpp import LlamaCppBackend, LlamaCppConfig  # noqa: E402


class DecodeTimer:
    """Wraps llama_cpp.llama_decode (which the engine calls through the module)."""

    def __init__(self) -> None:
        self.calls = 0
        self.seconds = 0.0
        self._inner = llama_cpp.llama_decode

    def __call__(self, ctx: object, batch: object) -> int:
        t0 = time.perf_counter()
        rc: int = self._inner(ctx, batch)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return rc


async def measure(
    backend: LlamaCppBackend, timer: DecodeTimer, n: int, tokens: int, sampling: SamplingParams
) -> dict[str, float]:
    tok = backend.tokenizer
    prompts = [tok.tokenize(f"Story {i}:", add_special=True, parse_special=False) for i in range(n)]
    # prefill first, untimed: the figure is about decode steps
    first = asyncio.Event()
    started = 0

    async def one(prompt: list[int]) -> int:
        nonlocal started
        count = 0
        req = GenerationRequest(prompt, tokens, sampling, ignore_eos=True)
        async for _ in backend.submit(req):
            count += 1
            if count == 1:
                started += 1
                if started == n:
                    first.set()
        return count

    tasks = [asyncio.create_task(one(p)) for p in prompts]
    await first.wait()
    calls0, secs0, t0 = timer.calls, timer.seconds, time.perf_counter()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    steps = timer.calls - calls0
    decode = timer.seconds - secs0
    return {
        "steps": steps,
        "wall_ms": 1e3 * wall / steps,
        "decode_ms": 1e3 * decode / steps,
        "outside_us_per_seq": 1e6 * (wall - decode) / steps / n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seqs", default="1,16,64")
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()
    levels = [int(x) for x in args.seqs.split(",")]
    timer = DecodeTimer()
    llama_cpp.llama_decode = timer
    backend = LlamaCppBackend(
        LlamaCppConfig(
            path=embedded_model_path(),
            name="bench",
            n_slots=max(levels),
            n_ctx_seq=256,
            n_batch=max(512, max(levels) + 128),
        )
    )
    modes = {
        "greedy": SamplingParams(temperature=0),
        "seeded": SamplingParams(temperature=0.7, top_p=0.9, seed=1),
    }
    print(f"SmolLM2-135M, in-process, {args.tokens} tokens per sequence, decode steps only")
    print("| sampling | seqs | step ms | llama_decode ms | outside ms | outside µs/seq |")
    print("|---|---:|---:|---:|---:|---:|")

    async def run() -> None:
        await backend.start()
        try:
            for name, sampling in modes.items():
                for n in levels:
                    r = await measure(backend, timer, n, args.tokens, sampling)
                    print(
                        f"| {name} | {n} | {r['wall_ms']:.2f} | {r['decode_ms']:.2f} | "
                        f"{r['wall_ms'] - r['decode_ms']:.2f} | "
                        f"{r['outside_us_per_seq']:.0f} |",
                        flush=True,
                    )
        finally:
            await backend.close()

    asyncio.run(run())


if __name__ == "__main__":
    main()
