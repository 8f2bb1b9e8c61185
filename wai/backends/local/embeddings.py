"""An embedding model served by llama.cpp on this machine: texts tokenized here (on a
vocabulary-only load of the GGUF, as for text generation), each checked against the model's
window, then one `EmbedRequest` to the model's engine, which packs the texts of concurrent
requests into shared `llama_decode` calls (engine/embedder.py)."""

from __future__ import annotations

import asyncio

from wai.backends.base import EmbeddingRequest, Event, Generation, Pooling, TaskRequest
from wai.backends.local.engine_backed import EngineBacked
from wai.engine.types import EmbedRequest
from wai.errors import InvalidInput

# inputs longer than this (characters, all texts) are tokenized on a worker thread
OFF_LOOP_CHARS = 16_384


class LocalEmbeddingBackend(EngineBacked):
    @property
    def pooling(self) -> Pooling:
        """The model's own pooling, as its file says (mean unless it says CLS)."""
        return "cls" if self.engine.metadata.get(f"{self._arch}.pooling_type") == "2" else "mean"

    @property
    def _arch(self) -> str:
        return self.engine.metadata.get("general.architecture", "")

    async def submit(self, request: TaskRequest) -> Generation[Event]:
        if not isinstance(request, EmbeddingRequest):
            raise InvalidInput(f"{self.name} embeds text: it does not generate")
        if sum(len(t) for t in request.texts) > OFF_LOOP_CHARS:
            texts = await asyncio.to_thread(self.tokenize, request)
        else:
            texts = self.tokenize(request)
        generation: Generation[Event] = self.engine.submit(
            EmbedRequest(texts, request.pooling or self.pooling, request.reject_if_busy)
        )
        return generation

    def tokenize(self, request: EmbeddingRequest) -> list[list[int]]:
        """Each text's tokens ([CLS] … [SEP] for BERT); one longer than the model's window is
        refused, naming it, or cut to fit (keeping its closing token) with `truncate`."""
        tok, window = self.engine.tokenizer, self.engine.n_ctx_seq
        out = []
        for i, text in enumerate(request.texts):
            ids = tok.tokenize(text, add_special=True, parse_special=False)
            if len(ids) > window:
                if not request.truncate:
                    raise InvalidInput(
                        f"'/text/{i}': {len(ids)} tokens, more than the model's {window} "
                        "(truncate_inputs cuts it to fit)"
                    )
                ids = [*ids[: window - 1], ids[-1]]
            out.append(ids)
        return out
