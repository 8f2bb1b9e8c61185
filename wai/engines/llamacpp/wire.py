"""llama.cpp's messages on the channel to its engine process (framing: process/frames.py).
 The server sends `Submit`, `Cancel` and `Stop`; the engine sends
`Ready` (or `Fatal`) once, then one `Step` per engine step: every event the step produced, and
the engine's counters after it. One message per step, not per token, is what keeps the channel
off the per-token path (a step at 64 sequences is one frame of ~64 deltas).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from wai.engines.llamacpp.types import (
    Counters,
    Delta,
    EmbedRequest,
    EngineInfo,
    Failed,
    Finished,
    FinishReason,
    Pooling,
    TokenEvent,
    TokenRequest,
    Usage,
    Vectors,
)
from wai.engines.process.frames import Fatal as Fatal
from wai.engines.process.frames import Stop as Stop
from wai.engines.process.frames import frame as frame
from wai.engines.process.frames import read_frame

# --- server -> engine -------------------------------------------------------------------------


class Submit(msgspec.Struct, tag="submit", array_like=True):
    request: TokenRequest


class SubmitEmbed(msgspec.Struct, tag="embed", array_like=True):
    request: EmbedRequest


class Cancel(msgspec.Struct, tag="cancel", array_like=True):
    request_id: int


ToEngine = Submit | SubmitEmbed | Cancel | Stop

# --- engine -> server -------------------------------------------------------------------------


class DeltaMsg(msgspec.Struct, tag="d", array_like=True):
    rid: int
    text: str
    token: int


class EndMsg(msgspec.Struct, tag="e", array_like=True):
    rid: int
    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    queued: float = 0.0
    drafted_tokens: int = 0
    accepted_tokens: int = 0


class FailMsg(msgspec.Struct, tag="f", array_like=True):
    rid: int
    message: str
    preempted: bool = False


class VectorsMsg(msgspec.Struct, tag="v", array_like=True):
    rid: int
    data: bytes  # float32, row-major
    rows: int
    dims: int
    pooling: Pooling | Literal["score"]


EventMsg = DeltaMsg | EndMsg | FailMsg | VectorsMsg


class Ready(msgspec.Struct, tag="ready", array_like=True):
    n_ctx_seq: int
    chat_template: str | None
    metadata: dict[str, str]
    info: EngineInfo
    kv_bytes: int
    weights_bytes: int
    # decode call times by rows as the engine starts with them (empty: no speculation), kept
    # by the server for a restart with the same plan (LlamaCppEngine.step_costs)
    step_costs: dict[int, float] = {}


class Step(msgspec.Struct, tag="step", array_like=True):
    events: list[EventMsg]
    counters: Counters


FromEngine = Ready | Step | Fatal

# --- events <-> messages ----------------------------------------------------------------------


def event_msg(rid: int, ev: TokenEvent) -> EventMsg:
    if isinstance(ev, Delta):
        return DeltaMsg(rid, ev.text, ev.token)
    if isinstance(ev, Finished):
        u = ev.usage
        return EndMsg(
            rid,
            ev.reason,
            u.prompt_tokens,
            u.completion_tokens,
            u.cached_tokens,
            ev.queued_seconds,
            u.drafted_tokens,
            u.accepted_tokens,
        )
    if isinstance(ev, Vectors):
        return VectorsMsg(rid, ev.data, *ev.shape, ev.pooling)
    assert isinstance(ev, Failed), "a token engine never sends ToolCalls"
    return FailMsg(rid, ev.message, ev.preempted)


def msg_event(m: EventMsg) -> tuple[int, TokenEvent]:
    if isinstance(m, DeltaMsg):
        return m.rid, Delta(m.text, m.token)
    if isinstance(m, EndMsg):
        usage = Usage(
            m.prompt_tokens,
            m.completion_tokens,
            m.cached_tokens,
            m.drafted_tokens,
            m.accepted_tokens,
        )
        return m.rid, Finished(m.reason, usage, m.queued)
    if isinstance(m, VectorsMsg):
        return m.rid, Vectors(m.data, (m.rows, m.dims), m.pooling)
    return m.rid, Failed(m.message, preempted=m.preempted)


# --- framing ----------------------------------------------------------------------------------

to_engine = msgspec.msgpack.Decoder(ToEngine)
from_engine = msgspec.msgpack.Decoder(FromEngine)


def submit(request: TokenRequest | EmbedRequest) -> bytes:
    """The frame that queues a request in the engine."""
    if isinstance(request, EmbedRequest):
        return frame(SubmitEmbed(request))
    return frame(Submit(request))


def read_to_engine(fd: int) -> ToEngine | None:
    """The next message to the engine, or None when the server has gone."""
    return read_frame(fd, to_engine)
