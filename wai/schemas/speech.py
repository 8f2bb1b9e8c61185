"""Automatic Speech Recognition input, as Workers AI's Whisper ids take it.

- `@cf/openai/whisper`, `@cf/openai/whisper-tiny-en`: the audio as the raw request body, or
  `{"audio": [0..255, …]}` (the file's bytes as an array of numbers). Output: `{text,
  word_count, words: [{word, start, end}], vtt}`.
- `@cf/openai/whisper-large-v3-turbo`: `{"audio": base64, "task"?, "language"?, "vad_filter"?,
  "initial_prompt"?, "prefix"?, "beam_size"?, "condition_on_previous_text"?,
  "no_speech_threshold"?}`. Output: `{transcription_info: {language, language_probability,
  duration, duration_after_vad}, text, word_count, segments: […], vtt}`.

Every id also takes the raw body (a curl `--data-binary @file.mp3` works on any of them).
Fields outside an id's schema are refused by name: nothing is accepted and ignored.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Literal

from wai.engines.speech.types import Options
from wai.errors import InputTooLarge, InvalidInput

TURBO = "@cf/openai/whisper-large-v3-turbo"
MAX_PROMPT_CHARS = 4096  # initial_prompt, prefix: Whisper reads at most 224 tokens of them

# Whisper's languages (its tokenizer's), as the `language` field takes them
_CODES = (
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha "
    "haw he hi hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr "
    "ms mt my ne nl nn no oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg "
    "th tk tl tr tt uk ur uz vi yi yo zh yue"
)
LANGUAGES = frozenset(_CODES.split())

Shape = Literal["whisper", "turbo", "nova"]


@dataclass(frozen=True, slots=True)
class RawAudio:
    """A request body that is the audio itself (any audio/* or application/octet-stream), and
    the inputs sent beside it (the binding's `userInputs` with a ReadableStream)."""

    data: bytes
    fields: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class TranscriptionInput:
    """Validated: the audio's bytes, how to transcribe them, and the answer's shape."""

    audio: bytes
    options: Options
    shape: Shape
    reject_if_busy: bool = False
    punctuate: bool = True  # nova-3: the transcript as Whisper writes it, else bare words
    detect_language: bool = False  # nova-3: the detected language in the answer


def parse_transcription(model_id: str, body: Any, max_bytes: int) -> TranscriptionInput:
    """Validate a body for a Whisper id; raises InvalidInput naming the offending field."""
    shape: Shape = "turbo" if model_id == TURBO else "whisper"
    raw = None
    if isinstance(body, RawAudio):
        raw = sized(body.data, "/", max_bytes)
        if not body.fields:
            return TranscriptionInput(raw, _default_options(shape), shape)
        if "audio" in body.fields:
            raise InvalidInput("'/audio': given twice (the body is the audio)")
        body = {**body.fields, "audio": None}  # the other inputs, checked as JSON's are
    if not isinstance(body, dict):
        raise InvalidInput("Type mismatch of '/', expected the audio, or an object with 'audio'")
    fields = _TURBO_FIELDS if shape == "turbo" else _WHISPER_FIELDS
    unknown = sorted(set(body) - fields)
    if unknown:
        raise InvalidInput(f"'/{unknown[0]}': not a field of {model_id}'s input")
    reject = reject_if_busy(body.get("options"))
    if shape == "whisper":
        audio = raw or byte_array(body.get("audio"), max_bytes)
        return TranscriptionInput(audio, _default_options(shape), shape, reject)
    audio = raw or base64_audio(body.get("audio"), max_bytes)
    return TranscriptionInput(audio, _turbo(body), shape, reject)


_WHISPER_FIELDS = frozenset({"audio", "options"})
_TURBO_FIELDS = frozenset(
    {
        "audio",
        "task",
        "language",
        "vad_filter",
        "initial_prompt",
        "prefix",
        "beam_size",
        "condition_on_previous_text",
        "no_speech_threshold",
        "options",
    }
)


def _default_options(shape: Shape) -> Options:
    # whisper and whisper-tiny-en answer English (tiny-en knows no other); turbo detects
    return Options(language=None if shape == "turbo" else "en")


def _turbo(body: dict[str, Any]) -> Options:
    task = body.get("task", "transcribe")
    if task not in ("transcribe", "translate"):
        raise InvalidInput("'/task': must be 'transcribe' or 'translate'")
    language = body.get("language")
    if language is not None and language not in LANGUAGES:
        raise InvalidInput(f"'/language': {language!r} is not one of Whisper's language codes")
    beam = body.get("beam_size", 5)
    if not isinstance(beam, int) or isinstance(beam, bool) or not 1 <= beam <= 10:
        raise InvalidInput("'/beam_size': must be an integer from 1 to 10")
    threshold = body.get("no_speech_threshold", 0.6)
    if not isinstance(threshold, int | float) or isinstance(threshold, bool):
        raise InvalidInput("'/no_speech_threshold': must be a number")
    if not 0 <= threshold <= 1:
        raise InvalidInput("'/no_speech_threshold': must be from 0 to 1")
    return Options(
        task=task,
        language=language,
        vad_filter=_bool(body, "vad_filter", False),
        initial_prompt=_text(body, "initial_prompt"),
        prefix=_text(body, "prefix"),
        beam_size=beam,
        condition_on_previous_text=_bool(body, "condition_on_previous_text", True),
        no_speech_threshold=float(threshold),
    )


def _bool(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"'/{name}': must be a boolean")
    return value


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"'/{name}': must be a string")
    if len(value) > MAX_PROMPT_CHARS:
        raise InvalidInput(f"'/{name}': longer than {MAX_PROMPT_CHARS} characters")
    return value or None


def byte_array(audio: Any, max_bytes: int, where: str = "/audio") -> bytes:
    """`audio` as Workers AI's Whisper takes it in JSON: the file's bytes, each a number."""
    if audio is None:
        raise InvalidInput(f"'{where}': required (the audio file's bytes, an array of 0-255)")
    if not isinstance(audio, list):
        raise InvalidInput(f"'{where}': must be an array of numbers from 0 to 255")
    if not audio:
        raise InvalidInput(f"'{where}': the array is empty")
    if len(audio) > max_bytes:
        raise _too_large(len(audio), max_bytes)
    try:
        data = bytes(audio)
        if set(map(type, audio)) == {int}:  # bytes() takes true and false as 1 and 0
            return data
    except (TypeError, ValueError):
        pass
    for i, v in enumerate(audio):  # name the first bad item
        if not isinstance(v, int) or isinstance(v, bool):
            raise InvalidInput(f"'{where}/{i}': must be an integer from 0 to 255") from None
        if not 0 <= v <= 255:
            raise InvalidInput(f"'{where}/{i}': {v} is not a byte value (0 to 255)") from None
    raise InvalidInput(f"'{where}': must be an array of numbers from 0 to 255")


def base64_audio(audio: Any, max_bytes: int, where: str = "/audio") -> bytes:
    if audio is None:
        raise InvalidInput(f"'{where}': required (the audio file, base64-encoded)")
    if not isinstance(audio, str):
        raise InvalidInput(f"'{where}': must be a base64-encoded string")
    if len(audio) > (max_bytes * 4) // 3 + 4:
        raise _too_large(len(audio) * 3 // 4, max_bytes)
    try:
        data = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"'{where}': not valid base64") from None
    return sized(data, where, max_bytes)


def sized(data: bytes, where: str, max_bytes: int) -> bytes:
    if not data:
        raise InvalidInput(f"'{where}': the audio is empty")
    if len(data) > max_bytes:
        raise _too_large(len(data), max_bytes)
    return data


def _too_large(size: int, limit: int) -> InputTooLarge:
    return InputTooLarge(f"the audio ({size} bytes) is larger than the {limit} bytes allowed")


def only_fields(body: dict[str, Any], fields: set[str], model_id: str) -> None:
    """A field outside the id's schema is refused by name (never accepted and ignored)."""
    unknown = sorted(set(body) - fields)
    if unknown:
        raise InvalidInput(f"'/{unknown[0]}': not a field of {model_id}'s input")


def reject_if_busy(options: Any) -> bool:
    """`options.rejectIfBusy` (the REST field; the binding's option is folded into it)."""
    if options is None:
        return False
    if not isinstance(options, dict):
        raise InvalidInput("'/options': must be an object")
    value = options.get("rejectIfBusy", options.get("reject_if_busy", False))
    return value is True
