"""Serving benchmark: wai against llama.cpp's own server, same GGUF, same prompts, same run.

For each concurrency level (default 1, 4, 8, 16 streaming clients) every client sends `--rounds`
requests one after another: a raw prompt, `--max-tokens` output tokens with end-of-text
suppressed (so every request produces all its tokens), greedy sampling. Reported per engine and
level, in vLLM's vocabulary: aggregate output tok/s, TTFT (time to first token) and TPOT (time
per output token after the first), p50 and p95. Ratios are against llama-server measured in
this same run (llama-server-q8 when the run has it), since these machines are shared and
noisy.

Engines:
  wai              `wai serve`, slots = the largest level (each model's engine in a process)
  wai-thread       the same with `engine.isolation = thread` (the engine on a server thread)
  wai-mixed        the same with `engine.batch_invariant = false` (prompt chunks share the
                   decode rows' llama.cpp call)
  wai-nospec       the same with `engine.speculation = off` (no prompt lookup: the loop alone)
  llama-server     llama.cpp's C++ server, `--parallel N` per level (bench/build_llama_server.sh)
  llama-server-q8  the same, on the Q8_0 file wai computes with (for Q4_1/Q5_1 inputs, see
                   wai/weights/quantize.py): separates wai's scheduling from its weight format
  llama-cpp-py     `python -m llama_cpp.server` (llama-cpp-python's bundled server)
and llama.cpp's `llama-bench` tg128 on the same file as the single-stream decode anchor, next to
wai's engine decoding one stream in-process (no HTTP).

With `--turns N` the servers run side by side instead (llama-server with `--parallel` = the
largest level, like wai's slots) and at each level every server takes N turns in rotating
order; the medians are reported. That is the mode to quote on a shared, noisy machine.

Usage: .venv/bin/python bench/serve.py [--clients 1,4,8,16] [--max-tokens 128] [--rounds 2]
                                       [--engines wai,llama-server,llama-cpp-py] [--turns N]
                                       [--out bench/out]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wai.catalog import embedded_model_path  # noqa: E402

# llama.cpp threads for llama-server and llama-bench: what wai uses by default (every core)
THREADS = str(os.cpu_count() or 1)

TOPICS = [
    "cats",
    "the sea",
    "a robot",
    "winter",
    "bread",
    "a lighthouse",
    "trains",
    "bees",
    "a volcano",
    "chess",
    "the moon",
    "a library",
    "rain",
    "a violin",
    "maps",
    "tea",
]
MODEL_ID = "@cf/meta/llama-2-7b-chat-int8"


def prompt_for(i: int) -> str:
    topic = TOPICS[i % len(TOPICS)]
    return (
        f"<|im_start|>user\nWrite a long story about {topic}, number {i}.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


N_TG = 128


def converted(model: Path) -> Path:
    """The file wai computes with for `model` (its Q8_0 conversion, for Q4_1/Q5_1)."""
    from wai.engines.llamacpp.gguf import read_metadata
    from wai.settings import Settings
    from wai.weights.quantize import compute_path

    return compute_path(model, read_metadata(model), "auto", Settings().cache_dir)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def process(
    cmd: list[str],
    health: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    cwd: Path = ROOT,
) -> Iterator[None]:
    log_dir = ROOT / "bench" / "out"  # a fresh clone has none yet
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"{Path(cmd[0]).name}-{time.time():.0f}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env={**os.environ, **(env or {})}
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}, see {log.name}")
            try:
                if httpx.get(health, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[0]} did not become healthy, see {log.name}")
            time.sleep(0.25)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# --- clients: one per engine, each yields the arrival time of every output token --------------


@dataclass
class Sample:
    start: float
    token_times: list[float] = field(default_factory=list)


async def sse_data(resp: httpx.Response) -> AsyncIterator[str]:
    async for line in resp.aiter_lines():
        if line.startswith("data: "):
            yield line[6:]


async def wai_request(client: httpx.AsyncClient, base: str, i: int, n: int) -> Sample:
    s = Sample(time.perf_counter())
    body = {
        "prompt": prompt_for(i),
        "raw": True,
        "stream": True,
        "max_tokens": n,
        "ignore_eos": True,
        "temperature": 0,
    }
    async with client.stream(
        "POST", f"{base}/client/v4/accounts/bench/ai/run/{MODEL_ID}", json=body
    ) as r:
        r.raise_for_status()
        async for data in sse_data(r):
            if data == "[DONE]":
                break
            if "usage" not in json.loads(data):
                s.token_times.append(time.perf_counter())
    return s


async def llama_server_request(client: httpx.AsyncClient, base: str, i: int, n: int) -> Sample:
    s = Sample(time.perf_counter())
    body = {
        "prompt": prompt_for(i),
        "n_predict": n,
        "stream": True,
        "ignore_eos": True,
        "temperature": 0,
        "cache_prompt": True,
    }
    async with client.stream("POST", f"{base}/completion", json=body) as r:
        r.raise_for_status()
        async for data in sse_data(r):
            ev = json.loads(data)
            if ev.get("stop"):
                break
            s.token_times.append(time.perf_counter())
    return s


async def llama_cpp_py_request(client: httpx.AsyncClient, base: str, i: int, n: int) -> Sample:
    s = Sample(time.perf_counter())
    # llama-cpp-python's server has no ignore_eos: suppress both end tokens of SmolLM2 instead
    body = {
        "prompt": prompt_for(i),
        "max_tokens": n,
        "stream": True,
        "temperature": 0,
        "logit_bias": {"0": -100, "2": -100},
    }
    async with client.stream("POST", f"{base}/v1/completions", json=body) as r:
        r.raise_for_status()
        async for data in sse_data(r):
            if data == "[DONE]":
                break
            ev = json.loads(data)
            if ev["choices"] and ev["choices"][0].get("finish_reason") is None:
                s.token_times.append(time.perf_counter())
    return s


Requester = Callable[[httpx.AsyncClient, str, int, int], Any]


async def load(
    base: str, request: Requester, clients: int, rounds: int, n: int
) -> tuple[float, list[Sample]]:
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        await request(client, base, 10_000, 8)  # warm-up

        async def user(u: int) -> list[Sample]:
            return [await request(client, base, u * rounds + k, n) for k in range(rounds)]

        t0 = time.perf_counter()
        per_user = await asyncio.gather(*(user(u) for u in range(clients)))
        wall = time.perf_counter() - t0
    return wall, [s for samples in per_user for s in samples]


def pct(values: list[float], p: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


@dataclass
class Row:
    engine: str
    clients: int
    tok_s: float
    ttft_p50: float
    ttft_p95: float
    tpot_p50: float
    tpot_p95: float
    tokens: int


def summarize(engine: str, clients: int, wall: float, samples: list[Sample]) -> Row:
    tokens = sum(len(s.token_times) for s in samples)
    ttft = [(s.token_times[0] - s.start) * 1000 for s in samples if s.token_times]
    tpot = [
        (s.token_times[-1] - s.token_times[0]) * 1000 / (len(s.token_times) - 1)
        for s in samples
        if len(s.token_times) > 1
    ]
    return Row(
        engine,
        clients,
        tokens / wall,
        pct(ttft, 50),
        pct(ttft, 95),
        pct(tpot, 50),
        pct(tpot, 95),
        tokens,
    )


# --- the engines ------------------------------------------------------------------------------


# wai variants: the default, and the settings this benchmark compares it with
WAI_VARIANTS = {
    "wai": {},
    "wai-thread": {"WAI_ENGINE_ISOLATION": "thread"},
    "wai-mixed": {"WAI_BATCH_INVARIANT": "false"},
    "wai-nospec": {"WAI_SPECULATION": "off"},
}


@dataclass
class Server:
    """One server to start: its label, command, environment and request shape."""

    label: str
    cmd: list[str]
    base: str
    health: str
    env: dict[str, str]
    request: Callable[..., Any]


def wai_server(model: Path, slots: int, label: str = "wai") -> Server:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "WAI_SLOTS": str(slots),
        "WAI_CTX_PER_SLOT": "512",
        "WAI_DEFAULT_MODEL": str(model),
        **WAI_VARIANTS[label],
    }
    cmd = [sys.executable, "-m", "wai.cli", "serve", "--port", str(port)]
    return Server(label, cmd, base, f"{base}/healthz", env, wai_request)


def llama_server(bin_dir: Path, model: Path, parallel: int, label: str) -> Server:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [
        str(bin_dir / "llama-server"),
        "-m",
        str(model),
        "--port",
        str(port),
        "--parallel",
        str(parallel),
        "-c",
        str(512 * parallel),
        "-t",
        THREADS,
        "-tb",
        THREADS,
        "--no-webui",
    ]
    return Server(label, cmd, base, f"{base}/health", {}, llama_server_request)


def run_levels(server: Server, levels: list[int], rounds: int, n: int) -> list[Row]:
    rows = []
    with process(server.cmd, server.health, server.env):
        for c in levels:
            wall, samples = asyncio.run(load(server.base, server.request, c, rounds, n))
            rows.append(summarize(server.label, c, wall, samples))
            print(_fmt(rows[-1]), flush=True)
    return rows


def run_wai(model: Path, levels: list[int], rounds: int, n: int, label: str = "wai") -> list[Row]:
    return run_levels(wai_server(model, max(levels), label), levels, rounds, n)


def run_llama_server(
    bin_dir: Path, model: Path, levels: list[int], rounds: int, n: int, label: str = "llama-server"
) -> list[Row]:
    """llama-server started afresh for each level, with `--parallel` = the level."""
    return [
        row
        for c in levels
        for row in run_levels(llama_server(bin_dir, model, c, label), [c], rounds, n)
    ]


def run_in_turns(
    servers: list[Server], levels: list[int], turns: int, rounds: int, n: int
) -> list[Row]:
    """Every server up at once; at each level each takes its turn `turns` times, the order
    rotating, and its median is reported: on a shared machine a slow minute then falls on
    every server alike instead of on whichever ran during it."""
    rows = []
    with contextlib.ExitStack() as stack:
        for server in servers:
            stack.enter_context(process(server.cmd, server.health, server.env))
        for c in levels:
            got: dict[str, list[Row]] = {server.label: [] for server in servers}
            for t in range(turns):
                for server in servers[t % len(servers) :] + servers[: t % len(servers)]:
                    wall, samples = asyncio.run(load(server.base, server.request, c, rounds, n))
                    got[server.label].append(summarize(server.label, c, wall, samples))
            for label, runs in got.items():
                rows.append(median_row(label, c, runs))
                print(_fmt(rows[-1]), flush=True)
    return rows


def median_row(label: str, clients: int, runs: list[Row]) -> Row:
    def med(field: str) -> float:
        return statistics.median(getattr(r, field) for r in runs)

    return Row(
        label,
        clients,
        med("tok_s"),
        med("ttft_p50"),
        med("ttft_p95"),
        med("tpot_p50"),
        med("tpot_p95"),
        sum(r.tokens for r in runs),
    )


def run_llama_cpp_py(model: Path, levels: list[int], n: int) -> list[Row]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        "2",
        "--n_threads_batch",
        "2",
    ]
    rows = []
    with process(cmd, f"{base}/v1/models"):
        for c in levels:
            wall, samples = asyncio.run(load(base, llama_cpp_py_request, c, 1, n))
            rows.append(summarize("llama-cpp-py", c, wall, samples))
            print(_fmt(rows[-1]), flush=True)
    return rows


def engine_decode(model: Path, n: int) -> float:
    """wai's engine alone, on a thread of this process: one stream, decode tok/s after the
    first token."""
    from wai.engines.llamacpp.config import LlamaCppConfig
    from wai.engines.llamacpp.inthread import InThreadEngine
    from wai.engines.llamacpp.types import SamplingParams, TokenRequest

    async def go() -> float:
        backend = InThreadEngine(
            LlamaCppConfig(model, "bench", n_slots=1, n_ctx_seq=512, n_batch=256)
        )
        await backend.start()
        prompt = backend.tokenizer.tokenize(prompt_for(1), add_special=True, parse_special=True)
        best = 0.0
        for _ in range(3):
            gen = backend.submit(
                TokenRequest(prompt, n, SamplingParams(temperature=0), ignore_eos=True)
            )
            times = [time.perf_counter() async for _ in gen]
            best = max(best, (n - 1) / (times[-2] - times[0]))
        await backend.close()
        return best

    return asyncio.run(go())


def llama_bench_tg(bin_dir: Path, model: Path, n: int) -> float:
    out = subprocess.run(
        [
            str(bin_dir / "llama-bench"),
            "-m",
            str(model),
            "-p",
            "0",
            "-n",
            str(n),
            "-t",
            THREADS,
            "-r",
            "3",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(json.loads(out)[0]["avg_ts"])


# --- report -----------------------------------------------------------------------------------


def _fmt(r: Row) -> str:
    return (
        f"{r.engine:13} {r.clients:>3} clients  {r.tok_s:7.1f} tok/s  "
        f"TTFT p50 {r.ttft_p50:7.0f} ms p95 {r.ttft_p95:7.0f} ms  "
        f"TPOT p50 {r.tpot_p50:6.1f} ms p95 {r.tpot_p95:6.1f} ms"
    )


def table(rows: list[Row], tg: float | None, engine_tg: float | None) -> str:
    # the anchor computes with the file wai computes with when the run has it (see Engines)
    name = "llama-server-q8" if any(r.engine == "llama-server-q8" for r in rows) else "llama-server"
    anchor = {r.clients: r for r in rows if r.engine == name}
    lines = [
        f"| engine | clients | tok/s | vs {name} | TTFT p50 ms | TTFT p95 ms "
        "| TPOT p50 ms | TPOT p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r.tok_s / anchor[r.clients].tok_s:.2f}x" if r.clients in anchor else "-"
        lines.append(
            f"| {r.engine} | {r.clients} | {r.tok_s:.1f} | {ratio} | {r.ttft_p50:.0f} "
            f"| {r.ttft_p95:.0f} | {r.tpot_p50:.1f} | {r.tpot_p95:.1f} |"
        )
    if tg is not None:
        for r in rows:
            if r.engine == "wai" and r.clients == 1:
                decode = 1000 / r.tpot_p50
                lines.append(
                    f"\nsingle stream vs llama-bench tg{N_TG} ({tg:.1f} tok/s): wai over "
                    f"HTTP {r.tok_s:.1f} tok/s end to end ({r.tok_s / tg:.2f}x), "
                    f"decode {decode:.1f} tok/s ({decode / tg:.2f}x)"
                )
        if engine_tg is not None and tg is not None:
            lines.append(
                f"wai engine in-process, one stream: {engine_tg:.1f} tok/s ({engine_tg / tg:.2f}x)"
            )
    return "\n".join(lines)


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for engine in dict.fromkeys(r.engine for r in rows):
        rs = [r for r in rows if r.engine == engine]
        ax1.plot([r.clients for r in rs], [r.tok_s for r in rs], marker="o", label=engine)
        ax2.plot([r.clients for r in rs], [r.ttft_p95 for r in rs], marker="o", label=engine)
    ax1.set(
        xlabel="concurrent streaming clients", ylabel="aggregate output tok/s", title="Throughput"
    )
    ax2.set(
        xlabel="concurrent streaming clients",
        ylabel="TTFT p95 (ms)",
        yscale="log",
        title="Time to first token, p95",
    )
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("SmolLM2-135M Q4_1, 2 CPU cores, greedy, EOS suppressed")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_one_by_one(
    model: Path, bin_dir: Path | None, engines: list[str], levels: list[int], args: Any
) -> list[Row]:
    rows: list[Row] = []
    for label in WAI_VARIANTS:
        if label in engines:
            rows += run_wai(model, levels, args.rounds, args.max_tokens, label)
    if bin_dir is not None and "llama-server" in engines:
        rows += run_llama_server(bin_dir, model, levels, args.rounds, args.max_tokens)
    if bin_dir is not None and "llama-server-q8" in engines:
        q8 = converted(model)
        if q8 != model:
            rows += run_llama_server(
                bin_dir, q8, levels, args.rounds, args.max_tokens, "llama-server-q8"
            )
    if "llama-cpp-py" in engines:
        rows += run_llama_cpp_py(model, levels, args.max_tokens)
    return rows


def run_together(
    model: Path, bin_dir: Path | None, engines: list[str], levels: list[int], args: Any
) -> list[Row]:
    """--turns: the servers side by side (llama-server with `--parallel` = the largest
    level, as wai's slots); llama-cpp-py is left out of this mode."""
    slots = max(levels)
    servers = [wai_server(model, slots, label) for label in WAI_VARIANTS if label in engines]
    if bin_dir is not None and "llama-server" in engines:
        servers.append(llama_server(bin_dir, model, slots, "llama-server"))
    if bin_dir is not None and "llama-server-q8" in engines and converted(model) != model:
        servers.append(llama_server(bin_dir, converted(model), slots, "llama-server-q8"))
    return run_in_turns(servers, levels, args.turns, args.rounds, args.max_tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", default="1,4,8,16")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--turns",
        type=int,
        default=0,
        help="run the servers side by side, each level N times in rotating order (medians)",
    )
    ap.add_argument("--engines", default="wai,llama-server,llama-server-q8,llama-cpp-py")
    ap.add_argument("--model", type=Path, default=None, help="GGUF (default: embedded)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    engines = args.engines.split(",")
    model = args.model or embedded_model_path()
    args.out.mkdir(parents=True, exist_ok=True)

    bin_dir = None
    if any(e.startswith("llama-server") for e in engines):
        bin_dir = Path(
            subprocess.run(
                [str(ROOT / "bench" / "build_llama_server.sh")],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    rows = (
        run_together(model, bin_dir, engines, levels, args)
        if args.turns
        else run_one_by_one(model, bin_dir, engines, levels, args)
    )
    tg = llama_bench_tg(bin_dir, model, N_TG) if bin_dir is not None else None
    engine_tg = engine_decode(model, N_TG) if "wai" in engines else None

    report = table(rows, tg, engine_tg)
    print()
    print(
        f"model {model.name}, {args.max_tokens} output tokens/request, {args.rounds} "
        f"request(s) per client, {os.cpu_count()} cores"
        + (f", side by side, median of {args.turns} turns" if args.turns else "")
    )
    print(report)
    (args.out / "serve.md").write_text(report + "\n")
    (args.out / "serve.json").write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    plot(rows, args.out / "serve.png")
    print(f"\nwrote {args.out / 'serve.md'}, serve.json, serve.png")


if __name__ == "__main__":
    main()
