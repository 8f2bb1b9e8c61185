"""llama.cpp through llama-cpp-python's low-level API, with continuous batching.

`LlamaCppEngine` owns one model and its context and runs the step loop on the thread that calls
`run` (the engine process's main thread, see worker.py; or a thread of the server, see
inthread.py). Requests and cancels arrive through an inbox (a thread-safe queue); the events a
step produces leave in one call to the sink, with the engine's counters. One loop iteration is
one step: decode tokens for every running sequence and chunks of new prompts, in as few
`llama_decode` calls as batch invariance allows (see scheduler.py). Each sequence owns a slot
(its llama.cpp seq_id) and a sampler chain; its end frees both, and its prompt's KV stays in the
slot as a prefix cache. Nothing here knows about asyncio.
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp as L
import numpy as np

from wai.engines.llamacpp import hardware, probe
from wai.engines.llamacpp.config import LlamaCppConfig
from wai.engines.llamacpp.draft import DraftModel
from wai.engines.llamacpp.embedder import LlamaCppEmbedder
from wai.engines.llamacpp.gguf import (
    LlamaTokenizer,
    kv_cache_bytes,
    load_model,
    model_metadata,
    read_metadata,
)
from wai.engines.llamacpp.output import Output
from wai.engines.llamacpp.params import (
    LoadPlan,
    context_params,
    fallbacks,
    free_context,
    model_params,
    new_context,
    time_rows,
    warm_up,
)
from wai.engines.llamacpp.prompt_cache import PromptCache, last_cut
from wai.engines.llamacpp.sampling import (
    Chain,
    ChainPool,
    greedy_tokens,
    greedy_verify,
    is_plain_greedy,
    step_logits,
)
from wai.engines.llamacpp.scheduler import Scheduler, Seq, Work
from wai.engines.llamacpp.speculation import ROWS_MEASURED, StepCosts
from wai.engines.llamacpp.types import (
    Counters,
    Delta,
    EmbedRequest,
    EngineInfo,
    Failed,
    Finished,
    FinishReason,
    ModelLoadError,
    PromptCacheStats,
    TokenEvent,
    TokenRequest,
    Usage,
)
from wai.weights.quantize import compute_path

log = logging.getLogger("wai.engines")

__all__ = ["LlamaCppEngine", "Sink", "StepLoop", "step_loop"]


def plan_load(config: LlamaCppConfig, weights: Path, skip_plans: int = 0) -> tuple[LoadPlan, str]:
    """The load plan for this machine, checked by the warm-up probe (in a child process the
    first time), and what the probe found. `skip_plans` skips that many of the fallback plans (the
    supervisor's step down after repeated crashes); the safest one is always left."""
    cpu = hardware.cpu()
    extra, why = hardware.use_extra_buffers(
        config.extra_buffers, hardware.build_has_amx(hardware.system_info()), cpu.has_amx
    )
    first = LoadPlan(
        weights,
        weights != config.path,
        extra,
        hardware.gpu_layers(config.gpu_layers, hardware.gpu_available()),
    )
    advice = hardware.libstdcxx_advice(first.gpu_layers, hardware.process_maps())
    if advice:
        log.warning("%s: %s", config.name, advice)
    identity = {
        "llama_cpp": L.__version__,
        "build": hardware.system_info(),
        "cpu": [cpu.arch, cpu.model, sorted(cpu.flags)],
    }
    n_ctx = max(64, min(config.n_ctx_seq, 512))
    run = {
        "n_ctx": n_ctx,
        "n_batch": min(config.n_batch, n_ctx),
        "threads": config.n_threads,
        "flash_attn": config.flash_attn,
        "fault": config.probe_fault,
    }
    plans = fallbacks(first, config.path, skip=skip_plans)
    verdict = probe.choose(plans, run=run, identity=identity, cache_dir=config.cache_dir)
    if verdict.plan.extra_buffers == extra:
        return verdict.plan, f"{verdict.note}; extra buffers: {why}"
    return verdict.plan, verdict.note


# --- inbox messages -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Submit:
    request: TokenRequest


@dataclass(frozen=True, slots=True)
class _Cancel:
    request_id: int


class _Stop:
    pass


_Message = _Submit | _Cancel | _Stop

# Called on the engine thread once per step (and at the end of a sequence cancelled while
# idle): the events of that step, in order, as (request id, event), and the counters after it.
Sink = Callable[[list[tuple[int, TokenEvent]], Counters], None]


class LlamaCppEngine:
    """One model, its context and its scheduler; `run` is the step loop."""

    tokenizer: LlamaTokenizer

    def __init__(
        self,
        config: LlamaCppConfig,
        sink: Sink,
        *,
        skip_plans: int = 0,
        step_costs: dict[int, float] | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self._sink = sink
        # decode call times, by rows: given when an earlier process of this model with the same
        # plan measured them (a restart), else measured in `run`; empty without speculation
        self.step_costs: dict[int, float] = dict(step_costs or {})
        source_meta = read_metadata(config.path)  # refuses a missing or non-GGUF file
        weights = compute_path(config.path, source_meta, config.weights, config.cache_dir)
        self.plan, probe_note = plan_load(config, weights, skip_plans)
        self.weights_path = self.plan.weights
        self.weights_bytes = self.plan.weights.stat().st_size
        self._model = load_model(self.plan.weights, model_params(self.plan))
        self.tokenizer = LlamaTokenizer(self._model)
        self.metadata = model_metadata(self._model)
        self.chat_template = self.metadata.get("tokenizer.chat_template")
        n_ctx_train = int(L.llama_model_n_ctx_train(self._model))
        self.n_ctx_seq = min(config.n_ctx_seq, n_ctx_train) if n_ctx_train > 0 else config.n_ctx_seq

        n_ctx = self.n_ctx_seq * config.n_slots
        self._ctx = self._new_context(n_ctx)
        self._mem = L.llama_get_memory(self._ctx)
        self.kv_bytes = kv_cache_bytes(self.metadata, n_ctx)
        self._draft = self._load_draft()
        self.info = EngineInfo(
            device=hardware.placement(self.plan.gpu_layers),
            gpu_layers=self.plan.gpu_layers,
            extra_buffers=self.plan.extra_buffers,
            weights=self.plan.weights.name,
            converted=self.plan.converted,
            probe=probe_note,
        )
        self._cache = PromptCache(
            hardware.prompt_cache_bytes(config.prompt_cache_bytes, hardware.available_memory())
        )
        self._log_loaded()
        self._batch = L.llama_batch_init(config.n_batch, 0, 1)
        self._chains = ChainPool(config.sampling_threads or config.n_threads or os.cpu_count() or 1)
        self._scheduler = self._new_scheduler()
        self._reuse = {"slot": 0, "copy": 0, "ram": 0, "none": 0}
        # each slot's last prompt's logits (its first token was sampled from them): an exact
        # repeat of that prompt starts from them (Scheduler.whole)
        self._first_logits: list[np.ndarray | None] = [None] * config.n_slots
        self._inbox: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        # Events produced since the last flush, handed to the sink in one call.
        self._outbox: list[tuple[int, TokenEvent]] = []
        # requests by how they ended; speculative decoding's drafted and accepted tokens
        self._counts = dict.fromkeys(("finished", "cancelled", "failed", "drafted", "accepted"), 0)
        self._generated = 0
        self._steps = 0
        self._decode_ns = 0
        self._sent = Counters()

    def _log_loaded(self) -> None:
        log.info(
            "%s: on %s, %s, weights %s; %d slots x %d tokens, KV cache %.0f MiB, prompt cache "
            "in RAM up to %.0f MiB; %s",
            self.name,
            self.info.device,
            self.plan.describe(),
            self.plan.weights.name,
            self.config.n_slots,
            self.n_ctx_seq,
            self.kv_bytes / 2**20,
            self._cache.limit / 2**20,
            self.info.probe,
        )

    def _load_draft(self) -> DraftModel | None:
        """The configured draft model, in this process (its memory counted as the model's);
        one that cannot draft for this model fails the load."""
        cfg = self.config
        if cfg.draft_path is None or cfg.speculation == "off":
            return None
        try:
            # computed as the model is (weights.py: a Q4_1 file as Q8_0)
            meta = read_metadata(cfg.draft_path)  # refuses a missing or non-GGUF file
            path = compute_path(cfg.draft_path, meta, cfg.weights, cfg.cache_dir)
            draft = DraftModel(
                path,
                self.tokenizer,
                cfg.path,
                n_slots=cfg.n_slots,
                n_ctx_seq=self.n_ctx_seq,
                n_batch=cfg.n_batch,
                threads=cfg.n_threads,
                flash_attn=cfg.flash_attn,
                model_params=model_params(self.plan),
            )
        except ModelLoadError:
            L.llama_free(self._ctx)
            L.llama_model_free(self._model)
            raise
        self.weights_bytes += draft.weights_bytes
        self.kv_bytes += draft.kv_bytes
        log.info("%s: drafts with %s", self.name, cfg.draft_path.name)
        return draft

    def _new_scheduler(self) -> Scheduler:
        cfg = self.config
        gpus = any(d.kind in ("gpu", "igpu") for d in hardware.devices())
        return Scheduler(
            cfg.n_slots,
            cfg.n_batch,
            cfg.prefill_chunk,
            background_shares_steps=hardware.background_shares_steps(self.plan.gpu_layers, gpus),
            marks=self.tokenizer.end_of_turn_ids(),
            cache=self._cache,
            draft_max=cfg.draft_max,
            draft_min=cfg.draft_min,
            padded=cfg.batch_invariant,
            n_ctx_seq=self.n_ctx_seq,
            proposer=self._draft,
            split_kv_cells=(
                hardware.split_kv_cells(cfg.flash_attn, self.plan.gpu_layers, gpus)
                if cfg.batch_invariant
                else None  # one stream for all: outputs vary with load anyway
            ),
            alone_rows=hardware.rows_computed_alone(cfg.flash_attn, self.plan.gpu_layers, gpus),
        )

    def _new_context(self, n_ctx: int) -> Any:
        """The llama_context of all slots (the model is freed if there cannot be one)."""
        cfg = self.config
        cparams = context_params(
            n_ctx=n_ctx,
            n_batch=cfg.n_batch,
            n_seq=cfg.n_slots,
            threads=cfg.n_threads,
            flash_attn=cfg.flash_attn,
            unified_kv=not cfg.batch_invariant,
        )
        return new_context(self._model, cparams, cfg.path)

    # -- any thread --

    def submit(self, request: TokenRequest | EmbedRequest) -> None:
        """Queue a request (already admitted and checked against n_ctx_seq by the caller)."""
        assert isinstance(request, TokenRequest), "a generating engine embeds nothing"
        self._inbox.put(_Submit(request))

    def cancel(self, request_id: int) -> None:
        self._inbox.put(_Cancel(request_id))

    def stop(self) -> None:
        """Make `run` end: whatever is still running or queued ends with an error event."""
        self._inbox.put(_Stop())

    def counters(self) -> Counters:
        sched = self._scheduler
        return Counters(
            busy=len(sched.running),
            waiting=len(sched.waiting),
            finished=self._counts["finished"],
            cancelled=self._counts["cancelled"],
            failed=self._counts["failed"],
            generated=self._generated,
            steps=self._steps,
            decode_ns=self._decode_ns,
            prompt_cache=PromptCacheStats(
                hits_slot=self._reuse["slot"],
                hits_copy=self._reuse["copy"],
                hits_ram=self._reuse["ram"],
                misses=self._reuse["none"],
                bytes=self._cache.bytes,
                entries=len(self._cache),
            ),
            drafted=self._counts["drafted"],
            accepted=self._counts["accepted"],
        )

    # -- the engine thread --

    def run(self, ready: Callable[[int], None]) -> None:
        """Warm up, report it through `ready(rc)` (0: passed), then step until `stop`. Returns
        at once when the warm-up failed."""
        # Before the first request, as llama-server does: the first decode allocates compute
        # buffers and touches every weight, and a failure shows here, not to a client. On this
        # thread, the one that decodes from now on: llama.cpp's OpenMP thread team belongs to
        # the thread that first computes, and a second team (a warm-up on another thread)
        # measured 30% slower decoding on 2 cores.
        cfg = self.config
        rc = warm_up(self._ctx, self.tokenizer.n_vocab, min(32, cfg.n_batch, self.n_ctx_seq - 1))
        if rc == 0 and cfg.speculation != "off":
            self._scheduler.costs = self._step_costs()
        ready(rc)
        if rc != 0:
            return
        sched = self._scheduler
        while self._drain_inbox(block=sched.idle()):
            for seq in sched.preempt():
                self._yield_slot(seq)
            sched.admit(self._prepare)
            for seq in sched.caught_up():
                self._bring(seq)
            plan = sched.schedule()
            if plan:
                self._step(plan)
            self._flush(force=True)
        # Stopping: whatever is still here, or was queued behind the stop, ends now.
        while True:
            try:
                msg = self._inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(msg, _Submit):
                sched.add(Seq(msg.request))
        for seq in [*sched.running, *sched.waiting]:
            self._end(seq, "error", "the engine stopped before this request finished")
        self._flush(force=True)

    def _step_costs(self) -> StepCosts | None:
        """Time calls of a few sizes, for speculative decoding's cost model (none: no drafts).
        A restart takes the times its first process measured instead: it is the same plan on
        the same machine, and a restart is often when the machine is busiest (the crash test's
        other model under load made these ten calls take 7 s instead of 0.2 s)."""
        timings, how = self.step_costs, "as this plan's first process measured"
        if not timings:
            cap = min(self.config.n_batch, self.n_ctx_seq - 1)
            sizes = [n for n in ROWS_MEASURED if n <= cap]
            timings, how = time_rows(self._ctx, self.tokenizer.n_vocab, sizes), "measured"
        if not timings:
            log.warning("%s: timing decode calls failed; no speculative decoding", self.name)
            return None
        self.step_costs = timings
        log.info(
            "%s: a decode call of %s rows takes %s ms (%s)",
            self.name,
            "/".join(str(n) for n in timings),
            "/".join(f"{1e3 * t:.1f}" for t in timings.values()),
            how,
        )
        return StepCosts(timings)

    def free(self) -> None:
        """Free the context and the model (after `run` has returned, or instead of it)."""
        if self._draft is not None:
            self._draft.free()
            self._draft = None
        if self._ctx:
            self._chains.close()
            free_context(self._batch, self._ctx, self._model)
            self._ctx = None

    def _flush(self, force: bool = False) -> None:
        """Hand the pending events to the sink; with force, the counters even without events
        when they changed (a sequence was admitted: the caller's stats should show it)."""
        if not self._outbox and not force:
            return
        counters = self.counters()
        if self._outbox or counters != self._sent:
            events, self._outbox = self._outbox, []
            self._sent = counters
            self._sink(events, counters)

    def _prepare(self, seq: Seq) -> None:
        """A newly admitted sequence: keep what its slot held in RAM when the scheduler says
        so, bring the reused prefix into the slot, new sampler."""
        if seq.evicts:
            self._keep(seq.slot, seq.evicts)
        self._bring(seq)
        req = seq.request
        # plain greedy needs no sampler chain: its rows are picked together (see _greedy)
        seq.output = Output(
            self.tokenizer, stop=req.stop, max_tokens=req.max_tokens, ignore_eos=req.ignore_eos
        )
        if is_plain_greedy(req.sampling):
            seq.sampler = None
        else:
            try:
                seq.sampler = Chain(req.sampling, self.tokenizer.n_vocab, self.tokenizer)
            except ValueError as e:  # a grammar llama.cpp refuses (the server checks it first)
                self._end(seq, "error", str(e))
                return
        if not seq.prefilling:  # an exact repeat: its first token from the kept logits
            self._first_token(seq)

    def _first_token(self, seq: Seq) -> None:
        logits = self._first_logits[seq.slot]
        if logits is None:  # never so (Scheduler.whole): compute the last chunk again
            seq.cached = seq.n_past = last_cut(seq.cuts, len(seq.request.prompt_tokens) - 1)
            L.llama_memory_seq_rm(self._mem, seq.slot, seq.cached, -1)
            return
        if seq.sampler is None:
            token = greedy_tokens(logits[None, :], [0])[0]
        else:
            token = self._chains.sample([(seq.sampler, logits)])[0]
        self._accept(seq, token)

    def _bring(self, seq: Seq) -> None:
        """Make the slot's KV hold exactly the `cached` prompt tokens the scheduler chose: its
        own (the rest dropped), a copy of another slot's, or the RAM cache's. When that cannot
        be done, the sequence starts from scratch."""
        reuse, slot = seq.reuse, seq.slot
        ok = True
        if reuse is not None and reuse.kind == "copy":
            ok = self._set_state(slot, self._get_state(reuse.source))
        elif reuse is not None and reuse.kind == "ram":
            state = self._cache.get(reuse.entry) if reuse.entry is not None else None
            ok = state is not None and self._set_state(slot, state)
        if ok and L.llama_memory_seq_rm(self._mem, slot, seq.cached, -1):
            return
        # partial removal is impossible for some (recurrent) models: start from scratch
        L.llama_memory_seq_rm(self._mem, slot, -1, -1)
        seq.cached = seq.n_past = 0
        seq.leader = None

    def _keep(self, slot: int, tokens: Sequence[int]) -> None:
        """Copy the prompt prefix a slot holds into the RAM cache, before it is reused."""
        if L.llama_memory_seq_rm(self._mem, slot, len(tokens), -1):  # its generated tokens
            self._cache.put(tokens, self._get_state(slot))

    def _get_state(self, slot: int) -> bytearray:
        """The KV of one slot, as llama.cpp saves a sequence (bit-for-bit)."""
        size = L.llama_state_seq_get_size(self._ctx, slot)
        state = bytearray(size)
        buf = (ctypes.c_uint8 * size).from_buffer(state)
        written = L.llama_state_seq_get_data(self._ctx, buf, size, slot)
        return state if written == size else bytearray()

    def _set_state(self, slot: int, state: bytearray) -> bool:
        """A slot's KV replaced by a saved one (the positions are the saved ones)."""
        if not state:
            return False
        # llama.cpp clears the slot's cells first (state_read: seq_rm of the destination)
        buf = (ctypes.c_uint8 * len(state)).from_buffer(state)
        return bool(L.llama_state_seq_set_data(self._ctx, buf, len(state), slot))

    def _drain_inbox(self, block: bool) -> bool:
        """Apply pending messages; False once asked to stop."""
        try:
            msg = self._inbox.get() if block else self._inbox.get_nowait()
            while True:
                if isinstance(msg, _Stop):
                    return False
                if isinstance(msg, _Submit):
                    self._scheduler.add(Seq(msg.request))
                else:
                    seq = self._scheduler.find(msg.request_id)
                    if seq is not None:
                        self._end(seq, "cancelled")
                msg = self._inbox.get_nowait()
        except queue.Empty:
            return True

    def _step(self, plan: list[Work]) -> None:
        """Batch-invariant: one llama_decode per group of equal-length works (all decode rows
        are one group), ordered by slot. With one KV stream per sequence, llama.cpp splits a
        batch into ubatches of consecutive sequences contributing equally many tokens; equal
        lengths keep every prompt chunk whole, and a chunk computes the same whoever shares its
        call (measured), which is what keeps outputs independent of load (see scheduler.py).
        Otherwise (one shared KV stream, which llama.cpp computes as a single ubatch): the whole
        step in one call, so a prompt chunk costs no extra pass over the weights."""
        if not self.config.batch_invariant:
            self._run(sorted(plan, key=lambda w: w.seq.slot))
            return
        groups: dict[int, list[Work]] = {}
        for work in plan:
            groups.setdefault(len(work.tokens), []).append(work)
        for works in groups.values():
            self._run(sorted(works, key=lambda w: w.seq.slot))

    def _run(self, works: list[Work]) -> None:
        outputs = self._fill_batch(works)
        t0 = time.perf_counter_ns()
        rc = L.llama_decode(self._ctx, self._batch)
        elapsed = time.perf_counter_ns() - t0
        self._decode_ns += elapsed
        self._steps += 1
        if rc != 0:
            log.error("llama_decode failed (rc=%d) for %d sequences", rc, len(works))
            for work in works:
                self._end(work.seq, "error", f"inference failed (llama_decode returned {rc})")
            return
        picked = self._sample(works, outputs)
        costs = self._scheduler.costs
        if costs is not None and all(w.decode for w in works):
            costs.observe(self._batch.n_tokens, elapsed / 1e9)
        for work in works:
            tokens = picked.get(work.seq.id, [])
            if work.decode:
                self._verified(work, tokens)
            else:
                work.seq.n_past += len(work.tokens)
            for token in tokens:
                if not self._accept(work.seq, token):
                    break
        self._flush()  # a new prompt's first token goes out now, not after the whole step

    def _verified(self, work: Work, tokens: list[int]) -> None:
        """A decode work's KV: its first token and the accepted drafted ones stay, the rows
        after them go; the sequence's drafts counted."""
        seq = work.seq
        seq.n_past += len(tokens)
        if len(tokens) < len(work.tokens):
            L.llama_memory_seq_rm(self._mem, seq.slot, seq.n_past, -1)
        if work.drafted:
            accepted = min(len(tokens) - 1, work.drafted)
            seq.acceptance.update(work.drafted, accepted)
            seq.drafted += work.drafted
            seq.accepted += accepted
            self._counts["drafted"] += work.drafted
            self._counts["accepted"] += accepted

    def _sample(self, works: list[Work], outputs: list[int]) -> dict[int, list[int]]:
        """The tokens each sequence of this call gets (request id -> tokens): one from a
        prompt's last row or a plain decode row, those a verification accepts and the one after
        (sampling.verified). Plain-greedy rows in vectorised argmaxes, the others' chains in
        parallel. Outputs are numbered in batch order among the rows that have logits."""
        greedy: list[tuple[int, int, list[int]]] = []  # (request id, first output, draft)
        chained: list[tuple[int, Chain, int, list[int]]] = []
        first = 0
        for work, n in zip(works, outputs, strict=True):
            if n:
                draft = work.tokens[1:] if work.decode else []
                if work.seq.sampler is None:
                    greedy.append((work.seq.id, first, draft))
                else:
                    chained.append((work.seq.id, work.seq.sampler, first, draft))
            first += n
        if not first:
            return {}
        logits = step_logits(self._ctx, self.tokenizer.n_vocab, first)
        self._keep_first_logits(works, outputs, logits)
        picked: dict[int, list[int]] = {}
        plain = [(rid, out) for rid, out, draft in greedy if not draft]
        if plain:
            tokens = greedy_tokens(logits, [out for _, out in plain])
            picked.update((rid, [tok]) for (rid, _), tok in zip(plain, tokens, strict=True))
        for rid, out, draft in greedy:
            if draft:
                picked[rid] = greedy_verify(logits, out, draft)
        if chained:
            jobs = [(c, logits[out : out + len(d) + 1], d) for _, c, out, d in chained]
            results = self._chains.verify(jobs)
            picked.update((rid, r) for (rid, *_), r in zip(chained, results, strict=True))
        return picked

    def _keep_first_logits(self, works: list[Work], outputs: list[int], logits: np.ndarray) -> None:
        """The logits of each prompt this call finished (see Scheduler.whole)."""
        first = 0
        for work, n in zip(works, outputs, strict=True):
            ends = work.start + len(work.tokens) == len(work.seq.request.prompt_tokens)
            if n and not work.decode and ends:
                self._first_logits[work.seq.slot] = logits[first].copy()
            first += n

    def _fill_batch(self, plan: list[Work]) -> list[int]:
        """Write the plan into the llama_batch; returns each work's rows with logits (its
        last ones)."""
        b = self._batch
        i = 0
        outputs = []
        for work in plan:
            slot, n = work.seq.slot, len(work.tokens)
            wanted = work.outputs
            for k, tok in enumerate(work.tokens):
                b.token[i] = tok
                b.pos[i] = work.start + k
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = slot
                b.logits[i] = int(k >= n - wanted)
                i += 1
            outputs.append(wanted)
        b.n_tokens = i
        return outputs

    def _accept(self, seq: Seq, tok: int) -> bool:
        """A token the sequence generated; False when it ended the sequence."""
        seq.generated.append(tok)
        text, reason = seq.output.push(tok)
        if text is not None and seq.request.final_only and len(seq.generated) > 1:
            seq.held.append(text)  # sent with the end
        elif text is not None:
            self._outbox.append((seq.id, Delta(text, tok)))
        if reason is not None:
            self._end(seq, reason)
            return False
        return True

    def _yield_slot(self, seq: Seq) -> None:
        """A background sequence the scheduler took out for an interactive one: its caller
        runs it again later (its prompt's KV stays in the slot as a prefix cache)."""
        if seq.sampler is not None:
            seq.sampler.free()
            seq.sampler = None
        self._generated += len(seq.generated)
        message = "preempted: an interactive request needed the slot"
        self._outbox.append((seq.id, Failed(message, preempted=True)))

    def _end(self, seq: Seq, reason: FinishReason, error: str | None = None) -> None:
        """The one way a sequence leaves the engine, whatever the reason: out of the scheduler
        (a failed one's KV is cleared, others' stay as a prefix cache), sampler freed, counted,
        and the caller told last, so that a caller who sees the end also sees the slot free."""
        failed = reason == "error"
        running = seq.slot >= 0 and self._scheduler.slots[seq.slot] is seq
        self._scheduler.remove(seq, keep_cache=not failed)
        if failed and running:
            L.llama_memory_seq_rm(self._mem, seq.slot, -1, -1)
        if seq.sampler is not None:
            seq.sampler.free()
            seq.sampler = None
        self._generated += len(seq.generated)
        self._counts[
            "failed" if failed else "cancelled" if reason == "cancelled" else "finished"
        ] += 1
        if seq.reuse is not None:
            self._reuse[seq.reuse.kind if seq.cached else "none"] += 1
        if failed:
            self._outbox.append((seq.id, Failed(error or "inference failed")))
            return
        tail = seq.output.tail() if seq.output is not None else ""
        text = "".join([*seq.held, tail])
        if text:
            self._outbox.append((seq.id, Delta(text, seq.generated[-1] if seq.held else -1)))
        usage = Usage(
            len(seq.request.prompt_tokens),
            len(seq.generated),
            seq.cached,
            seq.drafted,
            seq.accepted,
        )
        self._outbox.append((seq.id, Finished(reason, usage, seq.queued)))


StepLoop = LlamaCppEngine | LlamaCppEmbedder


def step_loop(
    config: LlamaCppConfig,
    sink: Sink,
    *,
    skip_plans: int = 0,
    step_costs: dict[int, float] | None = None,
) -> StepLoop:
    """The step loop of a model: one that generates, or one that embeds (config.kind).
    `step_costs`: decode call times an earlier process measured (LlamaCppEngine.step_costs)."""
    if config.kind == "embed":
        return LlamaCppEmbedder(config, sink, skip_plans=skip_plans)
    return LlamaCppEngine(config, sink, skip_plans=skip_plans, step_costs=step_costs)
