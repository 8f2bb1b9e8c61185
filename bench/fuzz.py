"""Long fuzz run: schemathesis against wai's own OpenAPI document, every operation, valid and
invalid inputs, all checks with the suite's documented exceptions (as tests/e2e/test_fuzz.py
does, with many more cases).

Reports cases and failures per operation, 5xx responses, and whether the server still answers
and logged no traceback. `max_tokens` is capped at 1 on the fuzzed server (and documented so)
to keep generated requests short.

Usage: .venv/bin/python bench/fuzz.py [--cases 10000] [--out bench/out]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import start_server, stop_server  # noqa: E402
from tests.e2e.test_fuzz import (  # noqa: E402
    _audio,
    _dimensions,
    _json_mode,
    _long_text,
    _mislabelled,
    _text_tasks,
    _tools,
    _undocumented_query,
)

# the suite's documented exceptions (tests/e2e/test_fuzz.py): cases the document calls valid
# that wai rightly refuses (a JSON-schema keyword no grammar enforces, a text over a model's
# window, ...), and schemathesis' own mislabelled cases
KNOWN_REFUSALS = (_mislabelled, _json_mode, _tools, _long_text, _dimensions, _audio, _text_tasks)

TOKEN = "fuzz-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def fuzz(
    strategy: Any,
    n: int,
    base_url: str,
    skip: list[Any],
    label: str,
    counter: collections.Counter[str],
    failures: list[str],
) -> None:
    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        counter["cases"] += 1
        excluded = list(skip)
        if any(f(case) for f in KNOWN_REFUSALS):
            excluded.append(schemathesis.checks.positive_data_acceptance)
        if _undocumented_query(case):
            excluded.append(schemathesis.checks.negative_data_rejection)
        try:
            response = case.call_and_validate(
                base_url=base_url, headers=AUTH, timeout=60, excluded_checks=excluded
            )
            counter[f"{response.status_code // 100}xx"] += 1
        except FailureGroup as e:
            counter["failures"] += 1
            failures.append(f"{label}: {str(e).splitlines()[2:4]}")
            if os.environ.get("FUZZ_VERBOSE"):
                print(str(e)[:1500], file=sys.stderr)

    # Unsatisfiable: e.g. no invalid input exists for an operation without parameters
    with contextlib.suppress(Unsatisfiable):
        run()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=10_000, help="total, over all operations")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    server = start_server(
        args.out, "--token", TOKEN, env={**os.environ, "WAI_MAX_TOKENS": "1", "WAI_SLOTS": "4"}
    )
    stats: dict[str, collections.Counter[str]] = {}
    failures: list[str] = []
    t0 = time.monotonic()
    try:
        doc = requests.get(f"{server.url}/openapi.json", headers=AUTH, timeout=10).json()
        schema = schemathesis.openapi.from_dict(doc)
        operations = [op.ok() for op in schema.get_all_operations()]
        per_op = max(1, args.cases // (2 * len(operations)))
        excluded = [schemathesis.checks.missing_required_header, schemathesis.checks.ignored_auth]
        for op in operations:
            label = f"{op.method.upper()} {op.path}"
            counter = stats.setdefault(label, collections.Counter())
            skip = list(excluded)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz(
                    op.as_strategy(generation_mode=mode),
                    per_op,
                    server.url,
                    skip,
                    label,
                    counter,
                    failures,
                )
            print(label, dict(counter), flush=True)
        alive = requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
    finally:
        stop_server(server)
    elapsed = time.monotonic() - t0
    log = server.log.read_text()
    total = collections.Counter[str]()
    for c in stats.values():
        total.update(c)
    lines = ["| operation | cases | 2xx | 4xx | 5xx | failures |", "|---|---:|---:|---:|---:|---:|"]
    for label, c in [*stats.items(), ("all", total)]:
        lines.append(
            f"| {label} | {c['cases']} | {c['2xx']} | {c['4xx']} | {c['5xx']} | {c['failures']} |"
        )
    lines.append(
        f"\n{total['cases']} cases in {elapsed:.0f} s; server answering afterwards: "
        f"{alive}; tracebacks in its log: {log.count('Traceback')}"
    )
    report = "\n".join(lines)
    print(report)
    for f in failures[:20]:
        print("FAILURE", f)
    (args.out / "fuzz.md").write_text(report + "\n")
    (args.out / "fuzz-failures.json").write_text(json.dumps(failures, indent=1))


if __name__ == "__main__":
    main()
