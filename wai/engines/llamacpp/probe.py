"""The warm-up probe: a model's first decode on a new machine runs in a child process.

A native crash (SIGSEGV in a kernel the CPU or compiler gets wrong, an abort in a GPU backend)
cannot be caught inside the process it happens in. So the first time a given llama.cpp build,
CPU and weights file meet, a child process loads the model with the planned settings and decodes
a few tokens. If it dies from a signal, the next, safer plan is tried (see params.fallbacks);
the verdict is kept in `cache_dir/probes/`, so later starts go straight to the plan that worked.
If every plan crashes, the model counts as failed, with the reason, and the server goes on.

Fault injection (tests, and to see the fallback work): `engine.probe_fault` (WAI_PROBE_FAULT)
makes the child abort, as a crashing kernel would, when its plan matches: a comma-separated
list of `any`, `extra_buffers`, `converted`, `gpu`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wai.engines.llamacpp.params import LoadPlan
from wai.engines.llamacpp.types import ModelLoadError
from wai.engines.process.child import (
    EXIT_LOAD_FAILED,
    child_env,
    describe_exit,
    is_crash,
    module_command,
)

log = logging.getLogger("wai.engines")

PROBE_TIMEOUT = 900.0  # seconds; a 70B model can take minutes to read from disk


@dataclass(frozen=True, slots=True)
class Verdict:
    plan: LoadPlan
    note: str  # what the probe found, for the log and /healthz


def fault_matches(fault: str, plan: LoadPlan) -> bool:
    wanted = {f.strip() for f in fault.split(",") if f.strip()}
    return bool(
        wanted & {"any"}
        or ("extra_buffers" in wanted and plan.extra_buffers)
        or ("converted" in wanted and plan.converted)
        or ("gpu" in wanted and plan.gpu_layers > 0)
    )


def cache_key(identity: dict[str, Any], plans: list[LoadPlan]) -> str:
    files = []
    for plan in plans:
        try:
            st = plan.weights.stat()
            files.append([str(plan.weights), st.st_size, st.st_mtime_ns])
        except OSError:
            files.append([str(plan.weights), None, None])
    blob = json.dumps(
        {"identity": identity, "plans": [p.as_dict() for p in plans], "files": files},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def choose(
    plans: list[LoadPlan], *, run: dict[str, Any], identity: dict[str, Any], cache_dir: Path
) -> Verdict:
    """The first plan whose warm-up survives. `run`: the child's context settings (n_ctx,
    n_batch, threads, flash_attn, fault); `identity`: what else decides the verdict (the
    llama.cpp build, the CPU)."""
    path = cache_dir / "probes" / f"{cache_key({**identity, **run}, plans)}.json"
    try:
        saved = json.loads(path.read_text())
        return Verdict(LoadPlan.from_dict(saved["plan"]), f"{saved['note']} (remembered)")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    failures: list[str] = []
    for plan in plans:
        rc, tail = _run_child(plan, run)
        if rc == 0:
            note = (
                "warm-up passed"
                if not failures
                else f"warm-up fell back: {'; '.join(failures)}; chose {plan.describe()}"
            )
            _save(path, plan, note)
            return Verdict(plan, note)
        if not is_crash(rc):
            # The file itself does not load (or the probe could not run): the engine's own
            # load reports the reason; nothing is remembered.
            log.info("warm-up probe %s (%s); loading as planned", describe_exit(rc), tail)
            return Verdict(plans[0], f"warm-up probe inconclusive: {tail or describe_exit(rc)}")
        failures.append(f"{plan.describe()} {describe_exit(rc)}")
        log.warning(
            "warm-up with %s %s; trying a safer setting", plan.describe(), describe_exit(rc)
        )
    raise ModelLoadError(
        "the engine crashed on this machine with every setting tried: " + "; ".join(failures)
    )


def _save(path: Path, plan: LoadPlan, note: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(
            json.dumps(
                {
                    "plan": plan.as_dict(),
                    "note": note,
                    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            )
        )
        tmp.replace(path)
    except OSError as e:  # a read-only cache costs a probe per start, nothing more
        log.warning("cannot remember the warm-up verdict in %s: %s", path, e)


def _run_child(plan: LoadPlan, run: dict[str, Any]) -> tuple[int, str]:
    cmd = module_command("wai.engines.llamacpp.probe", json.dumps({"plan": plan.as_dict(), **run}))
    try:
        proc = subprocess.run(
            cmd, env=child_env(), capture_output=True, text=True, timeout=PROBE_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return 1, f"no answer in {PROBE_TIMEOUT:.0f} s"
    lines = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()]
    return proc.returncode, lines[-1].strip()[:300] if lines else ""


def _child(spec: dict[str, Any]) -> int:
    """In the child: load, warm up, exit 0. A crash kills this process, not the server."""
    import llama_cpp as L

    from wai.engines.llamacpp.gguf import load_model
    from wai.engines.llamacpp.params import context_params, model_params, warm_up

    plan = LoadPlan.from_dict(spec["plan"])
    try:
        model = load_model(plan.weights, model_params(plan))
    except ModelLoadError as e:
        print(e, file=sys.stderr)
        return EXIT_LOAD_FAILED
    n_ctx, n_batch = int(spec["n_ctx"]), int(spec["n_batch"])
    ctx = L.llama_init_from_model(
        model,
        context_params(
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_seq=1,
            threads=int(spec["threads"]),
            flash_attn=bool(spec["flash_attn"]),
        ),
    )
    if not ctx:
        print("could not create a context", file=sys.stderr)
        return EXIT_LOAD_FAILED
    if fault_matches(str(spec.get("fault", "")), plan):
        print("fault injected (engine.probe_fault): aborting", file=sys.stderr, flush=True)
        os.abort()
    vocab = L.llama_model_get_vocab(model)
    rc = warm_up(ctx, int(L.llama_vocab_n_tokens(vocab)), min(32, n_batch, n_ctx - 1))
    if rc != 0:
        print(f"llama_decode returned {rc}", file=sys.stderr)
        return EXIT_LOAD_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(_child(json.loads(sys.argv[1])))
