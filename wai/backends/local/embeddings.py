"""An embedding model served by llama.cpp on this machine: texts tokenized here (on a
vocabulary-only load of the GGUF, as for text generation), each checked against the model's
window, then one `EmbedRequest` to the model's engine, which packs the texts of concurrent
requests into shared `llama_decode` calls (engine/embedder.py).

A reranking request goes to a reranker (a GGUF with rank pooling) as one (query, text) pair per
text, each scored by the model's classification head; to an embedding model as the query then
the texts, embedded, so that the answer ranks them by cosine similarity."""

from __future__ import annotations

import asyncio

from wai.backends.base import (
    EmbeddingRequest,
    Event,
    Generation,
    Pooling,
    RerankRequest,
    TaskRequest,
)
from wai.backends.local.engine_backed import EngineBacked
from wai.engines.llamacpp.gguf import POOLING_CLS, POOLING_RANK, declared_pooling
from wai.engines.llamacpp.types import EmbedRequest, TokenEngine
from wai.errors import InvalidInput

# inputs longer than this (characters, all texts) are tokenized on a worker thread
OFF_LOOP_CHARS = 16_384


class LocalEmbeddingBackend(EngineBacked[TokenEngine]):
    @property
    def pooling(self) -> Pooling:
        """The model's own pooling, as its file says (mean unless it says CLS)."""
        return "cls" if declared_pooling(self.engine.metadata) == POOLING_CLS else "mean"

    @property
    def ranks(self) -> bool:
        """A reranker: its file says rank pooling (a classification head)."""
        return declared_pooling(self.engine.metadata) == POOLING_RANK

    async def submit(self, request: TaskRequest) -> Generation[Event]:
        if isinstance(request, RerankRequest):
            return await self._submit(request, "rank" if self.ranks else self.pooling)
        if not isinstance(request, EmbeddingRequest):
            raise InvalidInput(f"{self.name} embeds text: it does not generate")
        if self.ranks:
            raise InvalidInput(f"{self.name} is a reranker: it scores texts, it does not embed")
        return await self._submit(request, request.pooling or self.pooling)

    async def _submit(
        self, request: EmbeddingRequest | RerankRequest, pooling: Pooling
    ) -> Generation[Event]:
        chars = sum(len(t) for t in request.texts)
        if chars > OFF_LOOP_CHARS:
            texts = await asyncio.to_thread(self.tokenize, request)
        else:
            texts = self.tokenize(request)
        generation: Generation[Event] = self.engine.submit(
            EmbedRequest(texts, pooling, request.reject_if_busy, background=request.background)
        )
        return generation

    def tokenize(self, request: EmbeddingRequest | RerankRequest) -> list[list[int]]:
        """Each sequence's tokens; one longer than the model's window is refused, naming its
        input, or cut to fit (keeping its closing token) with `truncate`."""
        window = self.engine.n_ctx_seq
        out = []
        for where, ids in self._encode(request):
            if len(ids) > window:
                if not request.truncate:
                    raise InvalidInput(
                        f"'{where}': {len(ids)} tokens, more than the model's {window} "
                        "(truncate_inputs cuts it to fit)"
                    )
                ids = [*ids[: window - 1], ids[-1]]
            out.append(ids)
        return out

    def _encode(self, request: EmbeddingRequest | RerankRequest) -> list[tuple[str, list[int]]]:
        """The sequences to run, each with the input it comes from: the texts ([CLS] … [SEP]
        for BERT); for a reranker, the (query, text) pairs; for ranking by an embedding model,
        the query, then the texts."""
        tok = self.engine.tokenizer

        def one(text: str) -> list[int]:
            return tok.tokenize(text, add_special=True, parse_special=False)

        if isinstance(request, EmbeddingRequest):
            return [(f"/text/{i}", one(t)) for i, t in enumerate(request.texts)]
        if self.ranks:
            pairs = [tok.pair(request.query, t) for t in request.texts]
            return [(f"/contexts/{i}/text", ids) for i, ids in enumerate(pairs)]
        texts = [(f"/contexts/{i}/text", one(t)) for i, t in enumerate(request.texts)]
        return [("/query", one(request.query)), *texts]
