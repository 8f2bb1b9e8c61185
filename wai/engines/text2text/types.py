"""The text-to-text engines' contract: what the server asks (a `Job`: texts to translate, a text
to summarize or classify) and what comes back (`Texts`, or `Scores` per label), with the tokens
counted. Plain data, shared by both sides of the pipe; nothing here shapes an answer for a
client."""

from __future__ import annotations

from typing import Literal

import msgspec

# what a model does (its Hugging Face architecture says which)
Text2TextKind = Literal["translation", "summarization", "text-classification"]
# why a job failed: input the model cannot take (an unknown language), or the engine's own
FailureKind = Literal["bad_input", "error"]


class Text2TextConfig(msgspec.Struct, frozen=True):
    """How one model's engine is set up (crosses into the engine process as JSON)."""

    path: str  # the CTranslate2 directory written by weights/seq2seq.py
    name: str
    kind: Text2TextKind = "translation"
    n_threads: int = 0  # 0: every core
    max_batch: int = 32  # sentences decoded together in one call (from several requests)
    max_waiting: int = 64
    compute_type: str = "int8"  # CTranslate2's; float32 keeps the weights as written


class Translate(msgspec.Struct, frozen=True, tag="translate"):
    """Texts from one language into another (the model's own codes: M2M100's `en`, `fr`)."""

    texts: list[str]
    source: str
    target: str


class Summarize(msgspec.Struct, frozen=True, tag="summarize"):
    text: str
    max_length: int  # tokens of summary at most


class Classify(msgspec.Struct, frozen=True, tag="classify"):
    text: str


Job = Translate | Summarize | Classify


class Texts(msgspec.Struct, frozen=True, tag="texts"):
    """One output per input text (a summary: one), and the tokens read and written."""

    texts: list[str]
    input_tokens: int
    output_tokens: int


class Scores(msgspec.Struct, frozen=True, tag="scores"):
    """Each label's probability, in the model's label order."""

    labels: list[str]
    scores: list[float]
    input_tokens: int


Result = Texts | Scores


class Text2TextFailed(Exception):
    """A job that did not complete, and why."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
