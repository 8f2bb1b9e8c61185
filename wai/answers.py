"""Workers AI's answers, free of HTTP: the shape of a result (its usage, tool calls, JSON mode's
object) and the Workers AI code for whatever went wrong. The web layer (api/framing.py) wraps
them in envelopes, event streams and HTTP statuses; `Ai.local()` returns them as they are."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from wai import standins
from wai.backends.base import (
    Delta,
    EngineBusy,
    EngineStopped,
    Event,
    Failed,
    Finished,
    PromptTooLong,
    SpeechOutput,
    SpeechResult,
    SpokenAudio,
    Text2TextResult,
    ToolCall,
    ToolCalls,
    Transcription,
    Turn,
    UpstreamError,
    Usage,
    Vectors,
)
from wai.engines.text2text.types import Result as Text2TextOutput
from wai.engines.text2text.types import Scores, Texts
from wai.errors import (
    ACCOUNT_LIMITED,
    BAD_INPUT,
    INTERNAL,
    MODEL_UNAVAILABLE,
    NO_SUCH_MODEL,
    NOT_FOUND,
    OUT_OF_CAPACITY,
    REQUEST_TOO_LARGE,
    AllocationSpent,
    BatchNotFound,
    InputTooLarge,
    InvalidInput,
    ModelUnavailable,
    NeedsWeights,
    QueueLimit,
    RequestError,
    UnknownModel,
    UnservedTask,
    WeightsDownloading,
    bad_input_message,
)
from wai.schemas import TaskInput
from wai.schemas.embeddings import EmbeddingInput
from wai.schemas.reranking import RerankInput
from wai.schemas.speech import TranscriptionInput
from wai.schemas.text2text import ClassificationInput, SummaryInput, TranslationInput
from wai.schemas.text_generation import TextGenerationInput
from wai.schemas.tts import SpeechInput
from wai.schemas.turn import TurnInput
from wai.subtitles import vtt


@dataclass(frozen=True, slots=True)
class Failure:
    """What a request failed with, in Workers AI's terms: code and message (and how soon a
    retry may succeed)."""

    code: int
    message: str
    retry_after: int | None = None


def classify(e: Exception) -> Failure:
    """The Workers AI answer for what submitting a request raised."""
    if isinstance(e, QueueLimit):
        return Failure(OUT_OF_CAPACITY, e.message, retry_after=60)
    if isinstance(e, AllocationSpent):
        return Failure(ACCOUNT_LIMITED, e.message)
    if isinstance(e, BatchNotFound):
        return Failure(NOT_FOUND, e.message)
    if isinstance(e, UnservedTask | NeedsWeights):
        return Failure(NO_SUCH_MODEL, e.message)
    if isinstance(e, UnknownModel):
        return Failure(NO_SUCH_MODEL, f"No such model: {e.message}")
    if isinstance(e, WeightsDownloading):
        return Failure(MODEL_UNAVAILABLE, e.message, retry_after=5)
    if isinstance(e, ModelUnavailable):
        return Failure(MODEL_UNAVAILABLE, e.message)
    if isinstance(e, EngineStopped):
        return Failure(MODEL_UNAVAILABLE, str(e), retry_after=1)
    if isinstance(e, InputTooLarge):
        return Failure(REQUEST_TOO_LARGE, e.message)
    if isinstance(e, InvalidInput | PromptTooLong):
        return Failure(BAD_INPUT, bad_input_message(e))
    if isinstance(e, EngineBusy):
        return Failure(OUT_OF_CAPACITY, str(e), retry_after=1)
    if isinstance(e, UpstreamError):
        return Failure(e.code, e.message, retry_after=e.retry_after)
    if isinstance(e, RequestError):
        return Failure(BAD_INPUT, e.message)
    return Failure(INTERNAL, "Internal error")


def failed_code(f: Failed) -> int:
    """The Workers AI code of a generation that failed after it was queued: 3043 (worth a
    retry) when the engine process or upstream serving it died under it, the backend's own code
    (3007: an upstream timed out), else 5000."""
    return MODEL_UNAVAILABLE if f.crashed else f.code or INTERNAL


def usage_dict(usage: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_tokens:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    if usage.drafted_tokens:  # speculative decoding, in OpenAI's words for predicted outputs
        out["completion_tokens_details"] = {
            "accepted_prediction_tokens": usage.accepted_tokens,
            "rejected_prediction_tokens": usage.drafted_tokens - usage.accepted_tokens,
        }
    return out


def cf_tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """Workers AI's form of tool calls: {name, arguments (an object)}."""
    return [{"name": c.name, "arguments": c.arguments} for c in calls]


def json_answer(text: str, final: Finished) -> Any:
    """JSON mode's `response`: the object itself, as Workers AI returns it. Cut off by
    max_tokens before it closed, it is Workers AI's error (InvalidInput)."""
    try:
        if final.reason != "length":
            return json.loads(text)
    except ValueError:
        pass
    raise InvalidInput("JSON Mode couldn't be met")


def cf_result(
    text: str, calls: list[ToolCall], final: Finished, inp: TextGenerationInput
) -> dict[str, Any]:
    """A whole answer as Workers AI gives it: `response` (JSON mode's object, or the text),
    `tool_calls` when the request offered tools, and `usage`. Raises InvalidInput when JSON
    mode's object did not close."""
    response = json_answer(text, final) if inp.json_schema is not None else text
    out: dict[str, Any] = {"response": response}
    if inp.tools:
        out["tool_calls"] = cf_tool_calls(calls)
    out["usage"] = usage_dict(final.usage)
    return out


def rank_scores(vectors: Vectors) -> list[float]:
    """Each text's score: a reranker's head output through a sigmoid (Workers AI maps the
    raw score to [0, 1] so), an upstream reranker's as it gave them, or, from an embedding
    model's vectors of the query then the texts, each text's cosine similarity to the
    query."""
    a = vectors.array().astype(np.float64)
    if vectors.pooling == "score":  # an upstream's, as it gave them
        given: list[float] = a[:, 0].tolist()
        return given
    if vectors.pooling == "rank":
        scores: list[float] = (1.0 / (1.0 + np.exp(-a[:, 0]))).tolist()
        return scores
    norms = np.maximum(np.linalg.norm(a, axis=1), 1e-12)
    unit = a / norms[:, None]
    cosines: list[float] = (unit[1:] @ unit[0]).tolist()
    return cosines


def ranked(scores: list[float], top_k: int | None) -> list[tuple[int, float]]:
    """(index, score), best first (ties: the earlier text first), the first `top_k`."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return [(i, scores[i]) for i in order[:top_k]]


def cf_ranking(vectors: Vectors, top_k: int | None) -> dict[str, Any]:
    """Reranking's output: `{"response": [{"id", "score"}]}`, best first."""
    return {"response": [{"id": i, "score": s} for i, s in ranked(rank_scores(vectors), top_k)]}


def cf_context_embeddings(vectors: Vectors) -> dict[str, Any]:
    """bge-m3's query mode without a query: the contexts' vectors as `response`."""
    return {"response": vectors.rows(), "shape": list(vectors.shape), "pooling": vectors.pooling}


def vectors_answer(inp: EmbeddingInput | RerankInput, vectors: Vectors) -> dict[str, Any]:
    """The answer to an embedding or reranking request, from its model's output."""
    if isinstance(inp, EmbeddingInput):
        return cf_embeddings(vectors)
    if inp.query is None:
        return cf_context_embeddings(vectors)
    return cf_ranking(vectors, inp.top_k)


def cf_embeddings(vectors: Vectors) -> dict[str, Any]:
    """Text Embeddings' output: the vectors in the texts' order, their shape and pooling."""
    return {"shape": list(vectors.shape), "data": vectors.rows(), "pooling": vectors.pooling}


class Unanswered(Exception):
    """A request that ended without an answer: its Workers AI code and message, and the
    engine's Failed event when there was one (crashed, preempted)."""

    def __init__(self, code: int, message: str, failed: Failed | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.failed = failed


@dataclass(frozen=True, slots=True)
class Completed:
    """A generation's events gathered: its text, calls, vectors and final event."""

    text: str
    final: Finished | Failed
    calls: list[ToolCall]
    vectors: Vectors | None = None  # an embedding's
    speech: SpeechOutput | None = None  # a speech model's
    text2text: Text2TextOutput | None = None  # a text-to-text model's


async def completed(generation: AsyncIterable[Event]) -> Completed:
    """Every event of a generation, gathered up to its final one."""
    parts: list[str] = []
    calls: list[ToolCall] = []
    vectors: Vectors | None = None
    speech: SpeechOutput | None = None
    text2text: Text2TextOutput | None = None
    async for ev in generation:
        if isinstance(ev, Delta):
            parts.append(ev.text)
        elif isinstance(ev, ToolCalls):
            calls.extend(ev.calls)
        elif isinstance(ev, Vectors):
            vectors = ev
        elif isinstance(ev, SpeechResult):
            speech = ev.result
        elif isinstance(ev, Text2TextResult):
            text2text = ev.result
        else:
            return Completed("".join(parts), ev, calls, vectors, speech, text2text)
    raise RuntimeError("generation ended without a final event")


def cf_answer(done: Completed, inp: TaskInput) -> Any:
    """A finished request's result: the vectors or scores, the transcription, the translation,
    summary or labels, or the generation's text, calls and usage. Raises InvalidInput when JSON
    mode's object did not close."""
    if isinstance(inp, TranslationInput | SummaryInput | ClassificationInput):
        return text2text_answer(done, inp)
    if isinstance(inp, TranscriptionInput):
        if not isinstance(done.speech, Transcription):
            raise RuntimeError("a transcription ended without its result")
        return transcription_answer(done.speech, inp)
    if isinstance(inp, TurnInput):
        if not isinstance(done.speech, Turn):
            raise RuntimeError("a turn detection ended without its answer")
        return {"is_complete": done.speech.is_complete, "probability": done.speech.probability}
    if isinstance(inp, SpeechInput):
        if not isinstance(done.speech, SpokenAudio):
            raise RuntimeError("a text-to-speech request ended without its audio")
        return {"audio": base64.b64encode(done.speech.data).decode()}
    if not isinstance(inp, TextGenerationInput):
        if done.vectors is None:
            raise RuntimeError("an embedding ended without its vectors")
        return vectors_answer(inp, done.vectors)
    assert isinstance(done.final, Finished)
    return cf_result(done.text, done.calls, done.final, inp)


def text2text_answer(
    done: Completed, inp: TranslationInput | SummaryInput | ClassificationInput
) -> Any:
    """The id's official shape: `{translated_text}` (m2m100), `{translations}` (indictrans2),
    `{summary}`, or `[{label, score}]` best first; from the model's output, or from the
    embedding model's vectors where it stands in."""
    out = done.text2text
    if isinstance(out, Texts):
        if isinstance(inp, SummaryInput):
            return {"summary": out.texts[0]}
        if isinstance(inp, TranslationInput) and inp.shape == "indictrans2":
            return {"translations": out.texts}
        return {"translated_text": out.texts[0]}
    if isinstance(out, Scores):
        ranked = sorted(zip(out.labels, out.scores, strict=True), key=lambda p: -p[1])
        return [{"label": label, "score": score} for label, score in ranked]
    if done.vectors is None:
        raise RuntimeError("a text-to-text request ended without its result")
    if isinstance(inp, SummaryInput):
        return {"summary": standins.extractive(inp.text, done.vectors.array(), inp.max_length)}
    return standins.zero_shot(done.vectors.array())


def binary_answer(done: Completed, inp: TaskInput) -> SpokenAudio | None:
    """The audio itself, where the id answers with it (Deepgram's Aura ids: the body is the
    audio, `audio/mpeg` or as `encoding` asked); None where the answer is JSON."""
    if isinstance(inp, SpeechInput) and inp.shape == "aura":
        return done.speech if isinstance(done.speech, SpokenAudio) else None
    return None


def transcription_answer(t: Transcription, inp: TranscriptionInput) -> dict[str, Any]:
    """Whisper's answer in the id's shape: whisper and whisper-tiny-en `{text, word_count,
    words, vtt}`; whisper-large-v3-turbo `{transcription_info, text, word_count, segments,
    vtt}`."""
    text = t.text
    cues = [(s.start, s.end, s.text) for s in t.segments]
    if inp.shape == "nova":
        return nova_answer(t, inp)
    if inp.shape == "whisper":
        words = [{"word": w.word.strip(), "start": w.start, "end": w.end} for w in _words(t)]
        return {"text": text, "word_count": len(text.split()), "words": words, "vtt": vtt(cues)}
    return {
        "transcription_info": {
            "language": t.language,
            "language_probability": t.language_probability,
            "duration": t.duration,
            "duration_after_vad": t.duration_after_vad,
        },
        "text": text,
        "word_count": len(text.split()),
        "segments": [segment_dict(s) for s in t.segments],
        "vtt": vtt(cues),
    }


def nova_answer(t: Transcription, inp: TranscriptionInput) -> dict[str, Any]:
    """Deepgram's pre-recorded answer: one channel, one alternative; each word bare (lowercase,
    no punctuation) with its `punctuated_word`, its confidence the model's probability."""
    words = []
    for w in _words(t):
        said = w.word.strip()
        bare = _BARE.sub("", said).lower() or said.lower()
        word = {"word": bare, "start": w.start, "end": w.end, "confidence": w.probability}
        if inp.punctuate:
            word["punctuated_word"] = said
        words.append(word)
    transcript = t.text if inp.punctuate else " ".join(str(w["word"]) for w in words)
    probs = [w.probability for w in _words(t)]
    alternative = {
        "transcript": transcript,
        "confidence": round(sum(probs) / len(probs), 4) if probs else 0.0,
        "words": words,
    }
    channel: dict[str, Any] = {"alternatives": [alternative]}
    if inp.detect_language:
        channel["detected_language"] = t.language
        channel["language_confidence"] = t.language_probability
    return {"results": {"channels": [channel]}}


# what Deepgram's bare words leave out: punctuation around (and inside) a word, but not an
# apostrophe within it ("don't")
_BARE = re.compile(r"[^\w'\s]|(?<!\w)'|'(?!\w)")


def segment_dict(s: Any) -> dict[str, Any]:
    return {
        "start": s.start,
        "end": s.end,
        "text": s.text.strip(),
        "temperature": s.temperature,
        "avg_logprob": s.avg_logprob,
        "compression_ratio": s.compression_ratio,
        "no_speech_prob": s.no_speech_prob,
        "words": [
            {"word": w.word.strip(), "start": w.start, "end": w.end, "probability": w.probability}
            for w in s.words
        ],
    }


def _words(t: Transcription) -> list[Any]:
    return [w for s in t.segments for w in s.words]


async def whole_answer(generation: AsyncIterable[Event], inp: TaskInput) -> tuple[Any, Usage]:
    """A request's whole answer as Workers AI's bare output (the binding's, `Ai.local()`'s, a
    queued item's result) and its usage; raises Unanswered."""
    try:
        done = await completed(generation)
    except RuntimeError:
        raise Unanswered(INTERNAL, "the request ended without its answer") from None
    if isinstance(done.final, Failed):
        raise Unanswered(failed_code(done.final), done.final.message, done.final)
    if isinstance(inp, TranscriptionInput | SpeechInput | TurnInput):
        if done.speech is None:
            raise Unanswered(INTERNAL, "the request ended without its answer")
    elif isinstance(inp, TranslationInput | SummaryInput | ClassificationInput):
        if done.text2text is None and done.vectors is None:
            raise Unanswered(INTERNAL, "the request ended without its answer")
    elif not isinstance(inp, TextGenerationInput) and done.vectors is None:
        raise Unanswered(INTERNAL, "the request ended without its answer")
    try:
        return cf_answer(done, inp), done.final.usage
    except RequestError as e:  # JSON mode's object did not close
        f = classify(e)
        raise Unanswered(f.code, f.message) from e
