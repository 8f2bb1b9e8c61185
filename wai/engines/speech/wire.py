"""The speech engine's messages on the channel to its process (framing: process/frames.py).

The server sends `Run` (a job: for speech recognition, the audio as the client sent it, since
decoding happens in the engine process, where a codec's crash costs this model's requests
only), `Cancel` and `Stop`; the engine sends `Ready` (or `Fatal`) once, then `Done` or `Failure`
per request, and `Counts` as its queue changes."""

from __future__ import annotations

import msgspec

from wai.engines.process.frames import Counts as Counts
from wai.engines.process.frames import Fatal, Stop
from wai.engines.process.frames import frame as frame
from wai.engines.speech.types import FailureKind, Job, Result


class Run(msgspec.Struct, tag="run", array_like=True):
    rid: int
    job: Job
    audio: bytes = b""  # as the client sent it: encoded (MP3, WAV, …), or raw float samples


class Cancel(msgspec.Struct, tag="cancel", array_like=True):
    rid: int


ToEngine = Run | Cancel | Stop


class Ready(msgspec.Struct, tag="ready", array_like=True):
    device: str
    detail: str  # how it computes (CTranslate2 int8, ONNX Runtime, …)
    weights_bytes: int
    multilingual: bool
    language: str = ""  # a voice's (espeak's name: en-us, es, …)


class Done(msgspec.Struct, tag="done", array_like=True):
    rid: int
    result: Result
    seconds: float  # compute time


class Failure(msgspec.Struct, tag="failure", array_like=True):
    rid: int
    kind: FailureKind
    message: str


FromEngine = Ready | Done | Failure | Counts | Fatal

to_engine = msgspec.msgpack.Decoder(ToEngine)
from_engine = msgspec.msgpack.Decoder(FromEngine)
