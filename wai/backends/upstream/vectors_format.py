"""Embeddings and reranking from an OpenAI-compatible upstream: `POST {url}/embeddings`
(vLLM, TEI, llama-server with `--embedding`, Ollama) and `POST {url}/rerank` (llama-server with
`--reranking`, vLLM, Jina's shape; TEI's bare list too). One JSON answer, not a stream: it
becomes one `Vectors` event (the vectors, or the scores as the upstream gives them), then
`Finished` with the upstream's token count."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np

from wai.backends.base import (
    EmbeddingRequest,
    Finished,
    RerankRequest,
    Usage,
    Vectors,
)
from wai.backends.upstream.openai_format import BrokenStream, Relay
from wai.errors import InvalidInput

MAX_ANSWER_BYTES = 256 * 1024 * 1024  # 100 texts of 8,192 dimensions as JSON fit many times


def vectors_body(request: EmbeddingRequest | RerankRequest) -> tuple[str, dict[str, Any]]:
    """The path and body (the model is set per replica). An upstream embeds with its own
    pooling: a request that names another is refused rather than answered wrongly."""
    if isinstance(request, RerankRequest):
        body = {"query": request.query, "documents": list(request.texts)}
        return "/rerank", {**body, "top_n": len(request.texts)}
    if request.pooling is not None:
        raise InvalidInput(
            "'/pooling': this model is served upstream, which pools as its server does; "
            "leave pooling out"
        )
    return "/embeddings", {"input": list(request.texts), "encoding_format": "float"}


class VectorsRelay(Relay):
    """Reads an upstream's embeddings or rerank answer into events."""

    def __init__(self, queue: Any, request: EmbeddingRequest | RerankRequest) -> None:
        super().__init__(queue)
        self.request = request

    async def run(self, response: httpx.Response) -> None:
        raw = bytearray()
        async for chunk in response.aiter_bytes():
            raw += chunk
            if len(raw) > MAX_ANSWER_BYTES:
                raise BrokenStream(f"an answer of more than {MAX_ANSWER_BYTES} bytes")
        try:
            body = json.loads(raw)
        except ValueError:
            raise BrokenStream(f"not JSON: {bytes(raw[:200])!r}") from None
        n = len(self.request.texts)
        if isinstance(self.request, RerankRequest):
            vectors = _scores(body, n)
        else:
            vectors = _embeddings(body, n)
        self.started = True
        usage = body.get("usage") if isinstance(body, dict) else None
        tokens = int(usage.get("prompt_tokens") or 0) if isinstance(usage, dict) else 0
        self.queue.put_nowait(vectors)
        self.queue.put_nowait(Finished("stop", Usage(tokens, 0)))


def _embeddings(body: Any, n: int) -> Vectors:
    """OpenAI's `{"data": [{"index", "embedding"}]}`, in the texts' order."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or len(data) != n:
        raise BrokenStream(f"expected {n} embeddings, got {_describe(data)}")
    rows: list[Any] = [None] * n
    for i, item in enumerate(data):
        index = item.get("index", i) if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < n:
            raise BrokenStream(f"an embedding with index {index!r}")
        rows[index] = item.get("embedding")
    try:
        array = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError):
        raise BrokenStream("embeddings that are not arrays of numbers of one size") from None
    if array.ndim != 2:
        raise BrokenStream("embeddings that are not arrays of numbers of one size")
    return Vectors(array.tobytes(), (array.shape[0], array.shape[1]), "mean")


def _scores(body: Any, n: int) -> Vectors:
    """`{"results": [{"index", "relevance_score"}]}` (llama-server, vLLM, Jina, Cohere) or
    TEI's `[{"index", "score"}]`: each text's score, in the texts' order."""
    results = body.get("results") if isinstance(body, dict) else body
    if not isinstance(results, list) or len(results) != n:
        raise BrokenStream(f"expected {n} scores, got {_describe(results)}")
    scores = np.full(n, np.nan, dtype=np.float32)
    for item in results:
        index = item.get("index") if isinstance(item, dict) else None
        score = item.get("relevance_score", item.get("score")) if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < n or not isinstance(score, int | float):
            raise BrokenStream(f"a score that is not {{index, relevance_score}}: {item!r:.200}")
        scores[index] = score
    if np.isnan(scores).any():
        raise BrokenStream("some texts got no score")
    return Vectors(scores.reshape(n, 1).tobytes(), (n, 1), "score")


def _describe(value: Any) -> str:
    return f"{len(value)}" if isinstance(value, list) else type(value).__name__
