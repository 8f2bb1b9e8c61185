"""An embedding model (BERT and kin: non-causal attention, no KV cache to keep) through
llama-cpp-python's low-level API, with the texts of concurrent requests packed together.

`LlamaCppEmbedder` has the step loop's shape of `LlamaCppEngine` (an inbox, `run`, a sink that
gets each call's events), so the engine process (worker.py) and the in-thread engine run either.
One step is one `llama_decode`: texts are taken in arrival order, across requests, while their
tokens fit the batch (`n_batch` tokens, a text never split: its attention spans the whole text)
and sequences are left (`n_slots`). Each text is its own sequence; every token's last hidden
state comes back (llama.cpp's pooling "none") and is pooled here, mean or the first ([CLS]) token
as the request asks, whatever the file's own pooling, then normalized when the model's
sentence-transformers configuration does (`wai.embedding.normalize`). A reranker (a file with
rank pooling: a classification head over the first token) runs with llama.cpp's own rank
pooling instead, and each text (a query and a document, already joined) gets its head's raw
scores. A request ends with one `Vectors` event, then `Finished` with its token count.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as L
import numpy as np

from wai.engines.llamacpp import hardware
from wai.engines.llamacpp.config import LlamaCppConfig
from wai.engines.llamacpp.gguf import (
    POOLING_RANK,
    LlamaTokenizer,
    declared_pooling,
    load_model,
    model_metadata,
)
from wai.engines.llamacpp.params import (
    LoadPlan,
    context_params,
    free_context,
    model_params,
    new_context,
)
from wai.engines.llamacpp.types import (
    Counters,
    EmbedRequest,
    EngineInfo,
    Failed,
    Finished,
    TokenEvent,
    TokenRequest,
    Usage,
    Vectors,
)

log = logging.getLogger("wai.engines")

Sink = Callable[[list[tuple[int, TokenEvent]], Counters], None]


@dataclass(slots=True)
class _Job:
    """One request in the embedder: its texts, those done, and their vectors so far."""

    request: EmbedRequest
    vectors: np.ndarray
    arrived: float = field(default_factory=time.monotonic)
    next: int = 0  # the next text to schedule
    done: int = 0

    @property
    def id(self) -> int:
        return self.request.request_id


@dataclass(frozen=True, slots=True)
class _Cancel:
    request_id: int


class _Stop:
    pass


class LlamaCppEmbedder:
    """One embedding model and its context; `run` is the step loop."""

    tokenizer: LlamaTokenizer
    chat_template: str | None = None

    def __init__(self, config: LlamaCppConfig, sink: Sink, *, skip_plans: int = 0) -> None:
        self.config = config
        self.name = config.name
        self._sink = sink
        self.plan = LoadPlan(config.path, False, False, 0)  # small models: the CPU, as is
        self.weights_bytes = config.path.stat().st_size if config.path.exists() else 0
        self._model = load_model(config.path, model_params(self.plan))
        self.tokenizer = LlamaTokenizer(self._model)
        self.metadata = model_metadata(self._model)
        self.normalize = self.metadata.get("wai.embedding.normalize", "true") == "true"
        self.ranks = declared_pooling(self.metadata) == POOLING_RANK
        self.n_embd = int(L.llama_model_n_embd(self._model))
        # a row of output: a vector, or a reranker's scores (one per label; rerankers have one)
        self.n_out = int(L.llama_model_n_cls_out(self._model)) if self.ranks else self.n_embd
        n_ctx_train = int(L.llama_model_n_ctx_train(self._model))
        self.n_ctx_seq = min(config.n_ctx_seq, n_ctx_train) if n_ctx_train > 0 else config.n_ctx_seq
        self.n_batch = max(config.n_batch, self.n_ctx_seq)  # a whole text fits one call
        self._ctx = self._new_context()
        self.kv_bytes = 0
        self.info = EngineInfo(
            device=hardware.placement(0),
            gpu_layers=0,
            extra_buffers=False,
            weights=config.path.name,
            converted=False,
            probe="embedding model: no warm-up probe",
        )
        self._batch = L.llama_batch_init(self.n_batch, 0, 1)
        self._inbox: queue.SimpleQueue[EmbedRequest | _Cancel | _Stop] = queue.SimpleQueue()
        self._jobs: deque[_Job] = deque()
        self._outbox: list[tuple[int, TokenEvent]] = []
        self._counts = {"finished": 0, "cancelled": 0, "failed": 0, "tokens": 0}
        self._steps = 0
        self._decode_ns = 0
        log.info(
            "%s: %s, %d outputs, texts up to %d tokens, %d per call",
            self.name,
            "reranker" if self.ranks else "embedding model",
            self.n_out,
            self.n_ctx_seq,
            config.n_slots,
        )

    def _new_context(self) -> Any:
        cfg = self.config
        params = context_params(
            n_ctx=self.n_batch,
            n_batch=self.n_batch,
            n_seq=cfg.n_slots,
            threads=cfg.n_threads,
            # measured: 800 tokens of 8 texts in 192 ms with flash attention, 531 ms without
            flash_attn=cfg.flash_attn,
            unified_kv=True,  # no KV cache to split between sequences: one stream for all
        )
        params.embeddings = True
        # an embedding model's tokens are pooled here, as each request asks; a reranker's
        # classification head runs in llama.cpp's graph, on the pooled first token
        params.pooling_type = L.LLAMA_POOLING_TYPE_RANK if self.ranks else L.LLAMA_POOLING_TYPE_NONE
        return new_context(self._model, params, cfg.path)

    # -- any thread --

    def submit(self, request: TokenRequest | EmbedRequest) -> None:
        assert isinstance(request, EmbedRequest), "an embedding engine generates nothing"
        self._inbox.put(request)

    def cancel(self, request_id: int) -> None:
        self._inbox.put(_Cancel(request_id))

    def stop(self) -> None:
        self._inbox.put(_Stop())

    def counters(self) -> Counters:
        return Counters(
            busy=1 if self._jobs else 0,
            waiting=max(0, len(self._jobs) - 1),
            finished=self._counts["finished"],
            cancelled=self._counts["cancelled"],
            failed=self._counts["failed"],
            steps=self._steps,
            decode_ns=self._decode_ns,
        )

    # -- the engine thread --

    def run(self, ready: Callable[[int], None]) -> None:
        """Warm up (one text), report it through `ready(rc)`, then step until `stop`."""
        rc = self._decode([[self.tokenizer.bos_id, self.tokenizer.bos_id]])[0]
        ready(rc)
        if rc != 0:
            return
        while self._drain_inbox(block=not self._jobs):
            if self._jobs:
                self._step()
            self._flush()
        for job in list(self._jobs):
            self._fail(job, "the engine stopped before this request finished")
        self._flush()

    def free(self) -> None:
        if self._ctx:
            free_context(self._batch, self._ctx, self._model)
            self._ctx = None

    def _drain_inbox(self, block: bool) -> bool:
        try:
            msg = self._inbox.get() if block else self._inbox.get_nowait()
            while True:
                if isinstance(msg, _Stop):
                    return False
                if isinstance(msg, EmbedRequest):
                    self._admit(msg)
                else:
                    self._cancel(msg.request_id)
                msg = self._inbox.get_nowait()
        except queue.Empty:
            return True

    def _admit(self, request: EmbedRequest) -> None:
        if (request.pooling == "rank") != self.ranks:
            job = _Job(request, np.empty(0))
            self._fail(job, f"{self.name} is {'a reranker' if self.ranks else 'no reranker'}")
            return
        vectors = np.zeros((len(request.texts), self.n_out), dtype=np.float32)
        self._jobs.append(_Job(request, vectors))

    def _cancel(self, request_id: int) -> None:
        for job in self._jobs:
            if job.id == request_id:
                self._jobs.remove(job)
                self._counts["cancelled"] += 1
                usage = Usage(_tokens(job.request, job.done), 0)
                self._outbox.append((job.id, Finished("cancelled", usage)))
                return

    def _take(self) -> list[tuple[_Job, int]]:
        """This call's texts, in arrival order: while they fit the batch and the sequences."""
        taken: list[tuple[_Job, int]] = []
        tokens = 0
        # interactive requests' texts first, then a queued batch's (stable: arrival order)
        for job in sorted(self._jobs, key=lambda j: j.request.background):
            while job.next < len(job.request.texts) and len(taken) < self.config.n_slots:
                n = len(job.request.texts[job.next])
                if tokens + n > self.n_batch:
                    return taken
                taken.append((job, job.next))
                tokens += n
                job.next += 1
            if len(taken) == self.config.n_slots:
                break
        return taken

    def _step(self) -> None:
        taken = self._take()
        texts = [job.request.texts[i] for job, i in taken]
        rc, hidden = self._decode(texts)
        if rc != 0:
            log.error("llama_decode failed (rc=%d) for %d texts", rc, len(texts))
            for job in {id(job): job for job, _ in taken}.values():
                self._fail(job, f"inference failed (llama_decode returned {rc})")
            return
        start = 0
        for k, ((job, i), text) in enumerate(zip(taken, texts, strict=True)):
            if self.ranks:
                job.vectors[i] = hidden[k]  # the sequence's scores, pooled by llama.cpp
            else:
                job.vectors[i] = self._pool(hidden[start : start + len(text)], job.request)
            start += len(text)
            job.done += 1
        for job in [j for j in self._jobs if j.done == len(j.request.texts)]:
            self._finish(job)

    def _pool(self, rows: np.ndarray, request: EmbedRequest) -> np.ndarray:
        vector: np.ndarray = rows[0] if request.pooling == "cls" else rows.mean(0)
        if self.normalize:
            vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return vector

    def _decode(self, texts: list[Any]) -> tuple[int, np.ndarray]:
        """One llama_decode of these texts (sequence k: texts[k]), every token an output; the
        last hidden states, one row per token in order (a reranker: its scores, one row per
        sequence). The KV cells are cleared after."""
        b, i = self._batch, 0
        for seq, text in enumerate(texts):
            for pos, token in enumerate(text):
                b.token[i], b.pos[i], b.n_seq_id[i] = token, pos, 1
                b.seq_id[i][0], b.logits[i] = seq, 1
                i += 1
        b.n_tokens = i
        t0 = time.perf_counter_ns()
        rc = int(L.llama_decode(self._ctx, b))
        self._decode_ns += time.perf_counter_ns() - t0
        self._steps += 1
        hidden = np.empty((0, self.n_out), dtype=np.float32)
        if rc == 0 and self.ranks:
            hidden = np.stack([self._scores(seq) for seq in range(len(texts))])
        elif rc == 0:
            rows = L.llama_get_embeddings(self._ctx)
            hidden = np.ctypeslib.as_array(rows, shape=(i, self.n_embd)).copy()
        memory = L.llama_get_memory(self._ctx)
        if memory:
            L.llama_memory_clear(memory, True)
        return rc, hidden

    def _scores(self, seq: int) -> np.ndarray:
        ptr = L.llama_get_embeddings_seq(self._ctx, seq)
        return np.ctypeslib.as_array(ptr, shape=(self.n_out,)).copy()

    def _finish(self, job: _Job) -> None:
        self._jobs.remove(job)
        self._counts["finished"] += 1
        tokens = _tokens(job.request, len(job.request.texts))
        self._counts["tokens"] += tokens
        shape = (len(job.request.texts), self.n_out)
        vectors = Vectors(job.vectors.tobytes(), shape, job.request.pooling)
        queued = time.monotonic() - job.arrived
        self._outbox.append((job.id, vectors))
        self._outbox.append((job.id, Finished("stop", Usage(tokens, 0), queued)))

    def _fail(self, job: _Job, message: str) -> None:
        if job in self._jobs:
            self._jobs.remove(job)
        self._counts["failed"] += 1
        self._outbox.append((job.id, Failed(message)))

    def _flush(self) -> None:
        if self._outbox:
            events, self._outbox = self._outbox, []
            self._sink(events, self.counters())


def _tokens(request: EmbedRequest, upto: int) -> int:
    return sum(len(t) for t in request.texts[:upto])
