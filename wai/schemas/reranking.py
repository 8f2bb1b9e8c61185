"""Reranking input, as Workers AI's `@cf/baai/bge-reranker-base` takes it: `{"query": string,
"contexts": [{"text": string}], "top_k"?: integer}`, and bge-m3's query mode (`{"query"?,
"contexts", "truncate_inputs"?}`: with a query, scores; without, the contexts' vectors).
Output: `{"response": [{"id": <index in contexts>, "score": number}]}`, best first."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wai.errors import InvalidInput
from wai.schemas.embeddings import MAX_TEXT_CHARS
from wai.schemas.text_generation import RunOptions, integral

# Workers AI states no bound; this one keeps a request to seconds of work on a CPU (each context
# is a model call of up to 512 tokens), and the body limit applies before it.
MAX_CONTEXTS = 256
# non-empty; the bound on characters (MAX_TEXT_CHARS, for Ai.local where no body limit applies)
# is checked by hand: in the schema it would only invite bodies the body limit refuses first
Text = Annotated[str, Field(min_length=1)]


class Context(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Text


class RerankInput(BaseModel):
    """A query and the contexts to rank against it. `query` None: bge-m3's query mode without
    a query, which embeds the contexts."""

    model_config = ConfigDict(extra="forbid")
    query: Text | None = None
    contexts: Annotated[list[Context], Field(min_length=1, max_length=MAX_CONTEXTS)]
    top_k: Annotated[int, Field(ge=1)] | None = None
    truncate_inputs: bool = False
    options: RunOptions | None = None

    def texts(self) -> tuple[str, ...]:
        return tuple(c.text for c in self.contexts)


class RerankerInput(RerankInput):
    """A reranker's input: the query is required."""

    query: Text


def parse_rerank(body: Any, *, query_required: bool = True) -> RerankInput:
    """Validate a decoded JSON body; raises InvalidInput naming the offending field."""
    if not isinstance(body, dict):
        raise InvalidInput("Type mismatch of '/', expected an object with 'query' and 'contexts'")
    if query_required and body.get("query") is None:
        raise InvalidInput("'/query': required (a string)")
    if "contexts" not in body:
        raise InvalidInput("'/contexts': required (an array of {\"text\": string})")
    try:
        model = RerankerInput if query_required else RerankInput
        parsed = model.model_validate(integral(body, ("top_k",)), strict=True)
    except ValidationError as e:
        err = e.errors()[0]
        loc = "/".join(str(p) for p in err["loc"])
        raise InvalidInput(f"'/{loc}': {err['msg']}") from None
    check_lengths(parsed.query, parsed.texts())
    return parsed


def check_lengths(query: str | None, texts: tuple[str, ...] | list[str]) -> None:
    if query is not None and len(query) > MAX_TEXT_CHARS:
        raise InvalidInput(f"'/query': must have at most {MAX_TEXT_CHARS} characters")
    for i, text in enumerate(texts):
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidInput(
                f"'/contexts/{i}/text': must have at most {MAX_TEXT_CHARS} characters"
            )


def rerank_input_schema() -> dict[str, Any]:
    """The input schema the reranker's catalog entry gives (`/ai/models/schema`)."""
    text = {"type": "string", "minLength": 1}
    return {
        "type": "object",
        "properties": {
            "query": {**text, "description": "A query you wish to perform against the contexts."},
            "top_k": {
                "type": "integer",
                "minimum": 1,
                "description": "Number of returned results starting with the best score.",
            },
            "contexts": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_CONTEXTS,
                "items": {
                    "type": "object",
                    "properties": {"text": text},
                    "required": ["text"],
                    "additionalProperties": False,
                },
                "description": "The contexts; the response refers to each by its index here.",
            },
            "truncate_inputs": {"type": "boolean", "default": False},
        },
        "required": ["query", "contexts"],
        "additionalProperties": False,
    }


RERANK_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "response": {
            "type": "array",
            "description": "The contexts' indexes and scores, best first",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer", "description": "Index of the context"},
                    "score": {"type": "number", "description": "Score of the context"},
                },
            },
        }
    },
}


DEFAULT_RERANK_MODEL = "@cf/baai/bge-reranker-base"


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Text


class RerankApiRequest(BaseModel):
    """`POST /v1/rerank` as llama.cpp's server, vLLM, Jina and Cohere take it: documents as
    strings or `{"text"}` objects, `top_n`, `return_documents`."""

    model_config = ConfigDict(extra="forbid")
    model: Annotated[str, Field(min_length=1, max_length=256)] = DEFAULT_RERANK_MODEL
    query: Text
    documents: Annotated[list[Text | Document], Field(min_length=1, max_length=MAX_CONTEXTS)]
    top_n: Annotated[int, Field(ge=1)] | None = None
    return_documents: bool = False
    truncation: bool = False  # vLLM's: cut a pair longer than the model takes
    encoding_format: Literal["float"] | None = None  # accepted (Jina's clients send it)

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]

    def as_input(self) -> RerankInput:
        contexts = [Context(text=t) for t in self.texts()]
        return RerankInput(query=self.query, contexts=contexts, truncate_inputs=self.truncation)
