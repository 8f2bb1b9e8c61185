"""Audio in: any container and codec FFmpeg reads (MP3, WAV, OGG/Opus, FLAC, WebM, M4A, …),
through PyAV's bundled FFmpeg, decoded and resampled to what Whisper listens to (16 kHz mono),
with a bound on the duration checked while decoding (a small file cannot expand to hours)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import av
import numpy as np

from wai.engines.speech.types import SAMPLE_RATE, SpeechFailed

log = logging.getLogger("wai.engines")

# FFmpeg's own logging goes to stderr by default: a bad upload would print there
av.logging.set_level(av.logging.PANIC)


def blocks(data: bytes, max_seconds: float, block_seconds: float) -> Iterator[np.ndarray]:
    """The audio as float32 blocks of `block_seconds` (the last one shorter) at 16 kHz, mono,
    decoded as they are asked for: memory holds one block, however long the audio. Raises
    SpeechFailed: "bad_audio" (no audio stream, not decodable, no samples), "too_long" (over
    `max_seconds`: at once when the container says so, else when decoding reaches it)."""
    if not data:
        raise SpeechFailed("bad_audio", "the audio is empty")
    limit = int(max_seconds * SAMPLE_RATE)
    size = max(1, int(block_seconds * SAMPLE_RATE))
    pending: list[np.ndarray] = []
    held = total = 0
    for samples in _decoded(data, max_seconds):
        total += len(samples)
        if total > limit:
            raise _too_long(max_seconds)
        pending.append(samples)
        held += len(samples)
        while held >= size:
            joined = np.concatenate(pending)
            yield _float(joined[:size])
            pending, held = [joined[size:]], held - size
    if total == 0:
        raise SpeechFailed("bad_audio", "the audio decodes to no samples")
    if held:
        yield _float(np.concatenate(pending))


def tail(data: bytes, max_seconds: float, seconds: float) -> tuple[np.ndarray, float]:
    """The audio's last `seconds` (float32, 16 kHz, mono) and its whole duration, decoded a
    block at a time: memory holds two blocks, however long the audio. Raises as `blocks`."""
    size = int(seconds * SAMPLE_RATE)
    last = np.zeros(0, np.float32)
    total = 0
    for block in blocks(data, max_seconds, seconds):
        total += len(block)
        last = np.concatenate([last, block])[-size:]
    return last, total / SAMPLE_RATE


def _decoded(data: bytes, max_seconds: float) -> Iterator[np.ndarray]:
    """int16 samples at 16 kHz, mono, frame by frame, through FFmpeg."""
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise SpeechFailed("bad_audio", "the file holds no audio stream")
            # the container's own duration (microseconds), when it gives one: refused before
            # any work (a file that understates it is stopped by the count of samples)
            if container.duration is not None and container.duration > max_seconds * 1.01e6:
                raise _too_long(max_seconds)
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    yield out.to_ndarray().reshape(-1)
            for out in resampler.resample(None):
                yield out.to_ndarray().reshape(-1)
    except SpeechFailed:
        raise
    except (av.FFmpegError, ValueError, IndexError) as e:
        log.info("undecodable audio: %s", e)
        raise SpeechFailed(
            "bad_audio",
            "the audio could not be decoded: not a format this server reads (MP3, WAV, OGG, "
            "Opus, FLAC, WebM, M4A, … as FFmpeg reads them), or damaged",
        ) from None


def _float(samples: np.ndarray) -> np.ndarray:
    return samples.astype(np.float32) / 32768.0


def _too_long(max_seconds: float) -> SpeechFailed:
    message = f"the audio is longer than the {max_seconds:.0f} s this model takes"
    return SpeechFailed("too_long", message)


def from_samples(data: bytes, dtype: str, max_seconds: float) -> np.ndarray:
    """Raw little-endian float samples (float32 or float64) at 16 kHz, mono."""
    width = 4 if dtype == "float32" else 8
    if not data or len(data) % width:
        raise SpeechFailed("bad_audio", f"raw {dtype} audio must be whole {width}-byte samples")
    if len(data) // width > max_seconds * SAMPLE_RATE:
        raise SpeechFailed("too_long", f"the audio is longer than {max_seconds:.0f} s")
    samples = np.frombuffer(data, dtype=f"<f{width}")
    if not np.isfinite(samples).all():
        raise SpeechFailed("bad_audio", "the samples are not all finite numbers")
    return samples.astype(np.float32)


# encoding -> (FFmpeg codec, its sample format, raw container, MIME type when raw)
_CODECS: dict[str, tuple[str, str, str, str]] = {
    "mp3": ("libmp3lame", "s16p", "mp3", "audio/mpeg"),
    "linear16": ("pcm_s16le", "s16", "s16le", "audio/l16"),
    "flac": ("flac", "s16", "flac", "audio/flac"),
    "opus": ("libopus", "s16", "ogg", "audio/ogg"),
    "aac": ("aac", "fltp", "adts", "audio/aac"),
    "mulaw": ("pcm_mulaw", "s16", "mulaw", "audio/basic"),
    "alaw": ("pcm_alaw", "s16", "alaw", "audio/alaw"),
}
_CONTAINERS = {"wav": ("wav", "audio/wav"), "ogg": ("ogg", "audio/ogg")}


def encode(
    pcm: np.ndarray,
    rate: int,
    encoding: str,
    container: str,
    out_rate: int | None = None,
    bit_rate: int | None = None,
) -> tuple[bytes, str]:
    """int16 mono samples encoded (`encoding` in `container`, "none": the codec's own stream),
    and the MIME type. Raises SpeechFailed("bad_audio") for a combination FFmpeg refuses."""
    codec, fmt, raw_format, mime = _CODECS[encoding]
    if container != "none":
        raw_format, mime = _CONTAINERS[container]
    out = io.BytesIO()
    target = out_rate or rate
    try:
        with av.open(out, mode="w", format=raw_format) as c:
            stream = c.add_stream(codec, rate=target, layout="mono")
            assert isinstance(stream, av.audio.stream.AudioStream)
            if bit_rate:
                stream.codec_context.bit_rate = bit_rate
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = rate
            size = stream.codec_context.frame_size or None
            resampler = av.AudioResampler(format=fmt, layout="mono", rate=target, frame_size=size)
            for f in [*resampler.resample(frame), *resampler.resample(None)]:
                c.mux(stream.encode(f))
            c.mux(stream.encode(None))
    except (av.FFmpegError, ValueError) as e:
        raise SpeechFailed(
            "bad_audio", f"{encoding} in {container} at {target} Hz cannot be encoded: {e}"
        ) from None
    return out.getvalue(), mime
