"""Text-to-Speech input, as Workers AI's ids take it.

- `@cf/myshell-ai/melotts`: `{"prompt": string, "lang"?: string}` → `{"audio": <base64 MP3>}`.
- `@cf/deepgram/aura-1`, `aura-2-en`, `aura-2-es`: `{"text": string, "speaker"?, "encoding"?,
  "container"?, "sample_rate"?, "bit_rate"?}` → the audio itself (binary; `audio/mpeg` by
  default), with Deepgram's combinations of encoding, container and rate.

Fields outside an id's schema are refused by name; so is a `lang` or `encoding` combination the
server cannot produce."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from wai.engines.speech.types import Voice
from wai.errors import InvalidInput
from wai.schemas.speech import only_fields, reject_if_busy

MELOTTS = "@cf/myshell-ai/melotts"
MAX_AURA_CHARS = 2000  # Deepgram's limit on one request's text
MAX_TEXT_CHARS = 4096  # melotts and OpenAI's /v1/audio/speech (OpenAI's own limit)

_AURA_1 = "angus asteria arcas orion orpheus athena luna zeus perseus helios hera stella"
_AURA_2_EN = (
    "amalthea andromeda apollo arcas aries asteria athena atlas aurora callista cora cordelia "
    "delia draco electra harmonia helena hera hermes hyperion iris janus juno jupiter luna mars "
    "minerva neptune odysseus ophelia orion orpheus pandora phoebe pluto saturn thalia theia "
    "vesta zeus"
)
_AURA_2_ES = "sirio nestor carina celeste alvaro diana aquila selena estrella javier"
SPEAKERS: dict[str, tuple[str, ...]] = {
    "@cf/deepgram/aura-1": tuple(_AURA_1.split()),
    "@cf/deepgram/aura-2-en": tuple(_AURA_2_EN.split()),
    "@cf/deepgram/aura-2-es": tuple(_AURA_2_ES.split()),
}
DEFAULT_SPEAKER = {
    "@cf/deepgram/aura-1": "angus",
    "@cf/deepgram/aura-2-en": "luna",
    "@cf/deepgram/aura-2-es": "aquila",
}
# the language each id speaks (melotts: its `lang`)
LANGUAGE = {
    "@cf/deepgram/aura-1": "en",
    "@cf/deepgram/aura-2-en": "en",
    "@cf/deepgram/aura-2-es": "es",
}


@dataclass(frozen=True, slots=True)
class _Encoding:
    containers: tuple[str, ...]  # the first is the default
    rates: tuple[int, ...] | None  # None: the voice's own; the first is the default
    bit_rates: tuple[int, int] | None  # a range, for compressed encodings


# Deepgram's table (its TTS media output settings)
ENCODINGS: dict[str, _Encoding] = {
    "linear16": _Encoding(("wav", "none"), (24000, 8000, 16000, 32000, 48000), None),
    "mulaw": _Encoding(("wav", "none"), (8000, 16000), None),
    "alaw": _Encoding(("wav", "none"), (8000, 16000), None),
    "mp3": _Encoding(("none",), (22050,), (32000, 48000)),
    "opus": _Encoding(("ogg",), (48000,), (4000, 650000)),
    "flac": _Encoding(("none",), (48000, 8000, 16000, 22050, 32000), None),
    "aac": _Encoding(("none",), (22050,), (4000, 192000)),
}

Shape = Literal["melotts", "aura"]


@dataclass(frozen=True, slots=True)
class SpeechInput:
    """Validated: what to say, how to encode it, the language, and the answer's shape."""

    voice: Voice
    shape: Shape
    language: str
    speaker: str | None = None
    reject_if_busy: bool = False


def parse_speech(model_id: str, body: Any) -> SpeechInput:
    """Validate a body for a text-to-speech id; raises InvalidInput naming the field."""
    if not isinstance(body, dict):
        raise InvalidInput("Type mismatch of '/', expected an object")
    reject = reject_if_busy(body.get("options"))
    if model_id == MELOTTS:
        only_fields(body, {"prompt", "lang", "options"}, model_id)
        text = _text(body, "prompt", MAX_TEXT_CHARS)
        lang = body.get("lang", "en")
        if not isinstance(lang, str) or not lang:
            raise InvalidInput("'/lang': must be a language code such as 'en'")
        return SpeechInput(Voice(text), "melotts", lang, reject_if_busy=reject)
    fields = {"text", "speaker", "encoding", "container", "sample_rate", "bit_rate", "options"}
    only_fields(body, fields, model_id)
    text = _text(body, "text", MAX_AURA_CHARS)
    speaker = body.get("speaker", DEFAULT_SPEAKER.get(model_id))
    speakers = SPEAKERS.get(model_id, ())
    if speakers and speaker not in speakers:
        raise InvalidInput(f"'/speaker': must be one of {', '.join(speakers)}")
    voice = output_format(body, text)
    return SpeechInput(voice, "aura", LANGUAGE.get(model_id, "en"), speaker, reject)


def output_format(body: dict[str, Any], text: str) -> Voice:
    """`encoding`, `container`, `sample_rate` and `bit_rate` checked together, with
    Deepgram's defaults."""
    encoding = body.get("encoding", "mp3")
    if encoding not in ENCODINGS:
        raise InvalidInput(f"'/encoding': must be one of {', '.join(ENCODINGS)}")
    spec = ENCODINGS[encoding]
    container = body.get("container", spec.containers[0])
    if container not in spec.containers:
        raise InvalidInput(f"'/container': {encoding} comes in {' or '.join(spec.containers)}")
    rate = body.get("sample_rate")
    if rate is not None:
        if not isinstance(rate, int | float) or isinstance(rate, bool) or rate != int(rate):
            raise InvalidInput("'/sample_rate': must be a whole number of Hz")
        if spec.rates is not None and int(rate) not in spec.rates:
            allowed = ", ".join(map(str, sorted(spec.rates)))
            raise InvalidInput(f"'/sample_rate': {encoding} is made at {allowed} Hz")
    bit_rate = body.get("bit_rate")
    if bit_rate is not None:
        if spec.bit_rates is None:
            raise InvalidInput(f"'/bit_rate': {encoding} has no bit rate to set")
        low, high = spec.bit_rates
        if not isinstance(bit_rate, int | float) or isinstance(bit_rate, bool):
            raise InvalidInput("'/bit_rate': must be a number of bits per second")
        if not low <= bit_rate <= high:
            raise InvalidInput(f"'/bit_rate': {encoding} takes {low} to {high} bits per second")
    default_rate = spec.rates[0] if spec.rates else None
    return Voice(
        text,
        encoding=encoding,
        container=container,
        sample_rate=int(rate) if rate is not None else default_rate,
        bit_rate=int(bit_rate) if bit_rate is not None else None,
    )


def _text(body: dict[str, Any], name: str, limit: int) -> str:
    value = body.get(name)
    if value is None:
        raise InvalidInput(f"'/{name}': required (the text to speak)")
    if not isinstance(value, str):
        raise InvalidInput(f"'/{name}': must be a string")
    if not value.strip():
        raise InvalidInput(f"'/{name}': the text is empty")
    if len(value) > limit:
        raise InvalidInput(f"'/{name}': longer than the {limit} characters one request takes")
    return value
