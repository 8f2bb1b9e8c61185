"""llama.cpp in-process, through llama-cpp-python's low-level API, with continuous batching.

The model lives on one worker thread. Requests arrive through an inbox (a thread-safe queue),
events leave through each request's asyncio queue (`call_soon_threadsafe`), so the event loop
never waits on inference. One loop iteration is one `llama_decode` over a batch that mixes one
decode token per running sequence with chunks of new prompts (see scheduler.py). Each sequence
owns a slot (its llama.cpp seq_id) and a sampler chain; retiring it frees both, KV cells included.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import queue
import random
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp as L

from wai.engine.base import (
    Backend,
    Delta,
    EngineBusy,
    EngineError,
    EngineStats,
    Event,
    Failed,
    Finished,
    FinishReason,
    Generation,
    GenerationRequest,
    PromptTooLong,
    SamplingParams,
    Tokenizer,
    Usage,
)
from wai.engine.scheduler import Scheduler, Sequence, Work
from wai.engine.weights import WeightsMode, compute_path
from wai.text import IncrementalDetokenizer, StopMatcher

log = logging.getLogger("wai.engine")

_LLAMA_VOCAB_TYPE_SPM = 1
_PENALTY_LAST_N = 64


class ModelLoadError(EngineError):
    """The file is missing, not a GGUF, truncated or otherwise unloadable."""


@dataclass(frozen=True, slots=True)
class LlamaCppConfig:
    path: Path
    name: str
    n_slots: int = 8
    n_ctx_seq: int = 2048  # context per sequence; KV memory grows with n_slots * n_ctx_seq
    n_batch: int = 512  # per-step token budget (decode tokens + prefill chunks)
    prefill_chunk: int = 128  # prompts are computed in aligned chunks of this many tokens
    n_threads: int = 0  # 0: all cores
    max_waiting: int = 64  # bounded waiting queue; beyond it submit raises EngineBusy
    flash_attn: bool = True
    weights: WeightsMode = "auto"  # see weights.py
    cache_dir: Path = Path.home() / ".cache" / "wai"


# --- process-wide llama.cpp setup -------------------------------------------------------------

_init_lock = threading.Lock()
_initialised = False


@L.llama_log_callback  # type: ignore[untyped-decorator]
def _llama_log(level: int, text: bytes, _user: Any) -> None:
    # ggml levels: 1 debug, 2 info, 3 warn, 4 error, 5 continuation. Keep only what matters.
    if level in (3, 4):
        log.log(logging.WARNING if level == 3 else logging.ERROR, "llama.cpp: %s",
                text.decode("utf-8", "replace").rstrip())


def _init_llama() -> None:
    global _initialised
    with _init_lock:
        if not _initialised:
            L.llama_log_set(_llama_log, ctypes.c_void_p(0))
            L.llama_backend_init()
            _initialised = True


def check_gguf(path: Path) -> None:
    """Refuse what is obviously not a GGUF before handing it to llama.cpp."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ModelLoadError(f"cannot read model file {path}: {e.strerror}") from e
    if magic != b"GGUF":
        raise ModelLoadError(f"{path} is not a GGUF file")


# --- tokenizer ----------------------------------------------------------------------------------


class LlamaTokenizer(Tokenizer):
    """Tokenizer over a loaded model's vocabulary; safe to call from any thread."""

    def __init__(self, model: Any) -> None:
        self._model = model  # keeps the model (and so the vocab) alive
        self.vocab = L.llama_model_get_vocab(model)
        self.n_vocab = int(L.llama_vocab_n_tokens(self.vocab))
        self.bos_id = int(L.llama_vocab_bos(self.vocab))
        self.eos_id = int(L.llama_vocab_eos(self.vocab))
        self.add_bos = bool(L.llama_vocab_get_add_bos(self.vocab))
        self.is_spm = int(L.llama_vocab_type(self.vocab)) == _LLAMA_VOCAB_TYPE_SPM

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (L.llama_token * cap)()
        n = L.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:  # buffer too small: -n is the size needed
            cap = -n
            buf = (L.llama_token * cap)()
            n = L.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        return list(buf[:n])

    def piece(self, token: int, *, special: bool = False, lstrip: int = 0) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = L.llama_token_to_piece(self.vocab, token, buf, 64, lstrip, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = L.llama_token_to_piece(self.vocab, token, buf, -n, lstrip, special)
        return buf.raw[:n]

    def token_text(self, token: int) -> str:
        return self.piece(token, special=True).decode("utf-8", "replace")

    def is_eog(self, token: int) -> bool:
        return bool(L.llama_vocab_is_eog(self.vocab, token))


def _load_vocab_only(path: Path) -> Any:
    _init_llama()
    check_gguf(path)
    params = L.llama_model_default_params()
    params.vocab_only = True
    model = L.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise ModelLoadError(f"llama.cpp could not load {path} (truncated or corrupt?)")
    return model


def load_tokenizer(path: Path) -> LlamaTokenizer:
    """A tokenizer from a GGUF's vocabulary alone (no weights): for tools and tests."""
    return LlamaTokenizer(_load_vocab_only(path))


def read_metadata(path: Path) -> dict[str, str]:
    """A GGUF's metadata, without loading its weights."""
    model = _load_vocab_only(path)
    try:
        return _model_metadata(model)
    finally:
        L.llama_model_free(model)


def _model_metadata(model: Any) -> dict[str, str]:
    meta: dict[str, str] = {}
    for i in range(int(L.llama_model_meta_count(model))):
        meta[_read_str(L.llama_model_meta_key_by_index, model, i)] = _read_str(
            L.llama_model_meta_val_str_by_index, model, i
        )
    return meta


def kv_cache_bytes(meta: dict[str, str], n_ctx: int) -> int:
    """Size of an f16 K+V cache of n_ctx cells, from the model's hyperparameters (0 if the
    metadata does not say, e.g. per-layer head counts)."""
    arch = meta.get("general.architecture", "")

    def num(key: str, default: int = 0) -> int:
        value = meta.get(f"{arch}.{key}", "")
        return int(value) if value.isdigit() else default

    heads = num("attention.head_count")
    k_len = num("attention.key_length", num("embedding_length") // heads if heads else 0)
    v_len = num("attention.value_length", k_len)
    return n_ctx * num("block_count") * num("attention.head_count_kv", heads) * (k_len + v_len) * 2


def _read_str(fn: Any, model: Any, i: int) -> str:
    size = 256
    while True:
        buf = ctypes.create_string_buffer(size)
        n = int(fn(model, i, buf, size))
        if n < size:
            return buf.value.decode("utf-8", "replace") if n >= 0 else ""
        size = n + 1


# --- sampling -----------------------------------------------------------------------------------


def _make_sampler(p: SamplingParams, n_vocab: int) -> Any:
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    add = L.llama_sampler_chain_add
    if p.repetition_penalty or p.frequency_penalty or p.presence_penalty:
        add(chain, L.llama_sampler_init_penalties(
            n_vocab, _PENALTY_LAST_N, p.repetition_penalty or 1.0,
            p.frequency_penalty or 0.0, p.presence_penalty or 0.0))
    if p.temperature <= 0.0:
        add(chain, L.llama_sampler_init_greedy())
        return chain
    if p.top_k:
        add(chain, L.llama_sampler_init_top_k(p.top_k))
    if p.top_p is not None and p.top_p < 1.0:
        add(chain, L.llama_sampler_init_top_p(p.top_p, 1))
    add(chain, L.llama_sampler_init_temp(p.temperature))
    seed = p.seed if p.seed is not None else random.getrandbits(32)
    add(chain, L.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


# --- the backend --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Submit:
    seq: Sequence


@dataclass(frozen=True, slots=True)
class _Cancel:
    request_id: int


class _Stop:
    pass


_Message = _Submit | _Cancel | _Stop


class LlamaCppBackend(Backend):
    tokenizer: LlamaTokenizer

    def __init__(self, config: LlamaCppConfig) -> None:
        self.config = config
        self.name = config.name
        _init_llama()
        check_gguf(config.path)
        source_meta = read_metadata(config.path)
        self.weights_path = compute_path(config.path, source_meta, config.weights,
                                         config.cache_dir)
        mparams = L.llama_model_default_params()
        self._model = L.llama_model_load_from_file(str(self.weights_path).encode(), mparams)
        if not self._model:
            raise ModelLoadError(f"llama.cpp could not load {config.path} (truncated or corrupt?)")
        self.tokenizer = LlamaTokenizer(self._model)
        self.metadata = _model_metadata(self._model)
        self.chat_template = self.metadata.get("tokenizer.chat_template")
        n_ctx_train = int(L.llama_model_n_ctx_train(self._model))
        self.n_ctx_seq = min(config.n_ctx_seq, n_ctx_train) if n_ctx_train > 0 else config.n_ctx_seq

        cparams = L.llama_context_default_params()
        cparams.n_ctx = self.n_ctx_seq * config.n_slots
        cparams.n_batch = config.n_batch
        cparams.n_ubatch = config.n_batch  # one llama_decode call = one ubatch
        cparams.n_seq_max = config.n_slots
        threads = config.n_threads or os.cpu_count() or 1
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        # One KV stream per sequence: a decode row's result then does not depend on which other
        # sequences share the batch (measured bit-identical with SmolLM2, flash attention on or
        # off), and a sequence can never take another's cells.
        cparams.kv_unified = False
        cparams.flash_attn_type = (L.LLAMA_FLASH_ATTN_TYPE_ENABLED if config.flash_attn
                                   else L.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        cparams.no_perf = True
        self._ctx = L.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            L.llama_model_free(self._model)
            raise ModelLoadError(f"could not create a context for {config.path}")
        self._mem = L.llama_get_memory(self._ctx)
        self.kv_bytes = kv_cache_bytes(self.metadata, cparams.n_ctx)
        log.info("%s: %d slots x %d tokens of context, KV cache %.0f MiB, weights %s",
                 self.name, config.n_slots, self.n_ctx_seq, self.kv_bytes / 2**20,
                 self.weights_path.name)
        self._batch = L.llama_batch_init(config.n_batch, 0, 1)
        self._scheduler = Scheduler(config.n_slots, config.n_batch, config.prefill_chunk)
        # Events produced during a step, delivered to the event loop(s) in one call per step.
        self._outbox: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event], Event]] = []

        self._inbox: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Admission control is checked in `submit` (event-loop thread) against this count, so
        # the caller learns "busy" before any response starts. Guarded by _count_lock.
        self._count_lock = threading.Lock()
        self._outstanding = 0
        self._finished = 0
        self._cancelled = 0
        self._busy_slots = 0
        self._waiting = 0
        self._generated = 0

    # -- event-loop side --

    async def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"engine-{self.name}",
                                            daemon=True)
            self._thread.start()

    def submit(self, request: GenerationRequest) -> Generation:
        n_prompt = len(request.prompt_tokens)
        if n_prompt == 0:
            raise PromptTooLong("the prompt is empty after tokenization")
        if n_prompt + request.max_tokens > self.n_ctx_seq:
            raise PromptTooLong(
                f"prompt ({n_prompt} tokens) plus max_tokens ({request.max_tokens}) exceeds the "
                f"context window of {self.n_ctx_seq} tokens"
            )
        with self._count_lock:
            if request.reject_if_busy and self._outstanding >= self.config.n_slots:
                raise EngineBusy("Capacity temporarily exceeded, please try again.")
            if self._outstanding >= self.config.n_slots + self.config.max_waiting:
                raise EngineBusy("Capacity temporarily exceeded, please try again.")
            self._outstanding += 1
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()

        def emit(ev: Event) -> None:  # engine thread only
            self._outbox.append((loop, events, ev))

        seq = Sequence(request=request, emit=emit)
        self._inbox.put(_Submit(seq))
        rid = request.request_id
        return Generation(rid, _drain(events), lambda: self._inbox.put(_Cancel(rid)))

    def stats(self) -> EngineStats:
        with self._count_lock:
            return EngineStats(
                slots_total=self.config.n_slots,
                slots_busy=self._busy_slots,
                waiting=self._waiting,
                requests_finished=self._finished,
                requests_cancelled=self._cancelled,
                tokens_generated=self._generated,
                kv_cache_bytes=self.kv_bytes,
            )

    async def close(self) -> None:
        if self._thread is not None:
            self._inbox.put(_Stop())
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self._ctx:
            L.llama_batch_free(self._batch)
            L.llama_free(self._ctx)
            L.llama_model_free(self._model)
            self._ctx = None

    # -- engine thread --

    def _loop(self) -> None:
        sched = self._scheduler
        while True:
            if not self._drain_inbox(block=sched.idle()):
                break
            for seq in sched.admit():
                self._prepare(seq)
            self._publish_counts()
            plan = sched.schedule()
            if plan:
                self._step(plan)
            self._flush()
        for seq in [*sched.running, *sched.waiting]:
            self._retire(seq, "cancelled")
        self._flush()

    def _flush(self) -> None:
        if not self._outbox:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[Event], Event]]] = {}
        for loop, q, ev in self._outbox:
            by_loop.setdefault(loop, []).append((q, ev))
        self._outbox = []
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is listening
                loop.call_soon_threadsafe(_deliver, items)

    def _prepare(self, seq: Sequence) -> None:
        """A newly admitted sequence: drop the slot's KV past the reused prefix, new sampler."""
        if not L.llama_memory_seq_rm(self._mem, seq.slot, seq.cached, -1):
            # partial removal is impossible for some (recurrent) models: start from scratch
            L.llama_memory_seq_rm(self._mem, seq.slot, -1, -1)
            seq.cached = seq.n_past = 0
        seq.sampler = _make_sampler(seq.request.sampling, self.tokenizer.n_vocab)
        seq.decoder = IncrementalDetokenizer()
        seq.stopper = StopMatcher(list(seq.request.stop))

    def _drain_inbox(self, block: bool) -> bool:
        """Apply pending messages; False once asked to stop."""
        try:
            msg = self._inbox.get() if block else self._inbox.get_nowait()
            while True:
                if isinstance(msg, _Stop):
                    return False
                if isinstance(msg, _Submit):
                    self._scheduler.add(msg.seq)
                else:
                    seq = self._scheduler.remove(msg.request_id)
                    if seq is not None:
                        self._release(seq, "cancelled")
                msg = self._inbox.get_nowait()
        except queue.Empty:
            return True

    def _step(self, plan: list[Work]) -> None:
        """One llama_decode per group of equal-length works (all decode rows are one group),
        ordered by slot. With one KV stream per sequence, llama.cpp splits a batch into ubatches
        of consecutive sequences contributing equally many tokens; equal lengths keep every
        prompt chunk whole, and a chunk computes the same whoever shares its call (measured),
        which is what keeps outputs independent of load (see scheduler.py)."""
        groups: dict[int, list[Work]] = {}
        for work in plan:
            groups.setdefault(len(work.tokens), []).append(work)
        for works in groups.values():
            self._run(sorted(works, key=lambda w: w.seq.slot))

    def _run(self, works: list[Work]) -> None:
        rows = self._fill_batch(works)
        rc = L.llama_decode(self._ctx, self._batch)
        if rc != 0:
            log.error("llama_decode failed (rc=%d) for %d sequences", rc, len(works))
            for work in works:
                work.seq.emit(Failed(f"inference failed (llama_decode returned {rc})"))
                self._scheduler.retire(work.seq, keep_cache=False)
                L.llama_memory_seq_rm(self._mem, work.seq.slot, -1, -1)
                self._release(work.seq, None)
            return
        for work, row in zip(works, rows, strict=True):
            work.seq.n_past += len(work.tokens)
            if row >= 0:
                self._sample(work.seq, row)
        self._flush()  # a new prompt's first token goes out now, not after the whole step

    def _fill_batch(self, plan: list[Work]) -> list[int]:
        """Write the plan into the llama_batch; returns each work's logits row (-1: none)."""
        b = self._batch
        i = 0
        rows = []
        for work in plan:
            slot = work.seq.slot
            for k, tok in enumerate(work.tokens):
                b.token[i] = tok
                b.pos[i] = work.start + k
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = slot
                b.logits[i] = 0
                i += 1
            if work.logits:
                b.logits[i - 1] = 1
            rows.append(i - 1 if work.logits else -1)
        b.n_tokens = i
        return rows

    def _sample(self, seq: Sequence, row: int) -> None:
        tok = int(L.llama_sampler_sample(seq.sampler, self._ctx, row))
        seq.generated.append(tok)
        req = seq.request
        if self.tokenizer.is_eog(tok) and not req.ignore_eos:
            self._finish(seq, "stop")
            return
        # SentencePiece vocabularies mark a leading space on the first word; drop it once.
        lstrip = 1 if self.tokenizer.is_spm and len(seq.generated) == 1 else 0
        text = seq.stopper.push(seq.decoder.push(self.tokenizer.piece(tok, lstrip=lstrip)))
        seq.emit(Delta(text, tok))
        if seq.stopper.stopped:
            self._finish(seq, "stop")
        elif len(seq.generated) >= req.max_tokens:
            self._finish(seq, "length")

    def _finish(self, seq: Sequence, reason: FinishReason) -> None:
        self._scheduler.retire(seq)
        self._release(seq, reason)

    def _retire(self, seq: Sequence, reason: FinishReason) -> None:
        self._scheduler.remove(seq.id)
        self._release(seq, reason)

    def _release(self, seq: Sequence, reason: FinishReason | None) -> None:
        """Free a sequence that has left the scheduler: its sampler, then tell the caller (last,
        so that a caller who sees the end also sees the slot free). Its KV cells stay in the
        slot as a prefix cache for the next occupant (see scheduler.py)."""
        if seq.sampler is not None:
            L.llama_sampler_free(seq.sampler)
            seq.sampler = None
        with self._count_lock:
            self._outstanding -= 1
            self._generated += len(seq.generated)
            if reason == "cancelled":
                self._cancelled += 1
            else:
                self._finished += 1
        self._publish_counts()
        if reason is not None:
            tail = ""
            if seq.decoder is not None:
                tail = seq.stopper.push(seq.decoder.flush()) + seq.stopper.flush()
            if tail:
                seq.emit(Delta(tail, -1))
            usage = Usage(len(seq.request.prompt_tokens), len(seq.generated), seq.cached)
            seq.emit(Finished(reason, usage))

    def _publish_counts(self) -> None:
        with self._count_lock:
            self._busy_slots = len(self._scheduler.running)
            self._waiting = len(self._scheduler.waiting)


def _deliver(items: list[tuple[asyncio.Queue[Event], Event]]) -> None:
    for q, ev in items:
        q.put_nowait(ev)


async def _drain(events: asyncio.Queue[Event]) -> AsyncIterator[Event]:
    while True:
        ev = await events.get()
        yield ev
        if isinstance(ev, Finished | Failed):
            return
