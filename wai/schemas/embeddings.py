"""Text Embeddings input, as Workers AI's bge models take it: `{"text": string | string[],
"pooling"?: "mean" | "cls", "truncate_inputs"?: bool}`; strings non-empty, at most 100 of
them. Output: `{"shape": [n, dims], "data": [[…], …], "pooling": …}`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wai.errors import InvalidInput
from wai.schemas.text_generation import RunOptions

MAX_TEXTS = 100
# A bound on memory where no body limit applies (Ai.local); the request body's limit and the
# model's window refuse far less. Not in the schema: an HTTP body that long is refused whole.
MAX_TEXT_CHARS = 1_000_000
Text = Annotated[str, Field(min_length=1)]
Texts = Text | Annotated[list[Text], Field(min_length=1, max_length=MAX_TEXTS)]


class EmbeddingInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Texts
    pooling: Literal["mean", "cls"] | None = None
    truncate_inputs: bool = False
    options: RunOptions | None = None

    def texts(self) -> tuple[str, ...]:
        return (self.text,) if isinstance(self.text, str) else tuple(self.text)


def parse_embeddings(body: Any) -> EmbeddingInput:
    """Validate a decoded JSON body; raises InvalidInput naming the offending field."""
    if not isinstance(body, dict):
        raise InvalidInput("Type mismatch of '/', expected an object with 'text'")
    _check_texts(body.get("text"))
    try:
        return EmbeddingInput.model_validate(body, strict=True)
    except ValidationError as e:
        err = e.errors()[0]
        loc = "/".join(str(p) for p in err["loc"])
        raise InvalidInput(f"'/{loc}': {err['msg']}") from None


def _check_texts(text: Any) -> None:
    """`text` by hand, so that an error names the item (a union's errors would not)."""
    if text is None:
        raise InvalidInput("'/text': required (a string, or an array of strings)")
    items = [text] if isinstance(text, str) else text
    if not isinstance(items, list):
        raise InvalidInput("'/text': must be a string or an array of strings")
    if not 1 <= len(items) <= MAX_TEXTS:
        raise InvalidInput(f"'/text': must have 1 to {MAX_TEXTS} items, not {len(items)}")
    for i, item in enumerate(items):
        where = "/text" if isinstance(text, str) else f"/text/{i}"
        if not isinstance(item, str):
            raise InvalidInput(f"'{where}': must be a string")
        if not 1 <= len(item) <= MAX_TEXT_CHARS:
            raise InvalidInput(f"'{where}': must have 1 to {MAX_TEXT_CHARS} characters")


def embedding_input_schema() -> dict[str, Any]:
    """The input schema an embedding model's catalog entry gives (`/ai/models/schema`)."""
    text = {"type": "string", "minLength": 1}
    return {
        "type": "object",
        "description": "The texts to embed",
        "properties": {
            "text": {
                "oneOf": [text, {"type": "array", "items": text, "maxItems": MAX_TEXTS}],
            },
            "pooling": {"type": "string", "enum": ["mean", "cls"], "default": "mean"},
            "truncate_inputs": {"type": "boolean", "default": False},
        },
        "required": ["text"],
        "additionalProperties": False,
    }


EMBEDDING_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One vector per text, in their order",
    "properties": {
        "shape": {"type": "array", "items": {"type": "number"}},
        "data": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        "pooling": {"type": "string", "enum": ["mean", "cls"]},
    },
}
