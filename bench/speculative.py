"""Speculative decoding: wai against llama-server's n-gram speculation, same weights file, same run.

Every server gets the same chat requests on its OpenAI route (`/v1/chat/completions`, greedy,
not streamed) and runs the file wai computes with (the Q8_0 conversion of the embedded SmolLM2),
2 threads, 8 slots. All servers run at once and take each workload in turns (these machines
are shared and noisy: so they share the noise); the median of `--rounds` rounds is kept.
Servers:

  wai                    this tree, speculation on (its default: prompt lookup)
  wai off                the same with `WAI_SPECULATION=off`
  llama-server           no speculation
  llama-server ngram     `--spec-type ngram-simple` (its defaults: a 12-token lookup, 48 drafted)
  llama-server ngram-3   `--spec-type ngram-simple` with a 3-token lookup and 16 drafted, as wai

Workloads, each at one client (requests one after another), then all three mixed at 8 clients:
  copy   "repeat this text with the typos fixed" over a paragraph (the answer quotes the input)
  chat   a short story from a one-line prompt (free text)
  json   fields of a given document extracted in JSON mode (`response_format` json_object)

Prints tokens per second (completion tokens over wall time), the ratio to "wai off" (the anchor
of the same run), drafted/accepted tokens where a server reports them, and whether wai's
answers equal "wai off"'s (greedy: they must).

Usage: .venv/bin/python bench/speculative.py [--requests 3] [--rounds 3] [--skip NAME,...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from embeddings import llama_server_bin  # noqa: E402
from serve import converted, free_port, process  # noqa: E402

from wai.catalog import embedded_model_path  # noqa: E402

# llama.cpp threads for llama-server and llama-bench: what wai uses by default (every core)
THREADS = str(os.cpu_count() or 1)

SLOTS = 8
PARAGRAPHS = [
    "Their are many reasons to beleive that the wether tomorow will be sunny, acording to the "
    "forcast. The city councel met on Tuesday to discus the new park, wich will open next "
    "spring with a playgroud, a pond and a smal cafe near the entrence. Residents can vote on "
    "the name of the park untill the end of the month.",
    "The compny anounced that its new phone will ship in Octobre. It has a bigger screen, a "
    "faster procesor and a batery that lasts two days. Prices start at four hundred dolars, "
    "and custumers who order befor the launch get a free case and a year of cloud storrage.",
    "Our libary is open from nine in the morning untill six in the evening. Members can "
    "borow up to ten books at a time for three weeks. Late returns cost ten cents a day, and "
    "the childrens section hosts a story hour every Saturday at elevn o'clock.",
]
DOCUMENTS = [
    "Invoice 2291 was issued by Northwind Traders of Lyon, France on 3 March 2026 to Alice "
    "Moreau for 12 oak chairs at 85 euros each, due within 30 days.",
    "Order 7713 from Contoso Ltd of Leeds, England, dated 19 July 2026: 4 standing desks at 410 "
    "pounds each for Ravi Patel, shipped by courier within 5 days.",
    "Ticket 5120, opened 2 May 2026 by Sofia Rossi of Milan, Italy, reports that the blue "
    "kettle (model K-200, bought for 39 euros) stopped heating after 2 weeks.",
]
TOPICS = ["a lighthouse keeper", "a robot who learns to paint", "a town where it never rains"]


def request(kind: str, i: int) -> dict[str, Any]:
    """The chat request of workload `kind`, its i-th input."""
    body: dict[str, Any] = {"temperature": 0, "max_tokens": 192}
    if kind == "copy":
        text = PARAGRAPHS[i % len(PARAGRAPHS)]
        content = f"Repeat this text with the typos fixed:\n\n{text}"
    elif kind == "chat":
        content = f"Write a short story about {TOPICS[i % len(TOPICS)]}."
        body["max_tokens"] = 128
    else:
        doc = DOCUMENTS[i % len(DOCUMENTS)]
        content = (
            "Extract the document's number, company, city, country, date, person, item, "
            f"quantity and price as a JSON object.\n\nDocument: {doc}"
        )
        body["response_format"] = {"type": "json_object"}
    body["messages"] = [{"role": "user", "content": content}]
    return body


@dataclass
class Result:
    tokens: int = 0
    seconds: float = 0.0
    drafted: int = 0
    accepted: int = 0
    texts: list[str] = field(default_factory=list)

    def add(self, other: Result) -> None:
        self.tokens += other.tokens
        self.drafted += other.drafted
        self.accepted += other.accepted
        self.texts += other.texts


async def chat(client: httpx.AsyncClient, base: str, body: dict[str, Any]) -> Result:
    t0 = time.perf_counter()
    r = await client.post(
        f"{base}/v1/chat/completions", json={"model": "@cf/meta/llama-3.1-8b-instruct", **body}
    )
    r.raise_for_status()
    seconds = time.perf_counter() - t0
    answer = r.json()
    usage = answer["usage"]
    details = usage.get("completion_tokens_details") or {}
    timings = answer.get("timings") or {}  # llama-server's
    accepted = details.get("accepted_prediction_tokens") or timings.get("draft_n_accepted") or 0
    rejected = details.get("rejected_prediction_tokens") or 0
    drafted = accepted + rejected if details else timings.get("draft_n") or 0
    text = answer["choices"][0]["message"]["content"]
    return Result(usage["completion_tokens"], seconds, drafted, accepted, [text])


async def one_client(base: str, kind: str, n: int) -> Result:
    total = Result()
    async with httpx.AsyncClient(timeout=600) as client:
        t0 = time.perf_counter()
        for i in range(n):
            total.add(await chat(client, base, request(kind, i)))
        total.seconds = time.perf_counter() - t0
    return total


async def mixed(base: str, n: int) -> Result:
    """8 clients, each sending copy, chat and json requests in turn, n of each."""
    total = Result()
    async with httpx.AsyncClient(timeout=600) as client:

        async def user(c: int) -> None:
            for i in range(3 * n):
                kind = ("copy", "chat", "json")[(c + i) % 3]
                total.add(await chat(client, base, request(kind, c + i)))

        t0 = time.perf_counter()
        await asyncio.gather(*(user(c) for c in range(SLOTS)))
        total.seconds = time.perf_counter() - t0
    return total


def rate(r: Result) -> float:
    return r.tokens / r.seconds


def median_round(results: list[Result]) -> Result:
    """The round with the median rate (these machines are shared and noisy)."""
    return sorted(results, key=lambda r: r.tokens / r.seconds)[len(results) // 2]


KINDS = ("copy", "chat", "json", "mix x8")


def workload(base: str, kind: str, n: int) -> Result:
    if kind == "mix x8":
        return asyncio.run(mixed(base, max(1, n // 3)))
    return asyncio.run(one_client(base, kind, n))


def measure(bases: dict[str, str], n: int, rounds: int) -> dict[str, dict[str, Result]]:
    """Every workload on every server in turns, `rounds` times: the servers share whatever
    else the machine is doing; the median round of each is kept."""
    for base in bases.values():
        for kind in ("copy", "chat", "json"):
            workload(base, kind, 1)  # warm: prompt caches, first-request costs
    runs: dict[str, dict[str, list[Result]]] = {name: {k: [] for k in KINDS} for name in bases}
    for r in range(rounds):
        for kind in KINDS:
            for name, base in bases.items():
                runs[name][kind].append(workload(base, kind, n))
        print(f"round {r + 1} of {rounds} done", flush=True)
    return {name: {k: median_round(rs) for k, rs in kinds.items()} for name, kinds in runs.items()}


LLAMA_SPEC = {
    "llama-server": [],
    "llama-server ngram": ["--spec-type", "ngram-simple"],
    "llama-server ngram-3": [
        *("--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", "3"),
        *("--spec-ngram-simple-size-m", "16"),
    ],
}


def start(name: str, stack: contextlib.ExitStack) -> str:
    """Start a server; returns its base URL (stopped when the stack closes)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    if name in LLAMA_SPEC:
        model = converted(embedded_model_path())
        cmd = [
            str(llama_server_bin() / "llama-server"), "-m", str(model), "--port", str(port),
            "-np", str(SLOTS), "-c", str(2048 * SLOTS), "-t", THREADS, "-tb", THREADS, "--no-webui",
            *LLAMA_SPEC[name],
        ]  # fmt: skip
        stack.enter_context(process(cmd, f"{base}/health"))
        return base
    cmd = [sys.executable, "-m", "wai.cli", "serve", "--port", str(port), "--slots", str(SLOTS)]
    env = {"WAI_SPECULATION": "off" if name == "wai off" else "ngram"}
    stack.enter_context(process(cmd, f"{base}/healthz", env=env))
    return base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=3, help="per workload at one client")
    ap.add_argument("--rounds", type=int, default=3, help="of each workload (the median)")
    ap.add_argument("--skip", default="", help="servers to leave out (comma-separated)")
    args = ap.parse_args()
    names = ["wai", "wai off", *LLAMA_SPEC]
    names = [n for n in names if n not in args.skip.split(",")]
    with contextlib.ExitStack() as stack:
        bases = {name: start(name, stack) for name in names}
        out = measure(bases, args.requests, args.rounds)
    kinds = list(KINDS)
    anchor = out.get("wai off")
    print("\n| server | " + " | ".join(f"{k} tok/s" for k in kinds) + " | accepted/drafted |")
    print("|---|" + "---:|" * (len(kinds) + 1))
    for name, results in out.items():
        cells = []
        for k in kinds:
            if anchor is not None:
                cells.append(f"{rate(results[k]):.1f} ({rate(results[k]) / rate(anchor[k]):.2f}x)")
            else:
                cells.append(f"{rate(results[k]):.1f}")
        drafted = sum(r.drafted for r in results.values())
        accepted = sum(r.accepted for r in results.values())
        print(f"| {name} | " + " | ".join(cells) + f" | {accepted}/{drafted} |")
    spec = out.get("llama-server ngram-3")
    if spec is not None and "wai" in out:
        ratios = ", ".join(f"{k} {rate(out['wai'][k]) / rate(spec[k]):.2f}x" for k in kinds)
        print(f"wai against llama-server ngram-3: {ratios}")
    if anchor is not None and "wai" in out:
        for k in ("copy", "chat", "json"):
            same = out["wai"][k].texts == anchor[k].texts
            print(f"wai's {k} answers equal wai off's: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
