"""`wai pull`: download throughput against huggingface_hub's own `hf_hub_download` of the same
file from the same local server (tests/hub_server.py speaks the Hub's protocol; these machines
cannot reach the Hub), and the time from `wai pull` of an id to its first token.

Throughput: a file of `--mib` random MiB, pulled `--rounds` times by each (in turns, each into a
fresh cache), best round of each; wai's time includes its SHA-256 check of the bytes (the
Hub's `hf_hub_download` checks none). Then: `wai pull` of a curated-looking id whose file is
the embedded model's GGUF (98 MB), `wai serve`, and one request for that id, timed from the
start of the pull to the first streamed token.

Usage: .venv/bin/python bench/pull.py [--mib 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from serve import free_port  # noqa: E402

from tests.hub_server import HubFixture, serve  # noqa: E402
from wai.catalog import embedded_model_path  # noqa: E402

REPO = "bench/files"
MODEL_ID = "@cf/tinyllama/tinyllama-1.1b-chat-v1.0"


def timed_pull(tool: str, env: dict[str, str], cache: Path) -> float:
    """Seconds for one download into a fresh cache, in a process of its own."""
    shutil.rmtree(cache, ignore_errors=True)
    code = {
        "wai": "from wai import hub; hub.pull(hub.parse_file('hf:bench/files/big.bin'), "
        "say=lambda s: None)",
        "hf_hub_download": "from huggingface_hub import hf_hub_download; "
        "hf_hub_download('bench/files', 'big.bin')",
    }[tool]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env={**env, "HF_HUB_CACHE": str(cache)},
                   check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - t0


def first_token(env: dict[str, str], tmp: Path) -> tuple[float, float, float]:
    """Seconds of `wai pull`, of `wai serve` to healthy, and to the first token."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "wai.cli", "pull", MODEL_ID], env=env, check=True,
                   capture_output=True)  # fmt: skip
    pulled = time.perf_counter()
    port = free_port()
    log = open(tmp / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "wai.cli", "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        healthy = time.perf_counter()
        body = {"prompt": "Hello", "stream": True, "max_tokens": 8}
        url = f"{base}/client/v4/accounts/bench/ai/run/{MODEL_ID}"
        with httpx.stream("POST", url, json=body, timeout=300) as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and '"response"' in line:
                    break
        return pulled - t0, healthy - pulled, time.perf_counter() - healthy
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        big = tmp / "big.bin"
        with big.open("wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1 << 20))
        fixture = HubFixture(
            files={f"{REPO}/big.bin": big, f"{REPO}/model.gguf": embedded_model_path()}
        )
        server = serve(fixture)
        entry = {"repo": REPO, "file": "model.gguf", "license": "-", "quant": "Q4_1", "why": "-"}
        (tmp / "sources.json").write_text(json.dumps({"sources": {MODEL_ID: entry}}))
        env = {**os.environ, "HF_ENDPOINT": fixture.url, "HF_HUB_DISABLE_TELEMETRY": "1",
               "HF_HUB_CACHE": str(tmp / "cache"), "WAI_HUB_SOURCES": str(tmp / "sources.json"),
               "WAI_USAGE_DB": str(tmp / "usage.db")}  # fmt: skip
        best = {"wai": float("inf"), "hf_hub_download": float("inf")}
        for _ in range(args.rounds):
            for tool in best:
                best[tool] = min(best[tool], timed_pull(tool, env, tmp / f"cache-{tool}"))
        pull_s, start_s, token_s = first_token(env, tmp)
        server.shutdown()
        server.server_close()
    mib = args.mib
    w, h = best["wai"], best["hf_hub_download"]
    print(f"Download of {mib} MiB from a local Hub-protocol server, best of {args.rounds}\n")
    print("| tool | seconds | MiB/s |\n|---|---:|---:|")
    print(f"| wai pull (with its SHA-256 check) | {w:.2f} | {mib / w:.0f} |")
    print(f"| huggingface_hub hf_hub_download | {h:.2f} | {mib / h:.0f} |")
    print(f"\nwai vs hf_hub_download: {h / w:.2f}x\n")
    total = pull_s + start_s + token_s
    print(
        f"From `wai pull {MODEL_ID}` (98 MB) to its first token: {total:.1f} s (pull "
        f"{pull_s:.1f} s, `wai serve` to healthy {start_s:.1f} s, first token {token_s:.2f} s)"
    )


if __name__ == "__main__":
    main()
