"""The channel between the server and an engine process: length-prefixed msgpack frames.

Two pipes per engine process. Each engine family declares its own message types (a tagged
union each way) and uses these functions to put them on the pipes. Every family's unions hold
`Stop` (server -> engine: finish what you hold, then exit) and `Fatal` (engine -> server: the
model cannot be loaded; restarting would not help).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import struct
from typing import Any, TypeVar

import msgspec

_HEADER = struct.Struct("<I")
HEADER_SIZE = _HEADER.size
MAX_FRAME = 1 << 30  # a frame is a step's events or one request's audio: far below this

T = TypeVar("T")
log = logging.getLogger("wai.engines")


class Stop(msgspec.Struct, tag="stop", array_like=True):
    pass


class Fatal(msgspec.Struct, tag="fatal", array_like=True):
    """The model cannot be loaded (not a crash: restarting would not help)."""

    message: str


def read_jobs(
    fd: int,
    decoder: msgspec.msgpack.Decoder[Any],
    run: type,
    jobs: queue.Queue[Any],
    cancelled: set[int],
    ends: int = 1,
) -> None:
    """A job-taking engine's reader thread: its `run` frames onto `jobs`, a cancel's id into
    `cancelled`, until Stop or end-of-file; then `ends` end markers (None), one per job
    thread."""
    try:
        while (msg := read_frame(fd, decoder)) is not None and not isinstance(msg, Stop):
            if isinstance(msg, run):
                jobs.put(msg)
            else:
                cancelled.add(msg.rid)
    except (OSError, ValueError, msgspec.DecodeError) as e:
        log.error("engine channel broken: %s", e)
    finally:
        for _ in range(ends):
            jobs.put(None)


class Counts(msgspec.Struct, tag="counts", array_like=True):
    """A job-taking engine's jobs now (computing, waiting), sent after each change."""

    busy: int
    waiting: int


_encoder = msgspec.msgpack.Encoder()


def frame(msg: Any) -> bytes:
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


def read_frame(fd: int, decoder: msgspec.msgpack.Decoder[T]) -> T | None:
    """The next message on a blocking pipe, or None when the other side has gone."""
    header = read_exactly(fd, HEADER_SIZE)
    if header is None:
        return None
    body = read_exactly(fd, frame_size(header))
    return None if body is None else decoder.decode(body)


class Sender:
    """An engine's frames to the server. Once the server is gone, everything is dropped."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.gone = False

    def send(self, msg: Any) -> None:
        if self.gone:
            return
        try:
            write_all(self.fd, frame(msg))
        except OSError:  # EPIPE: the server has gone; the reader sees EOF and stops us
            self.gone = True


def start_child(log_level: int, name: str) -> None:
    """What every engine process does first. SIGINT and SIGTERM are ignored: Ctrl-C in a
    terminal, or a service manager stopping the whole group, reaches the engine too, and the
    server, not the engine, decides when to stop (after draining). When the server goes away
    (its end of the request pipe closes), the engine's reader sees end-of-file and stops it, so
    an engine never outlives its server."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=log_level, format=f"%(asctime)s %(levelname)s %(name)s[{name}]: %(message)s"
    )
