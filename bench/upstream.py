"""What wai costs in front of an OpenAI-compatible server, and what a second replica brings.

Part 1, proxy cost: one llama-server (llama.cpp's own server, built by scripts/llama_server.py),
called directly (`/v1/chat/completions`, streamed) and through wai, the model served by that
llama-server as an upstream: by the same OpenAI client through wai's `/v1` (`wai-openai`, like
for like) and through Workers AI's `/ai/run` (`wai`). Same run, alternating, at each client
count. Every client sends `--rounds` chat requests one after another, greedy,
end-of-text ignored, `--max-tokens` output tokens. Reported: aggregate output tok/s (ratio
against direct), TTFT p50/p95 and wai's added TTFT p50 (median over `--repeats` runs of each).

Part 2, replicas: wai in front of two llama-server replicas against wai in front of one
(aggregate tok/s).

On a small machine everything shares its cores. In part 1 the llama-server (one thread) and the
load generator are pinned to the first core and wai to the others, so that wai's CPU is neither
taken from the upstream's nor from the client's, as when the upstream is a GPU server elsewhere:
both modes pay the same for the load generator. In part 2 each replica is pinned to a core of its
own (one thread); wai and the load generator float.

Part 1 also times probes: short requests sent one at a time, at random moments, while the
other clients stream, so that a request's TTFT is not decided by which of the upstream's prefill
waves a burst of simultaneous arrivals lands it in (at 16 clients those are ~350 ms apart here).

Usage: .venv/bin/python bench/upstream.py [--clients 1,8,16] [--max-tokens 128] [--rounds 2]
                                          [--repeats 3] [--probes 25] [--replicas-clients 8,16]
                                          [--parts proxy,replicas] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from serve import ROOT, Row, Sample, free_port, load, process, sse_data, summarize

from wai.catalog import embedded_model_path

MODEL_ID = "@cf/acme/bench"
TOPICS = ["the sea", "a clock", "bread", "a fox", "chess", "the moon", "rain", "tea"]


def messages_for(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Write a long story about {TOPICS[i % 8]}, number {i}."}]


def openai_request(model: str) -> Any:
    """A client of OpenAI's streamed chat completions, for `model` (llama-server's name for it,
    called directly, or wai's id, through wai's `/v1`): the same client code and chunk format
    both ways."""

    async def request(client: httpx.AsyncClient, base: str, i: int, n: int) -> Sample:
        s = Sample(time.perf_counter())
        body = {
            "model": model,
            "messages": messages_for(i),
            "max_tokens": n,
            "stream": True,
            "stream_options": {"include_usage": True},
            "ignore_eos": True,
            "temperature": 0,
        }
        async with client.stream("POST", f"{base}/v1/chat/completions", json=body) as r:
            r.raise_for_status()
            async for data in sse_data(r):
                if data == "[DONE]":
                    break
                choices = json.loads(data).get("choices") or []
                if choices and (choices[0].get("delta") or {}).get("content"):
                    s.token_times.append(time.perf_counter())
        return s

    return request


direct_request = openai_request("smollm2")
wai_openai_request = openai_request(MODEL_ID)


async def wai_request(client: httpx.AsyncClient, base: str, i: int, n: int) -> Sample:
    s = Sample(time.perf_counter())
    body = {
        "messages": messages_for(i),
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
            if json.loads(data).get("response"):
                s.token_times.append(time.perf_counter())
    return s


def pin(cpus: set[int]) -> None:
    """Pin this process (and what it starts from now on) to `cpus`, where the OS allows it."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


def _initial_cores() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


CORES = _initial_cores()  # before any pinning of this process


def cores() -> list[int]:
    return CORES


def llama_server_cmd(binary: Path, port: int, slots: int, ctx_per_slot: int) -> list[str]:
    return [
        str(binary),
        "-m",
        str(embedded_model_path()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--parallel",
        str(slots),
        "-c",
        str(slots * ctx_per_slot),
        "--threads",
        "1",
        "--no-webui",
        "--alias",
        "smollm2",
    ]


def wai_cmd(port: int, config: Path) -> list[str]:
    return [sys.executable, "-m", "wai.cli", "serve", "--port", str(port), "--config", str(config)]


def wai_config(path: Path, upstream_ports: list[int], slots: int) -> Path:
    ups = ", ".join(
        f'{{url = "http://127.0.0.1:{p}/v1", model = "smollm2", max_in_flight = {slots}}}'
        for p in upstream_ports
    )
    path.write_text(
        f'[models.bench]\nserves = ["{MODEL_ID}"]\nupstreams = [{ups}]\n'
        # the embedded default model is loaded too; keep it small and idle
        "[engine]\nslots = 1\nctx_per_slot = 256\nbatch_tokens = 144\nprefill_chunk = 128\n"
    )
    return path


def started(cmd: list[str], health: str, cpus: set[int] | None) -> Any:
    """`process` from serve.py, with the child pinned to `cpus`."""
    if cpus is None:
        return process(cmd, health)
    return process(["taskset", "-c", ",".join(map(str, sorted(cpus))), *cmd], health)


def median_row(rows: list[Row]) -> Row:
    def med(attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in rows)

    return Row(
        rows[0].engine,
        rows[0].clients,
        med("tok_s"),
        med("ttft_p50"),
        med("ttft_p95"),
        med("tpot_p50"),
        med("tpot_p95"),
        int(med("tokens")),
    )


async def probe(base: str, request: Any, clients: int, probes: int, n: int) -> list[float]:
    """TTFTs (ms) of `probes` short requests sent one at a time, at random moments, while
    `clients - 1` others keep streaming: what a request arriving under that load waits, without
    the waves that a burst of simultaneous arrivals forms in the upstream's batches."""
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        stop = asyncio.Event()

        async def background(u: int) -> None:
            k = 0
            while not stop.is_set():
                await request(client, base, 20_000 + 100 * u + k, n)
                k += 1

        tasks = [asyncio.create_task(background(u)) for u in range(clients - 1)]
        await asyncio.sleep(1.0)
        rng = random.Random(clients)
        ttfts = []
        for k in range(probes):
            await asyncio.sleep(rng.uniform(0, 0.2))
            s = await request(client, base, 30_000 + k, 4)
            ttfts.append((s.token_times[0] - s.start) * 1000)
        stop.set()
        await asyncio.gather(*tasks)
    return ttfts


def proxy_cost(args: argparse.Namespace, binary: Path, out: Path) -> tuple[list[Row], str]:
    levels = [int(c) for c in args.clients.split(",")]
    slots = max(levels)
    cpu = cores()
    upstream_cpus, wai_cpus = ({cpu[0]}, set(cpu[1:])) if len(cpu) > 1 else (None, None)
    if upstream_cpus:
        pin(upstream_cpus)  # this process: the load generator, beside the upstream
    port, wai_port = free_port(), free_port()
    base, direct = f"http://127.0.0.1:{wai_port}", f"http://127.0.0.1:{port}"
    config = wai_config(out / "upstream-bench.toml", [port], slots)
    rows: list[Row] = []
    with (
        started(llama_server_cmd(binary, port, slots, 512), f"{direct}/health", upstream_cpus),
        started(
            wai_cmd(wai_port, config),
            f"{base}/healthz",
            wai_cpus,
        ),
    ):
        for c in levels:
            runs: dict[str, list[Row]] = {"direct": [], "wai-openai": [], "wai": []}
            for _ in range(args.repeats):
                for label, target, request in (
                    ("direct", direct, direct_request),
                    ("wai-openai", base, wai_openai_request),
                    ("wai", base, wai_request),
                ):
                    wall, samples = asyncio.run(load(target, request, c, args.rounds, args.n))
                    runs[label].append(summarize(label, c, wall, samples))
            for label in runs:
                rows.append(median_row(runs[label]))
                print(_fmt(rows[-1]), flush=True)
        probe_lines = [
            "| clients | route | probe TTFT mean ms | p50 ms | added mean ms | added p50 ms |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for c in (c for c in levels if c > 1):
            got: dict[str, list[float]] = {"direct": [], "wai-openai": [], "wai": []}
            for _ in range(args.repeats):
                for label, target, request in (
                    ("direct", direct, direct_request),
                    ("wai-openai", base, wai_openai_request),
                    ("wai", base, wai_request),
                ):
                    got[label] += asyncio.run(probe(target, request, c, args.probes, args.n))
            d_mean, d_p50 = statistics.mean(got["direct"]), statistics.median(got["direct"])
            for label, ttfts in got.items():
                mean, p50 = statistics.mean(ttfts), statistics.median(ttfts)
                line = (
                    f"| {c} | {label} | {mean:.1f} | {p50:.1f} | {mean - d_mean:+.1f} "
                    f"| {p50 - d_p50:+.1f} |"
                )
                probe_lines.append(line)
                print(line, flush=True)
    return rows, "\n".join(probe_lines)


def replicas(args: argparse.Namespace, binary: Path, out: Path) -> list[Row]:
    levels = [int(c) for c in args.replicas_clients.split(",")]
    slots = max(levels)
    cpu = cores()
    ports = [free_port(), free_port()]
    pins: list[set[int] | None] = [{cpu[0]}, {cpu[1]}] if len(cpu) > 1 else [None, None]
    if len(cpu) > 1:
        pin(set(cpu))
    rows: list[Row] = []
    with (
        started(
            llama_server_cmd(binary, ports[0], slots, 512),
            f"http://127.0.0.1:{ports[0]}/health",
            pins[0],
        ),
        started(
            llama_server_cmd(binary, ports[1], slots, 512),
            f"http://127.0.0.1:{ports[1]}/health",
            pins[1],
        ),
    ):
        for label, ups in (("wai, 1 replica", ports[:1]), ("wai, 2 replicas", ports)):
            wai_port = free_port()
            base = f"http://127.0.0.1:{wai_port}"
            config = wai_config(out / f"upstream-bench-{len(ups)}.toml", ups, slots)
            with started(
                wai_cmd(wai_port, config),
                f"{base}/healthz",
                None,
            ):
                for c in levels:
                    results = []
                    for _ in range(args.repeats):
                        wall, samples = asyncio.run(load(base, wai_request, c, args.rounds, args.n))
                        results.append(summarize(label, c, wall, samples))
                    rows.append(median_row(results))
                    print(_fmt(rows[-1]), flush=True)
    return rows


def _fmt(r: Row) -> str:
    return (
        f"{r.engine:16} {r.clients:>3} clients  {r.tok_s:7.1f} tok/s  "
        f"TTFT p50 {r.ttft_p50:7.1f} ms p95 {r.ttft_p95:7.1f} ms  TPOT p50 {r.tpot_p50:6.1f} ms"
    )


def proxy_table(rows: list[Row]) -> str:
    direct = {r.clients: r for r in rows if r.engine == "direct"}
    lines = [
        "| route | clients | tok/s | vs direct | TTFT p50 ms | added TTFT p50 ms "
        "| TTFT p95 ms | TPOT p50 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: r.clients):
        d = direct[r.clients]
        lines.append(
            f"| {r.engine} | {r.clients} | {r.tok_s:.1f} | {r.tok_s / d.tok_s:.3f}x "
            f"| {r.ttft_p50:.1f} | {r.ttft_p50 - d.ttft_p50:+.1f} | {r.ttft_p95:.1f} "
            f"| {r.tpot_p50:.1f} |"
        )
    return "\n".join(lines)


def replicas_table(rows: list[Row]) -> str:
    one = {r.clients: r for r in rows if r.engine == "wai, 1 replica"}
    lines = [
        "| clients | 1 replica tok/s | 2 replicas tok/s | 2 vs 1 | 2 replicas TTFT p50 ms |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.engine == "wai, 2 replicas":
            o = one[r.clients]
            lines.append(
                f"| {r.clients} | {o.tok_s:.1f} | {r.tok_s:.1f} | {r.tok_s / o.tok_s:.2f}x "
                f"| {r.ttft_p50:.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", default="1,8,16")
    ap.add_argument("--replicas-clients", default="8,16")
    ap.add_argument("--max-tokens", dest="n", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--probes", type=int, default=25, help="TTFT probes per run under load")
    ap.add_argument("--parts", default="proxy,replicas")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bin_dir = (
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "llama_server.py")],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    binary = Path(bin_dir) / "llama-server"
    report = [
        f"model {embedded_model_path().name}, {args.n} output tokens/request, {args.rounds} "
        f"request(s) per client, median of {args.repeats} runs, {os.cpu_count()} cores"
    ]
    parts = args.parts.split(",")
    if "proxy" in parts:
        rows, probes = proxy_cost(args, binary, args.out)
        report += [
            "",
            "wai in front of one llama-server, against it called directly:",
            "",
            proxy_table(rows),
            "",
            f"TTFT of a request arriving while the others stream ({args.probes} probes per "
            f"run, {args.repeats} runs pooled):",
            "",
            probes,
        ]
    if "replicas" in parts:
        rows = replicas(args, binary, args.out)
        report += [
            "",
            "wai in front of two llama-server replicas, against one:",
            "",
            replicas_table(rows),
        ]
    text = "\n".join(report)
    print()
    print(text)
    (args.out / "upstream.md").write_text(text + "\n")
    print(f"\nwrote {args.out / 'upstream.md'}")


if __name__ == "__main__":
    main()
