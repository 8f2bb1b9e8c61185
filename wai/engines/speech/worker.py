"""A speech engine process: `python -m wai.engines.speech.worker SPEC` runs one speech model for
the server (Whisper, or a Piper voice), supervised by engine.py through the shared machinery
(engines/process/).

`n_slots` job threads take jobs in arrival order (CTranslate2 runs as many batches at once,
ONNX Runtime's sessions are thread-safe); a reader thread takes the server's frames (a cancel
marks its job, which stops at its next segment or sentence). When the server goes away, the
reader sees end-of-file and the process exits after the jobs in hand."""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgspec
import numpy as np

from wai.engines.process.child import EXIT_LOAD_FAILED
from wai.engines.process.frames import Fatal, Sender, read_jobs, start_child
from wai.engines.speech import audio, wire
from wai.engines.speech.types import (
    SAMPLE_RATE,
    Options,
    Result,
    SpeechConfig,
    SpeechFailed,
    SpokenAudio,
    TurnQuery,
    Voice,
)

log = logging.getLogger("wai.engines")


class WorkerSpec(msgspec.Struct):
    config: SpeechConfig
    fd_in: int
    fd_out: int
    skip_plans: int = 0
    log_level: int = logging.INFO


class Model(Protocol):
    def run(self, req: wire.Run, cancelled: Callable[[], bool]) -> Result: ...

    def ready(self) -> wire.Ready: ...


class _Recognizer:
    """Whisper: the job's audio decoded here, then transcribed."""

    def __init__(self, config: SpeechConfig) -> None:
        from wai.engines.speech.whisper import BLOCK_SECONDS, Whisper

        self.config = config
        self.model = Whisper(config)
        self.block_seconds = BLOCK_SECONDS
        # the first transcription's kernels and buffers, before any request waits on them
        silence = iter([np.zeros(SAMPLE_RATE, np.float32)])
        self.model.transcribe(silence, Options(language="en"), _never)

    def run(self, req: wire.Run, cancelled: Callable[[], bool]) -> Result:
        assert isinstance(req.job, Options)
        limit = self.config.max_audio_seconds
        blocks = audio.blocks(req.audio, limit, self.block_seconds)
        return self.model.transcribe(blocks, req.job, cancelled)

    def ready(self) -> wire.Ready:
        weights = (Path(self.config.path) / "model.bin").stat().st_size
        detail = f"CTranslate2, {self.config.compute_type}"
        return wire.Ready("CPU", detail, weights, self.model.multilingual)


class _Speaker:
    """A Piper voice: the job's text spoken, then encoded as asked."""

    def __init__(self, config: SpeechConfig) -> None:
        from wai.engines.speech.piper import Piper

        self.config = config
        self.voice = Piper(config)
        self.voice.speak("Ready.", 1.0, _never)  # the first run's allocations

    def run(self, req: wire.Run, cancelled: Callable[[], bool]) -> Result:
        job = req.job
        assert isinstance(job, Voice)
        pcm = self.voice.speak(job.text, job.speed, cancelled)
        rate = self.voice.sample_rate
        data, mime = audio.encode(
            pcm, rate, job.encoding, job.container, job.sample_rate, job.bit_rate
        )
        return SpokenAudio(data, mime, round(len(pcm) / rate, 3), job.sample_rate or rate)

    def ready(self) -> wire.Ready:
        weights = Path(self.config.path).stat().st_size
        lang = self.voice.language
        return wire.Ready("CPU", f"ONNX Runtime, {lang}", weights, False, lang)


class _TurnDetector:
    """smart-turn: the job's audio decoded a block at a time (or taken as raw samples), its
    last 8 s heard."""

    def __init__(self, config: SpeechConfig) -> None:
        from wai.engines.speech.turn import WINDOW_SECONDS, SmartTurn

        self.config = config
        self.model = SmartTurn(config)
        self.window_seconds = WINDOW_SECONDS
        self.model.detect(np.zeros(SAMPLE_RATE, np.float32))

    def run(self, req: wire.Run, cancelled: Callable[[], bool]) -> Result:
        job = req.job
        assert isinstance(job, TurnQuery)
        limit = self.config.max_audio_seconds
        if job.dtype in ("float32", "float64"):  # raw samples: as large as the body allows
            return self.model.detect(audio.from_samples(req.audio, job.dtype, limit))
        end, duration = audio.tail(req.audio, limit, self.window_seconds)
        return self.model.detect(end, duration)

    def ready(self) -> wire.Ready:
        weights = Path(self.config.path).stat().st_size
        return wire.Ready("CPU", "ONNX Runtime, int8", weights, False)


def _never() -> bool:
    return False


class _Inbox:
    """The jobs sent, the cancels, and how many jobs are running (for `Counts`)."""

    def __init__(self, out: Sender) -> None:
        self.requests: queue.Queue[wire.Run | None] = queue.Queue()
        self.cancelled: set[int] = set()
        self.out = out
        self._busy = 0
        self._lock = threading.Lock()

    def cancel_check(self, rid: int) -> Callable[[], bool]:
        return lambda: rid in self.cancelled

    def busy(self, change: int) -> None:
        with self._lock:  # frames from several job threads: one at a time on the pipe
            self._busy += change
            self.out.send(wire.Counts(self._busy, self.requests.qsize()))

    def send(self, msg: wire.Done | wire.Failure) -> None:
        with self._lock:
            self.out.send(msg)

    def read(self, fd: int, slots: int) -> None:
        """Reader thread: the server's frames, until Stop or end-of-file; then one end
        marker per job thread."""
        read_jobs(fd, wire.to_engine, wire.Run, self.requests, self.cancelled, slots)


def _serve(model: Model, inbox: _Inbox) -> None:
    """One job thread: jobs in arrival order until the end marker. The models release the GIL
    in their kernels (CTranslate2, ONNX Runtime), so `slots` threads compute together."""
    while (req := inbox.requests.get()) is not None:
        inbox.busy(+1)
        start = time.perf_counter()
        try:
            if req.rid in inbox.cancelled:
                raise SpeechFailed("error", "cancelled")
            result = model.run(req, inbox.cancel_check(req.rid))
        except SpeechFailed as e:
            inbox.send(wire.Failure(req.rid, e.kind, e.message))
        except Exception as e:  # the model's own failure: this request's, not the engine's
            log.exception("speech job %d failed", req.rid)
            inbox.send(wire.Failure(req.rid, "error", f"the speech model failed: {e}"))
        else:
            inbox.send(wire.Done(req.rid, result, time.perf_counter() - start))
        inbox.cancelled.discard(req.rid)
        inbox.busy(-1)


_MODELS: dict[str, Callable[[SpeechConfig], Model]] = {
    "asr": _Recognizer,
    "tts": _Speaker,
    "turn": _TurnDetector,
}


def main(argv: list[str]) -> int:
    spec = msgspec.json.decode(argv[1], type=WorkerSpec)
    config = spec.config
    start_child(spec.log_level, config.name)
    out = Sender(spec.fd_out)
    try:
        model: Model = _MODELS[config.kind](config)
    except (OSError, RuntimeError, ValueError, SpeechFailed) as e:
        out.send(Fatal(f"the speech model {Path(config.path).name} cannot be loaded: {e}"))
        return EXIT_LOAD_FAILED
    inbox = _Inbox(out)
    out.send(model.ready())
    slots = max(1, config.n_slots)
    threading.Thread(target=inbox.read, args=(spec.fd_in, slots), daemon=True).start()
    jobs = [threading.Thread(target=_serve, args=(model, inbox)) for _ in range(slots)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
