"""The request-level contract: what the runtime may ask of a backend, and what comes back.

`Backend` is one model as the runtime sees it. It takes a validated `GenerationRequest` (chat
messages or a raw prompt, sampling, limits, JSON schema, tools) through `submit` and answers a
`Generation`: `Delta`s of text, the `ToolCalls` if the model called tools, then `Finished` (or
`Failed`). Two kinds implement it: `local.LocalBackend` (templating, tokenizing and grammars in
front of a llama.cpp `TokenEngine`) and `upstream.UpstreamBackend` (OpenAI-compatible servers:
vLLM, llama-server, TGI, Ollama). The runtime never knows which.

Everything a caller of a backend needs is importable from here: the token-level types the
engine shares (`Delta`, `Finished`, `Failed`, `Usage`, `SamplingParams`, its exceptions) are
re-exported. Nothing here knows about HTTP: a failure carries a Workers AI code, and the web
layer picks the status.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field
from typing import Any

from wai.engines.llamacpp.types import (
    Delta,
    EngineBusy,
    EngineError,
    EngineInfo,
    EngineStats,
    EngineStopped,
    Failed,
    Finished,
    FinishReason,
    Generation,
    ModelLoadError,
    Pooling,
    PromptTooLong,
    SamplingParams,
    Usage,
    Vectors,
)
from wai.engines.speech.types import Options as SpeechOptions
from wai.engines.speech.types import Result as SpeechOutput
from wai.engines.speech.types import SpokenAudio, Transcription, Turn, TurnQuery, Voice
from wai.engines.text2text.types import Job as Text2TextJob
from wai.engines.text2text.types import Result as Text2TextOutput

__all__ = [
    "Backend",
    "Delta",
    "EmbeddingRequest",
    "EngineBusy",
    "EngineError",
    "EngineInfo",
    "EngineStats",
    "EngineStopped",
    "Event",
    "Failed",
    "FinishReason",
    "Finished",
    "Generation",
    "GenerationRequest",
    "Message",
    "ModelLoadError",
    "Pooling",
    "PromptTooLong",
    "ReplicaReport",
    "RerankRequest",
    "SamplingParams",
    "SpeechOptions",
    "SpeechOutput",
    "SpeechResult",
    "SpokenAudio",
    "SynthesisRequest",
    "TaskRequest",
    "Text2TextRequest",
    "Text2TextResult",
    "Tool",
    "ToolCall",
    "ToolCalls",
    "ToolsRequest",
    "Transcription",
    "TranscriptionRequest",
    "Turn",
    "TurnQuery",
    "TurnRequest",
    "UpstreamError",
    "UpstreamReport",
    "Usage",
    "Vectors",
    "Voice",
]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message as backends take it: tool calls in OpenAI's form, with their
    arguments as objects (what chat templates expect)."""

    role: str
    content: str
    # OpenAI's form, arguments as objects: [{"id", "type": "function", "function": {…}}]
    tool_calls: tuple[dict[str, Any], ...] = ()
    tool_call_id: str | None = None  # a tool result's call
    name: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """What a chat template (or an OpenAI-compatible server) sees. Keys are present only
        when set: templates test `'tool_calls' in message`."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [dict(c) for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object"})

    def openai(self) -> dict[str, Any]:
        """The OpenAI form, which chat templates (and the generic prompt) render."""
        fn: dict[str, Any] = {"name": self.name}
        if self.description:
            fn["description"] = self.description
        fn["parameters"] = self.parameters
        return {"type": "function", "function": fn}


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]

    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class ToolsRequest:
    """The tools a request offers, checked: each `parameters` is a JSON Schema wai's grammar
    supports. `choice` is "auto", "required" or the one function's name it must call."""

    tools: tuple[Tool, ...]
    choice: str = "auto"
    parallel: bool = False

    @property
    def required(self) -> bool:
        return self.choice != "auto"

    @property
    def named(self) -> str | None:
        return None if self.choice in ("auto", "required") else self.choice


@dataclass(slots=True)
class GenerationRequest:
    """One validated request, as every backend takes it. Exactly one of `messages` (a chat)
    and `prompt` (raw text to continue) is set; limits have been applied."""

    max_tokens: int
    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams())
    json_schema: dict[str, Any] | None = None  # JSON mode: the answer is one such value
    tools: ToolsRequest | None = None
    reject_if_busy: bool = False
    ignore_eos: bool = False
    stop: tuple[str, ...] = ()
    background: bool = False  # a queued batch's item: runs on what interactive traffic leaves
    # the caller streams the answer; False: it reads it whole (the engine then sends the text
    # after the first token with the end, not step by step)
    stream: bool = True
    # the client's session (`x-session-affinity`, hashed): a local model prefers the slot that
    # holds its conversation, an upstream model keeps it on one replica while that one is up
    session: str = ""

    def size(self) -> int:
        """Characters of input (large ones are templated off the event loop)."""
        if self.prompt is not None:
            return len(self.prompt)
        return sum(len(m.content) for m in self.messages or ())


@dataclass(slots=True)
class EmbeddingRequest:
    """Texts to embed, validated: each non-empty, as many as the schema allows. `pooling`:
    the request's choice (None: the model's own); `truncate`: cut a text longer than the model
    takes instead of refusing it."""

    texts: tuple[str, ...]
    pooling: Pooling | None = None
    truncate: bool = False
    reject_if_busy: bool = False
    background: bool = False


@dataclass(frozen=True, slots=True)
class RerankRequest:
    """A query and the texts to score against it, validated. A reranker scores each (query,
    text) pair; an embedding model answers with the vectors of the query then the texts, for
    ranking by cosine similarity (the stand-in, and bge-m3's query mode)."""

    query: str
    texts: tuple[str, ...]
    truncate: bool = False
    reject_if_busy: bool = False
    background: bool = False


@dataclass(frozen=True, slots=True)
class TranscriptionRequest:
    """Audio to transcribe (or translate to English), validated: the bytes as the client sent
    them (any container FFmpeg reads; the engine decodes them), and how."""

    audio: bytes
    options: SpeechOptions
    reject_if_busy: bool = False
    background: bool = False


@dataclass(frozen=True, slots=True)
class SynthesisRequest:
    """Text to speak, validated, and the audio wanted (encoding, container, rate)."""

    voice: Voice
    language: str = "en"  # what the text is in: a voice speaks one language
    reject_if_busy: bool = False
    background: bool = False


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """Audio of a speaker, validated: has their turn ended?"""

    audio: bytes
    query: TurnQuery
    reject_if_busy: bool = False
    background: bool = False


@dataclass(frozen=True, slots=True)
class Text2TextRequest:
    """Texts to translate, a text to summarize or to classify, validated (a text-to-text
    model's job)."""

    job: Text2TextJob
    reject_if_busy: bool = False
    background: bool = False


TaskRequest = (
    GenerationRequest
    | EmbeddingRequest
    | RerankRequest
    | TranscriptionRequest
    | SynthesisRequest
    | TurnRequest
    | Text2TextRequest
)


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """The answer's tool calls: they come just before its Finished, text before them."""

    calls: list[ToolCall]


@dataclass(frozen=True, slots=True)
class SpeechResult:
    """A speech model's output: a transcription (segments with word timings, the language, the
    durations), or spoken audio."""

    result: SpeechOutput


@dataclass(frozen=True, slots=True)
class Text2TextResult:
    """A text-to-text model's output: the texts (a translation, a summary), or label scores."""

    result: Text2TextOutput


# A generation: Delta…, ToolCalls?, then Finished | Failed. An embedding: Vectors, then Finished
# (its usage: the input tokens), or Failed. A transcription or speech: SpeechResult, then
# Finished, or Failed; a text-to-text job likewise with Text2TextResult.
Event = Delta | ToolCalls | Vectors | SpeechResult | Text2TextResult | Finished | Failed


class UpstreamError(EngineError):
    """An upstream server refused or failed a request before answering: `code` is the Workers
    AI code to answer with (the web layer picks its HTTP status)."""

    def __init__(self, code: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class ReplicaReport:
    """One upstream replica's state. `url` and `model` are filled only for token holders
    (`/wai/v1/stats`): they name hosts inside the deployment."""

    replica: str  # "replica 2": what clients and public endpoints see
    healthy: bool
    outstanding: int
    max_in_flight: int
    requests: int
    errors: int
    ejections: int
    last_error: str | None
    url: str | None = None
    model: str | None = None

    def as_dict(self) -> dict[str, object]:
        where = {"url": self.url, "model": self.model} if self.url is not None else {}
        return {
            "replica": self.replica,
            **where,
            "healthy": self.healthy,
            "outstanding": self.outstanding,
            "max_in_flight": self.max_in_flight,
            "requests": self.requests,
            "errors": self.errors,
            "ejections": self.ejections,
            "last_error": self.last_error,
        }


@dataclass(frozen=True, slots=True)
class UpstreamReport:
    """How an upstream model runs: its replicas and their health."""

    replicas: tuple[ReplicaReport, ...]

    def public(self) -> dict[str, object]:
        return {"kind": "upstream", "replicas": [r.as_dict() for r in self.replicas]}


class Backend(abc.ABC):
    """One model as the runtime serves it, local or upstream. Methods are called from the event
    loop's thread."""

    name: str

    @abc.abstractmethod
    async def start(self) -> None:
        """Returns once the model can take requests (raises ModelLoadError if it never can)."""

    @abc.abstractmethod
    async def submit(self, request: TaskRequest) -> Generation[Event]:
        """Start a generation (or an embedding, for a model of that task). Raises
        InvalidInput (the request does not suit this model), EngineBusy, PromptTooLong,
        EngineStopped or UpstreamError; returns once the request is queued (local) or the
        upstream has accepted it."""

    @abc.abstractmethod
    def stats(self) -> EngineStats: ...

    @abc.abstractmethod
    def report(self) -> EngineInfo | UpstreamReport | None:
        """How the model runs (for a local one: device, buffer types, weights, the warm-up
        probe, its engine's state; for an upstream one: its replicas and their health)."""

    @property
    def n_ctx_seq(self) -> int | None:
        """Context window per sequence, in tokens (None: not known here)."""
        return None

    @property
    def n_vocab(self) -> int | None:
        """Vocabulary size, which bounds logit_bias token ids (None: not known here)."""
        return None

    def memory_bytes(self) -> int:
        """Memory the model holds in this server (0: none, or unknown)."""
        return 0

    def details(self) -> dict[str, object]:
        """What only token holders see (`/wai/v1/stats`): an upstream model's replica URLs."""
        return {}

    @property
    def failure(self) -> str | None:
        """Why this model cannot answer any more (its engine kept crashing), or None."""
        return None

    def unready(self) -> str | None:
        """Why this model should get no traffic now (engine restarting, queue full, no healthy
        upstream), or None."""
        return None

    @abc.abstractmethod
    async def close(self) -> None:
        """Cancel everything and free the model."""
