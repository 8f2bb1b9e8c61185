"""Engine overhead: the time per engine step spent outside `llama_decode`, per sequence.

The engine runs without HTTP, N sequences decoding together, each consumed by an asyncio task
as a route would. `llama_decode` is timed by the engine itself (its `steps` and
`decode_seconds` counters); everything else in a step, as the consumers see it (sampling,
detokenizing, stop strings, events, the channel from an engine process, the event loop) is the
overhead. A tiny model (the embedded SmolLM2) keeps the kernels cheap so the overhead shows; on
a GPU the kernels are cheap for every model, which is where this overhead decides throughput.
The anchor is `llama_decode` itself, measured in the same run.

Both ways of running the engine are measured: `process` (the server's default: an engine
process, events over a pipe) and `thread` (the engine on a thread of this process).

Usage: .venv/bin/python bench/engine_overhead.py [--seqs 1,16,64] [--tokens 64]
                                                 [--isolation process,thread]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wai.catalog import embedded_model_path  # noqa: E402
from wai.engines.llamacpp.config import LlamaCppConfig  # noqa: E402
from wai.engines.llamacpp.inthread import InThreadEngine  # noqa: E402
from wai.engines.llamacpp.process import ProcessEngine  # noqa: E402
from wai.engines.llamacpp.types import SamplingParams, TokenEngine, TokenRequest  # noqa: E402


async def measure(
    backend: TokenEngine, n: int, tokens: int, sampling: SamplingParams
) -> dict[str, float]:
    tok = backend.tokenizer
    prompts = [tok.tokenize(f"Story {i}:", add_special=True, parse_special=False) for i in range(n)]
    # prefill first, untimed: the figure is about decode steps
    first = asyncio.Event()
    started = 0

    async def one(prompt: list[int]) -> int:
        nonlocal started
        count = 0
        req = TokenRequest(prompt, tokens, sampling, ignore_eos=True)
        async for _ in backend.submit(req):
            count += 1
            if count == 1:
                started += 1
                if started == n:
                    first.set()
        return count

    tasks = [asyncio.create_task(one(p)) for p in prompts]
    await first.wait()
    s0, t0 = backend.stats(), time.perf_counter()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    s1 = backend.stats()
    steps = s1.steps - s0.steps
    decode = s1.decode_seconds - s0.decode_seconds
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
    ap.add_argument("--isolation", default="process,thread")
    args = ap.parse_args()
    levels = [int(x) for x in args.seqs.split(",")]
    config = LlamaCppConfig(
        path=embedded_model_path(),
        name="bench",
        n_slots=max(levels),
        n_ctx_seq=256,
        n_batch=max(512, max(levels) + 128),
        speculation="off",  # the loop alone: drafts would change the steps per token
    )
    modes = {
        "greedy": SamplingParams(temperature=0),
        # Workers AI's default: temperature 0.6, nothing else
        "default": SamplingParams(temperature=0.6, seed=1),
        "seeded": SamplingParams(temperature=0.7, top_p=0.9, seed=1),
    }
    print(f"SmolLM2-135M, {args.tokens} tokens per sequence, decode steps only")
    print("| engine | sampling | seqs | step ms | llama_decode ms | outside ms | outside µs/seq |")
    print("|---|---|---:|---:|---:|---:|---:|")

    async def run(isolation: str) -> None:
        backend: TokenEngine = (
            ProcessEngine(config) if isolation == "process" else InThreadEngine(config)
        )
        await backend.start()
        try:
            for name, sampling in modes.items():
                for n in levels:
                    r = await measure(backend, n, args.tokens, sampling)
                    print(
                        f"| {isolation} | {name} | {n} | {r['wall_ms']:.2f} | "
                        f"{r['decode_ms']:.2f} | {r['wall_ms'] - r['decode_ms']:.2f} | "
                        f"{r['outside_us_per_seq']:.0f} |",
                        flush=True,
                    )
        finally:
            await backend.close()

    for isolation in args.isolation.split(","):
        asyncio.run(run(isolation))


if __name__ == "__main__":
    main()
