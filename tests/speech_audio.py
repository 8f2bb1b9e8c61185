"""Real speech for the speech tests: sentences spoken by espeak-ng (Debian's package, which
`make test` installs when missing), and the same audio in other containers, encoded by PyAV."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np

SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please remember to water the garden every morning before work.",
)


def speak(text: str, path: Path, speed: int = 130) -> bytes:
    """`text` spoken by espeak-ng as a WAV file (22,050 Hz, 16-bit mono)."""
    espeak = shutil.which("espeak-ng")
    assert espeak, "the speech tests need espeak-ng (Debian: apt-get install espeak-ng)"
    subprocess.run([espeak, "-s", str(speed), "-w", str(path), text], check=True)
    return path.read_bytes()


def samples(data: bytes) -> tuple[np.ndarray, int]:
    """A file's audio as int16 mono samples, and its rate."""
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.audio[0]
        rate = stream.rate
        frames = [f.to_ndarray().reshape(-1) for f in c.decode(stream)]
    pcm = np.concatenate(frames)
    if pcm.dtype != np.int16:
        pcm = (np.clip(pcm, -1, 1) * 32767).astype(np.int16)
    return pcm, rate


def encode(data: bytes, container: str, codec: str, rate: int | None = None) -> bytes:
    """The same audio in another container and codec (mp3, ogg/opus, flac, wav, …)."""
    pcm, src_rate = samples(data)
    out = io.BytesIO()
    with av.open(out, mode="w", format=container) as c:
        stream = c.add_stream(codec, rate=rate or src_rate, layout="mono")
        resampler = av.AudioResampler(
            format=stream.codec_context.format or "s16", layout="mono", rate=rate or src_rate
        )
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = src_rate
        for f in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(f):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    return out.getvalue()


def wav(pcm: np.ndarray, rate: int) -> bytes:
    """int16 mono samples as a WAV file."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="wav") as c:
        stream = c.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            c.mux(packet)
    return out.getvalue()


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower().replace("riverbank", "river bank"))


def recovered(said: str, heard: str) -> float:
    """The share of the words said that were heard (each at most as often as it was said)."""
    heard_words = words(heard)
    hits = 0
    for w in words(said):
        if w in heard_words:
            heard_words.remove(w)
            hits += 1
    return hits / len(words(said))
