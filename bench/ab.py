"""wai against an earlier wai: the serving benchmark (bench/serve.py, wai only) for a base git
revision and for this working tree, alternated in one run, so a change is measured against the
code it replaces on the same machine at the same time (these machines are shared and noisy).

Both trees run with this checkout's virtual environment (same llama.cpp build). Prints, per
concurrency level, the median aggregate tok/s, TTFT p95 and TPOT p95 of each side over the
repeats, and the ratio of this tree to the base.

Usage: .venv/bin/python bench/ab.py --base REV [--clients 1,8,16] [--repeats 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worktree(rev: str) -> Path:
    path = ROOT / "bench" / ".build" / f"ab-{rev}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
            check=True,
            capture_output=True,
        )
    return path


def run(tree: Path, args: argparse.Namespace, out: Path) -> list[dict[str, float]]:
    out.mkdir(parents=True, exist_ok=True)
    (tree / "bench" / "out").mkdir(parents=True, exist_ok=True)  # older serve.py logs there
    cmd = [
        sys.executable,
        "bench/serve.py",
        "--engines",
        "wai",
        "--clients",
        args.clients,
        "--rounds",
        str(args.rounds),
        "--out",
        str(out),
    ]
    # the tree's own wai package first (this checkout's editable install comes later)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"bench/serve.py failed in {tree}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    rows: list[dict[str, float]] = json.loads((out / "serve.json").read_text())
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="git revision to compare against")
    ap.add_argument("--clients", default="1,8,16")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "ab")
    args = ap.parse_args()
    args.out = args.out.resolve()  # serve.py runs in each tree: a relative path would move
    trees = {"base": worktree(args.base), "this": ROOT}
    results: dict[str, dict[int, list[dict[str, float]]]] = {"base": {}, "this": {}}
    for i in range(args.repeats):
        for side, tree in trees.items():
            for row in run(tree, args, args.out / f"{side}-{i}"):
                results[side].setdefault(int(row["clients"]), []).append(row)
            print(f"repeat {i + 1}/{args.repeats}: {side} done", flush=True)

    def med(side: str, n: int, key: str) -> float:
        return statistics.median(r[key] for r in results[side][n])

    print(f"\nbase {args.base} vs this tree, median of {args.repeats} runs each, alternated")
    print(
        "| clients | base tok/s | this tok/s | this / base | base TTFT p95 ms | this TTFT p95 ms "
        "| base TPOT p95 ms | this TPOT p95 ms |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sorted(results["this"]):
        b, t = med("base", n, "tok_s"), med("this", n, "tok_s")
        print(
            f"| {n} | {b:.1f} | {t:.1f} | {t / b:.2f}x | {med('base', n, 'ttft_p95'):.0f} "
            f"| {med('this', n, 'ttft_p95'):.0f} | {med('base', n, 'tpot_p95'):.1f} "
            f"| {med('this', n, 'tpot_p95'):.1f} |"
        )


if __name__ == "__main__":
    main()
