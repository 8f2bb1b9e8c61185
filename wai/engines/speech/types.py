"""The speech engines' contract: what the server asks (a `Job`: audio to transcribe, text to
speak) and what comes back (a `Transcription`: segments with word timings, the language, the
durations; `SpokenAudio`: the encoded audio). Plain data, shared by both sides of the pipe;
nothing here shapes an answer for a client (the request-level code does that)."""

from __future__ import annotations

from typing import Literal

import msgspec

# Why a job failed, for the server to pick the error: input it cannot take (audio it cannot
# decode, text it cannot speak), input longer than the model takes, or the engine's own failure.
FailureKind = Literal["bad_audio", "too_long", "error"]
# what a speech model does: transcribe (Whisper), speak (a Piper voice), or tell whether a
# speaker has finished their turn (smart-turn)
SpeechKind = Literal["asr", "tts", "turn"]

SAMPLE_RATE = 16_000  # what Whisper listens at: audio is resampled to it, mono


class SpeechConfig(msgspec.Struct, frozen=True):
    """How one speech model's engine is set up (crosses into the engine process as JSON)."""

    path: str  # a CTranslate2 Whisper directory, or a Piper voice (.onnx, its .onnx.json beside)
    name: str
    kind: SpeechKind = "asr"
    n_threads: int = 0  # 0: every core
    n_slots: int = 4  # jobs computed at once (a thread each; CTranslate2 replicas share weights)
    max_waiting: int = 64
    max_audio_seconds: float = 4 * 3600.0
    compute_type: str = "int8"  # CTranslate2's: int8 on a CPU (the float16 file converted)


class Options(msgspec.Struct, frozen=True, tag="transcribe"):
    """How to transcribe: faster-whisper's options, as Workers AI's Whisper ids take them."""

    task: Literal["transcribe", "translate"] = "transcribe"
    language: str | None = None  # None: detected (one more pass of the encoder)
    vad_filter: bool = False
    initial_prompt: str | None = None
    prefix: str | None = None
    beam_size: int = 5
    temperature: float = 0.0
    condition_on_previous_text: bool = True
    no_speech_threshold: float = 0.6
    word_timestamps: bool = True


class Word(msgspec.Struct, frozen=True, array_like=True):
    word: str
    start: float
    end: float
    probability: float


class Segment(msgspec.Struct, frozen=True):
    start: float
    end: float
    text: str
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Word]


class Voice(msgspec.Struct, frozen=True, tag="speak"):
    """Text to speak, and the audio wanted: `encoding` (mp3, linear16, flac, opus, aac, mulaw,
    alaw) in `container` (none, wav, ogg), at `sample_rate` (None: the voice's own) and
    `bit_rate` (compressed encodings; None: the codec's default)."""

    text: str
    speed: float = 1.0
    encoding: str = "mp3"
    container: str = "none"
    sample_rate: int | None = None
    bit_rate: int | None = None


class TurnQuery(msgspec.Struct, frozen=True, tag="turn"):
    """Has the speaker finished? The audio travels with it: a file FFmpeg reads, or (with
    `dtype` float32 or float64) raw little-endian samples at 16 kHz."""

    dtype: str | None = None


# A job: the audio's options travel with its bytes (wire.Run); a Voice carries its text.
Job = Options | Voice | TurnQuery


class SpokenAudio(msgspec.Struct, frozen=True, tag="audio"):
    data: bytes
    media_type: str  # audio/mpeg, audio/wav, …
    seconds: float  # the audio's duration
    sample_rate: int


class Transcription(msgspec.Struct, frozen=True, tag="transcription"):
    language: str
    language_probability: float
    duration: float  # seconds of audio
    duration_after_vad: float  # seconds left once silence is cut (= duration without VAD)
    segments: list[Segment]

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()


class SpeechFailed(Exception):
    """A transcription that did not complete, and why."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class Turn(msgspec.Struct, frozen=True, tag="turn"):
    is_complete: bool
    probability: float
    duration: float  # seconds of audio heard


Result = Transcription | SpokenAudio | Turn
