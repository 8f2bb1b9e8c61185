"""The batch queue's bodies (`?queueRequest=true`): a batch to queue, `{"requests": [{<the
model's inputs>, "external_reference"?}, …]}`, or a poll, `{"request_id": "<uuid>"}`.

Every item is validated up front by the model's own schema: a batch with an invalid item is
refused whole, naming the item (`'/requests/3/text': …`), before anything is queued.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wai.errors import InvalidInput
from wai.schemas import TaskInput
from wai.schemas.embeddings import EmbeddingInput
from wai.schemas.reranking import RerankInput
from wai.schemas.text2text import TranslationInput
from wai.schemas.text_generation import TextGenerationInput

MAX_REFERENCE_CHARS = 1024
_POINTER = re.compile(r"'/")


@dataclass(frozen=True, slots=True)
class QueuedItem:
    inputs: dict[str, Any]  # as given, without its external_reference
    external_reference: str | None
    parsed: TaskInput


def is_poll(body: Any) -> bool:
    return isinstance(body, dict) and "request_id" in body and "requests" not in body


def parse_poll(body: dict[str, Any]) -> str:
    """The request id of a poll; raises InvalidInput."""
    _only(body, "request_id", "a poll")
    request_id = body["request_id"]
    if not isinstance(request_id, str):
        raise InvalidInput("'/request_id': must be a string")
    try:
        return str(uuid.UUID(request_id))
    except ValueError:
        raise InvalidInput(f"'/request_id': not a request id: {request_id[:64]!r}") from None


def parse_batch(
    body: Any, max_items: int, parse: Callable[[dict[str, Any]], TaskInput]
) -> list[QueuedItem]:
    """A batch's items, each parsed by `parse` (the model's schema and limits); raises
    InvalidInput naming the first bad item."""
    if not isinstance(body, dict) or "requests" not in body:
        raise InvalidInput(
            'a queued request is {"requests": [...]} (a batch) or {"request_id": ...} (a poll)'
        )
    _only(body, "requests", "a batch")
    requests = body["requests"]
    if not isinstance(requests, list):
        raise InvalidInput("'/requests': must be an array")
    if not 1 <= len(requests) <= max_items:
        raise InvalidInput(f"'/requests': must have 1 to {max_items} items, not {len(requests)}")
    items = [_item(i, item, parse) for i, item in enumerate(requests)]
    texts = sum(_texts(item.parsed) for item in items)
    if texts > max_items:
        # each text of an embedding or ranking item is a result of its own: the bound on what a
        # batch's results may weigh (an embedding item may hold 100 texts)
        raise InvalidInput(
            f"'/requests': {texts} texts in all; a batch takes at most {max_items} items, "
            "counting each text of an embedding or reranking item"
        )
    return items


def _only(body: dict[str, Any], key: str, what: str) -> None:
    extra = sorted(set(body) - {key})
    if extra:
        raise InvalidInput(f"'/{extra[0]}': {what} takes only '{key}'")


def _texts(parsed: TaskInput) -> int:
    """The results an item weighs: its texts (an embedding's, a ranking's contexts), else 1."""
    if isinstance(parsed, TranslationInput):
        return len(parsed.texts)
    if isinstance(parsed, EmbeddingInput | RerankInput):
        return len(parsed.texts())
    return 1


def _item(i: int, item: Any, parse: Callable[[dict[str, Any]], TaskInput]) -> QueuedItem:
    where = f"/requests/{i}"
    if not isinstance(item, dict):
        raise InvalidInput(f"'{where}': must be an object (the model's inputs)")
    inputs = {k: v for k, v in item.items() if k != "external_reference"}
    reference = item.get("external_reference")
    if reference is not None and not isinstance(reference, str):
        raise InvalidInput(f"'{where}/external_reference': must be a string")
    if reference is not None and len(reference) > MAX_REFERENCE_CHARS:
        raise InvalidInput(
            f"'{where}/external_reference': at most {MAX_REFERENCE_CHARS} characters"
        )
    try:
        parsed = parse(inputs)
    except InvalidInput as e:
        message = _POINTER.sub(f"'{where}/", e.message, count=1)
        if message == e.message:
            message = f"'{where}': {e.message}"
        raise InvalidInput(message) from None
    if isinstance(parsed, TextGenerationInput) and parsed.stream:
        raise InvalidInput(f"'{where}/stream': a queued request is answered whole, not streamed")
    return QueuedItem(inputs, reference, parsed)
