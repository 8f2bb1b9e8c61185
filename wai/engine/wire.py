"""The channel between the server and an engine process: length-prefixed msgpack frames.

Two pipes per engine process. The server sends `Submit`, `Cancel` and `Stop`; the engine sends
`Ready` (or `Fatal`) once, then one `Step` per engine step: every event the step produced, and
the engine's counters after it. One message per step, not per token, is what keeps the channel
off the per-token path (a step at 64 sequences is one frame of ~64 deltas).
"""

from __future__ import annotations

import os
import struct
from typing import Literal

import msgspec

from wai.engine.types import (
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

_HEADER = struct.Struct("<I")
HEADER_SIZE = _HEADER.size
MAX_FRAME = 1 << 30  # a frame is a step's events: far below this; more means a broken channel

# --- server -> engine -------------------------------------------------------------------------


class Submit(msgspec.Struct, tag="submit", array_like=True):
    request: TokenRequest


class SubmitEmbed(msgspec.Struct, tag="embed", array_like=True):
    request: EmbedRequest


class Cancel(msgspec.Struct, tag="cancel", array_like=True):
    request_id: int


class Stop(msgspec.Struct, tag="stop", array_like=True):
    pass


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


class Fatal(msgspec.Struct, tag="fatal", array_like=True):
    """The model cannot be loaded (not a crash: restarting would not help)."""

    message: str


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

_encoder = msgspec.msgpack.Encoder()
to_engine = msgspec.msgpack.Decoder(ToEngine)
from_engine = msgspec.msgpack.Decoder(FromEngine)


def submit(request: TokenRequest | EmbedRequest) -> bytes:
    """The frame that queues a request in the engine."""
    if isinstance(request, EmbedRequest):
        return frame(SubmitEmbed(request))
    return frame(Submit(request))


def frame(msg: ToEngine | FromEngine) -> bytes:
    body = _encoder.encode(msg)
    return _HEADER.pack(len(body)) + body


def frame_size(header: bytes) -> int:
    (n,) = _HEADER.unpack(header)
    if n > MAX_FRAME:
        raise ValueError(f"frame of {n} bytes: the channel is out of step")
    return int(n)


def write_all(fd: int, data: bytes) -> None:
    """Blocking write of a whole frame (a pipe may take it in parts)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_exactly(fd: int, n: int) -> bytes | None:
    """Blocking read of n bytes; None at end of file (the other side has gone)."""
    parts = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def read_frame(fd: int) -> ToEngine | None:
    """The next message to the engine, or None when the server has gone."""
    header = read_exactly(fd, HEADER_SIZE)
    if header is None:
        return None
    body = read_exactly(fd, frame_size(header))
    return None if body is None else to_engine.decode(body)
