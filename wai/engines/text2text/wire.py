"""The text-to-text engine's messages on the channel to its process (framing:
process/frames.py): the server sends `Run`, `Cancel` and `Stop`; the engine sends `Ready` (or
`Fatal`) once, then `Done` or `Failure` per job, and `Counts` as its queue changes."""

from __future__ import annotations

import msgspec

from wai.engines.process.frames import Counts as Counts
from wai.engines.process.frames import Fatal, Stop
from wai.engines.process.frames import frame as frame
from wai.engines.text2text.types import FailureKind, Job, Result


class Run(msgspec.Struct, tag="run", array_like=True):
    rid: int
    job: Job


class Cancel(msgspec.Struct, tag="cancel", array_like=True):
    rid: int


ToEngine = Run | Cancel | Stop


class Ready(msgspec.Struct, tag="ready", array_like=True):
    device: str
    detail: str  # how it computes (CTranslate2 int8, …)
    weights_bytes: int
    languages: list[str]  # a translation model's language codes
    labels: list[str]  # a classifier's
    max_tokens: int  # the longest input one pass takes (longer ones are cut)


class Done(msgspec.Struct, tag="done", array_like=True):
    rid: int
    result: Result
    seconds: float  # compute time (the job's share of its batches)


class Failure(msgspec.Struct, tag="failure", array_like=True):
    rid: int
    kind: FailureKind
    message: str


FromEngine = Ready | Done | Failure | Counts | Fatal

to_engine = msgspec.msgpack.Decoder(ToEngine)
from_engine = msgspec.msgpack.Decoder(FromEngine)
