"""A speech engine process: `python -m wai.engines.speech.worker SPEC` runs one Whisper model
for the server, supervised by engine.py through the shared machinery (engines/process/).

The main thread transcribes one request at a time, in arrival order; a reader thread takes the
server's frames (a cancel marks its request, which stops at its next segment). When the server
goes away, the reader sees end-of-file and the process exits after the request in hand."""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np

from wai.engines.process.child import EXIT_LOAD_FAILED
from wai.engines.process.frames import Fatal, Sender, Stop, start_child
from wai.engines.speech import audio, wire
from wai.engines.speech.types import SAMPLE_RATE, Options, SpeechConfig, SpeechFailed
from wai.engines.speech.whisper import Whisper

log = logging.getLogger("wai.engines")


class WorkerSpec(msgspec.Struct):
    config: SpeechConfig
    fd_in: int
    fd_out: int
    skip_plans: int = 0
    log_level: int = logging.INFO


class _Inbox:
    def __init__(self) -> None:
        self.requests: queue.Queue[wire.Transcribe | None] = queue.Queue()
        self.cancelled: set[int] = set()

    def cancel_check(self, rid: int) -> Callable[[], bool]:
        return lambda: rid in self.cancelled

    def read(self, fd: int) -> None:
        """Reader thread: the server's frames, until Stop or end-of-file."""
        try:
            while (msg := wire.read_to_engine(fd)) is not None and not isinstance(msg, Stop):
                if isinstance(msg, wire.Transcribe):
                    self.requests.put(msg)
                else:
                    self.cancelled.add(msg.rid)
        except (OSError, ValueError, msgspec.DecodeError) as e:
            log.error("engine channel broken: %s", e)
        finally:
            self.requests.put(None)


def _serve(model: Whisper, config: SpeechConfig, inbox: _Inbox, out: Sender) -> None:
    while (req := inbox.requests.get()) is not None:
        out.send(wire.Counts(1, inbox.requests.qsize()))
        start = time.perf_counter()
        try:
            if req.rid in inbox.cancelled:
                raise SpeechFailed("error", "cancelled")
            pcm = (audio.from_pcm16 if req.pcm16 else audio.decode)(
                req.audio, config.max_audio_seconds
            )
            result = model.transcribe(pcm, req.options, inbox.cancel_check(req.rid))
        except SpeechFailed as e:
            out.send(wire.Failure(req.rid, e.kind, e.message))
        except Exception as e:  # the model's own failure: this request's, not the engine's
            log.exception("transcription %d failed", req.rid)
            out.send(wire.Failure(req.rid, "error", f"the transcription failed: {e}"))
        else:
            out.send(wire.Done(req.rid, result, time.perf_counter() - start))
        inbox.cancelled.discard(req.rid)
        out.send(wire.Counts(0, inbox.requests.qsize()))


def main(argv: list[str]) -> int:
    spec = msgspec.json.decode(argv[1], type=WorkerSpec)
    config = spec.config
    start_child(spec.log_level, config.name)
    out = Sender(spec.fd_out)
    try:
        model = Whisper(config)
        # the first transcription's kernels and buffers, before any request waits on them
        model.transcribe(np.zeros(SAMPLE_RATE, np.float32), Options(language="en"), lambda: False)
    except (OSError, RuntimeError, ValueError) as e:
        out.send(Fatal(f"the speech model {Path(config.path).name} cannot be loaded: {e}"))
        return EXIT_LOAD_FAILED
    inbox = _Inbox()
    weights = (Path(config.path) / "model.bin").stat().st_size
    out.send(wire.Ready("CPU", config.compute_type, weights, model.multilingual))
    threading.Thread(target=inbox.read, args=(spec.fd_in,), daemon=True).start()
    _serve(model, config, inbox, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
