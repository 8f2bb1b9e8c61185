"""llama.cpp model and context parameters, in one place for the engine and its warm-up probe
(which must load the model exactly as the engine will)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import llama_cpp as L

from wai.engines.llamacpp.types import ModelLoadError


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """How to load one model: which file, which buffer types, how many layers on the GPU."""

    weights: Path  # the file llama.cpp loads
    converted: bool  # weights is wai's Q8_0 conversion of the configured file
    extra_buffers: bool  # llama.cpp's extra (repacking, AMX) buffer types
    gpu_layers: int

    def describe(self) -> str:
        return (
            f"extra buffers {'on' if self.extra_buffers else 'off'}, "
            f"{'Q8_0 conversion' if self.converted else 'the file as is'}, "
            f"{self.gpu_layers} GPU layers"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "weights": str(self.weights)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoadPlan:
        return cls(
            Path(d["weights"]), bool(d["converted"]), bool(d["extra_buffers"]), int(d["gpu_layers"])
        )


def fallbacks(first: LoadPlan, original: Path, skip: int = 0) -> list[LoadPlan]:
    """The plans to try, safest last: as configured; without extra buffer types; with the
    file's own weights instead of the conversion; on the CPU alone. The one ladder of safer
    settings: the warm-up probe walks down it within one start, and the engine's supervisor,
    after repeated crashes in service, starts the next engine `skip` rungs down (the safest
    plan is always left)."""
    plain = replace(first, extra_buffers=False)
    own = replace(plain, weights=original, converted=False)
    plans: list[LoadPlan] = []
    for plan in (first, plain, own, replace(own, gpu_layers=0)):
        if plan not in plans:
            plans.append(plan)
    return plans[min(skip, len(plans) - 1) :]


def model_params(plan: LoadPlan) -> Any:
    params = L.llama_model_default_params()
    params.use_extra_bufts = plan.extra_buffers
    params.n_gpu_layers = plan.gpu_layers
    return params


def context_params(
    *,
    n_ctx: int,
    n_batch: int,
    n_seq: int,
    threads: int,
    flash_attn: bool,
    unified_kv: bool = False,
) -> Any:
    cparams = L.llama_context_default_params()
    cparams.n_ctx = n_ctx
    cparams.n_batch = n_batch
    cparams.n_ubatch = n_batch  # one llama_decode call = one ubatch
    cparams.n_seq_max = n_seq
    threads = threads or os.cpu_count() or 1
    cparams.n_threads = threads
    cparams.n_threads_batch = threads
    # One KV stream per sequence: a decode row's result then does not depend on which other
    # sequences share the batch (measured bit-identical with SmolLM2, flash attention on or
    # off), and a sequence can never take another's cells. Unified: one stream for all, which
    # lets llama.cpp compute a batch of unequal works in one ubatch.
    cparams.kv_unified = unified_kv
    cparams.flash_attn_type = (
        L.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else L.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )
    cparams.no_perf = True
    return cparams


def new_context(model: Any, cparams: Any, path: Path) -> Any:
    """A llama_context of `model`; when llama.cpp cannot make one, the model is freed and the
    load fails (ModelLoadError naming the file)."""
    ctx = L.llama_init_from_model(model, cparams)
    if not ctx:
        L.llama_model_free(model)
        raise ModelLoadError(f"could not create a context for {path}")
    return ctx


def warm_up(ctx: Any, n_vocab: int, n_tokens: int) -> int:
    """Decode a short prompt of n_tokens (batched matmuls) and then one token (the single-row
    path) on sequence 0, then forget them. Returns llama_decode's first non-zero code, or 0.
    n_tokens + 1 must fit the sequence's context and n_tokens the batch."""
    batch = L.llama_batch_init(n_tokens, 0, 1)
    try:
        for rows, start in ((n_tokens, 0), (1, n_tokens)):
            for i in range(rows):
                batch.token[i] = (start + i) % n_vocab
                batch.pos[i] = start + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = int(i == rows - 1)
            batch.n_tokens = rows
            rc = int(L.llama_decode(ctx, batch))
            if rc != 0:
                return rc
        return 0
    finally:
        L.llama_memory_seq_rm(L.llama_get_memory(ctx), 0, -1, -1)
        L.llama_batch_free(batch)


def time_rows(ctx: Any, n_vocab: int, sizes: Sequence[int]) -> dict[int, float]:
    """Seconds one llama_decode takes for each number of rows in `sizes` (one sequence, every
    row's logits read, the best of two), for speculative decoding's cost model. Empty when a
    decode fails. Uses and clears sequence 0."""
    batch = L.llama_batch_init(max(sizes), 0, 1)
    mem = L.llama_get_memory(ctx)
    timings: dict[int, float] = {}
    try:
        for rows in sizes:
            best = float("inf")
            for _ in range(2):
                for i in range(rows):
                    batch.token[i] = (7 * i + 1) % n_vocab
                    batch.pos[i] = i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = 1
                batch.n_tokens = rows
                t0 = time.perf_counter()
                if L.llama_decode(ctx, batch) != 0:
                    return {}
                L.llama_get_logits(ctx)  # waits for the computation (asynchronous backends)
                best = min(best, time.perf_counter() - t0)
                L.llama_memory_seq_rm(mem, 0, -1, -1)
            timings[rows] = best
        return timings
    finally:
        L.llama_memory_seq_rm(mem, 0, -1, -1)
        L.llama_batch_free(batch)


def free_context(batch: Any, ctx: Any, model: Any) -> None:
    """Free a llama_batch, its context and the model, in that order."""
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)
