"""Whisper on CTranslate2, through faster-whisper: one model in the engine process, a request's
audio in, a `Transcription` out.

Audio up to one window (30 s) is transcribed as Whisper does it. Longer audio is decoded and
transcribed a block (4 minutes) at a time, so that an hour costs the memory of a block: each
block goes through faster-whisper's batched pipeline, where Silero VAD (an ONNX model inside
faster-whisper) cuts it into windows of speech at silences and the windows go through the
encoder together, 8 at a time (on 2 cores, 5x faster than the sequential path on 45 s of
speech). A cancelled request stops at its next segment."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel

from wai.engines.speech.types import (
    SAMPLE_RATE,
    Options,
    Segment,
    SpeechConfig,
    SpeechFailed,
    Transcription,
    Word,
)

WINDOW_SECONDS = 30.0
BATCH_SIZE = 8
# Long audio is decoded and transcribed a block at a time (8 windows: one batch), so memory
# holds a block, not the hour; each block ends at its quietest moment in its last seconds.
BLOCK_SECONDS = BATCH_SIZE * WINDOW_SECONDS
CUT_SEARCH_SECONDS = 10.0


class Whisper:
    def __init__(self, config: SpeechConfig) -> None:
        threads = config.n_threads or os.cpu_count() or 1
        self.model = WhisperModel(
            config.path,
            device="cpu",
            compute_type=config.compute_type,
            cpu_threads=threads,
            num_workers=max(1, config.n_slots),  # batches computed at once: one per job thread
            local_files_only=True,
        )
        self.multilingual: bool = self.model.model.is_multilingual

    def transcribe(
        self, blocks: Iterator[np.ndarray], options: Options, cancelled: Callable[[], bool]
    ) -> Transcription:
        """The audio, given as blocks of BLOCK_SECONDS (audio.blocks), transcribed: one window
        or less as Whisper does it, longer audio block by block through the batched pipeline."""
        if options.language is not None and not self.multilingual and options.language != "en":
            raise SpeechFailed("bad_audio", "this model is English-only: language must be 'en'")
        first = next(blocks)
        ahead = next(blocks, None)
        kwargs = _kwargs(options, self.multilingual)
        if ahead is None and len(first) <= WINDOW_SECONDS * SAMPLE_RATE:
            segments, info = self.model.transcribe(first, vad_filter=options.vad_filter, **kwargs)
            return _transcription(info, _segments(segments, cancelled, 0.0))
        rest = blocks if ahead is None else itertools.chain([ahead], blocks)
        return self._long(itertools.chain([first], rest), kwargs, cancelled)

    def _long(
        self, blocks: Iterator[np.ndarray], kwargs: dict[str, Any], cancelled: Callable[[], bool]
    ) -> Transcription:
        """Block by block, each cut at its quietest moment near the end (the rest carried into
        the next), so that no word is cut in two; the language is the first speech's."""
        # a pipeline per request: it keeps the last word's time between its batches
        pipeline = BatchedInferencePipeline(self.model)
        out: list[Segment] = []
        first: Any = None  # the first block's report, or the first one that heard speech
        heard = False
        offset = after_vad = 0.0
        for piece in _at_pauses(blocks):
            segments, info = pipeline.transcribe(piece, batch_size=BATCH_SIZE, **kwargs)
            out += _segments(segments, cancelled, offset)
            offset += len(piece) / SAMPLE_RATE
            after_vad += info.duration_after_vad
            if first is None or (not heard and info.duration_after_vad):
                first = info
            if not heard and info.duration_after_vad:
                heard = True  # its language (given or detected) is the rest's
                kwargs = {**kwargs, "language": info.language}
        return _transcription(first, out, offset, after_vad)


def _at_pauses(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """The blocks re-cut at the quietest 100 ms of each one's last CUT_SEARCH_SECONDS; the last
    block is not cut (one block ahead is read to know it), so audio of one block stays whole."""
    carry = np.zeros(0, np.float32)
    block = next(blocks, None)
    while block is not None:
        following = next(blocks, None)
        audio = np.concatenate([carry, block]) if len(carry) else block
        if following is None:
            yield audio
            return
        cut = _quietest(audio)
        carry = audio[cut:]
        yield audio[:cut]
        block = following


def _quietest(audio: np.ndarray) -> int:
    frame = SAMPLE_RATE // 10
    start = max(0, len(audio) - int(CUT_SEARCH_SECONDS * SAMPLE_RATE))
    tail = audio[start : start + (len(audio) - start) // frame * frame]
    if len(tail) < frame:
        return len(audio)
    energy = np.square(tail.reshape(-1, frame)).mean(axis=1)
    return start + int(np.argmin(energy)) * frame + frame // 2


def _transcription(
    info: Any,
    segments: list[Segment],
    duration: float | None = None,
    after_vad: float | None = None,
) -> Transcription:
    return Transcription(
        language=info.language,
        language_probability=_r(info.language_probability, 4),
        duration=_r(info.duration if duration is None else duration, 3),
        duration_after_vad=_r(info.duration_after_vad if after_vad is None else after_vad, 3),
        segments=segments,
    )


def _kwargs(options: Options, multilingual: bool) -> dict[str, Any]:
    return {
        "language": options.language if multilingual else "en",
        "task": options.task if multilingual else "transcribe",
        "beam_size": options.beam_size,
        "temperature": options.temperature,
        "initial_prompt": options.initial_prompt,
        "prefix": options.prefix,
        "word_timestamps": options.word_timestamps,
        "condition_on_previous_text": options.condition_on_previous_text,
        "no_speech_threshold": options.no_speech_threshold,
    }


def _segments(
    segments: Iterable[Any], cancelled: Callable[[], bool], offset: float
) -> list[Segment]:
    out = []
    for s in segments:  # computed lazily: a cancel stops the work here
        if cancelled():
            raise SpeechFailed("error", "cancelled")
        words = [
            Word(w.word, _r(w.start + offset, 3), _r(w.end + offset, 3), _r(w.probability, 4))
            for w in s.words or ()
        ]
        out.append(
            Segment(
                start=_r(s.start + offset, 3),
                end=_r(s.end + offset, 3),
                text=s.text,
                temperature=float(s.temperature or 0.0),
                avg_logprob=_r(s.avg_logprob, 4),
                compression_ratio=_r(s.compression_ratio, 4),
                no_speech_prob=_r(s.no_speech_prob, 4),
                words=words,
            )
        )
    return out


def _r(x: Any, digits: int) -> float:
    """A plain float (numpy's do not cross the channel), rounded."""
    return round(float(x), digits)
