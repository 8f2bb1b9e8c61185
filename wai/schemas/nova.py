"""Deepgram's nova-3 as Workers AI takes it, answered by the local Whisper stand-in.

Input: the audio as the raw request body, or `{"audio": {"body", "contentType"}, …options}`
where over JSON `body` is the file's bytes (an array of 0-255, as the Whisper ids take them)
or a base64 string. Through the Worker binding, `body` is a ReadableStream: workerd sends it as
the request body with the other inputs as JSON in the query (`userInputs`).

Output: Deepgram's pre-recorded shape, `{"results": {"channels": [{"alternatives":
[{"transcript", "confidence", "words": [{"word", "start", "end", "confidence",
"punctuated_word"}]}]}]}}`.

Of Deepgram's options the stand-in honours those it can: `language` (a BCP-47 tag, its
language read; `multi` detects), `detect_language` (the language detected and reported),
`punctuate` (false: bare lowercase words, as Deepgram gives them), `smart_format` (true: what
Whisper writes already), `mip_opt_out` (nothing leaves this machine), `channels` (1). Every
other option (diarize, redact, summaries, the WebSocket-only ones, …) is refused by name.
"""

from __future__ import annotations

from typing import Any

from wai.engines.speech.types import Options
from wai.errors import InvalidInput
from wai.schemas.speech import (
    LANGUAGES,
    RawAudio,
    TranscriptionInput,
    base64_audio,
    byte_array,
    reject_if_busy,
    sized,
)

_HONOURED = frozenset(
    {"audio", "language", "detect_language", "punctuate", "smart_format", "mip_opt_out"}
    | {"channels", "options"}
)
# the official schema's other fields: known, and refused by name (not "unknown")
_REFUSED = frozenset(
    {
        "custom_topic_mode", "custom_topic", "custom_intent_mode", "custom_intent",
        "detect_entities", "diarize", "dictation", "encoding", "extra", "filler_words",
        "keyterm", "keywords", "measurements", "mode", "multichannel", "numerals", "paragraphs",
        "profanity_filter", "redact", "replace", "search", "sentiment", "topics", "utterances",
        "utt_split", "interim_results", "endpointing", "vad_events", "utterance_end_ms",
    }
)  # fmt: skip
_STREAMING = frozenset({"interim_results", "endpointing", "vad_events", "utterance_end_ms"})


def parse_nova(body: Any, max_bytes: int) -> TranscriptionInput:
    """Validate a nova-3 body; raises InvalidInput naming the offending field. The raw audio
    may come with the other inputs beside it (the binding sends a ReadableStream that way)."""
    if isinstance(body, RawAudio):
        audio, rest = sized(body.data, "/", max_bytes), dict(body.fields or {})
        if "audio" in rest:
            raise InvalidInput("'/audio': given twice (the body is the audio)")
    elif isinstance(body, dict):
        audio, rest = _audio(body.get("audio"), max_bytes), body
    else:
        raise InvalidInput("Type mismatch of '/', expected the audio, or an object with 'audio'")
    _refuse(rest)
    detect = _bool(rest, "detect_language", False)
    language = _language(rest.get("language"))
    punctuate = _bool(rest, "punctuate", True)
    if _bool(rest, "smart_format", True) is False:
        raise InvalidInput(
            "'/smart_format': the local stand-in (Whisper) always writes formatted text; "
            "false cannot be honoured"
        )
    _bool(rest, "mip_opt_out", False)
    channels = rest.get("channels", 1)
    if channels != 1 or isinstance(channels, bool):
        raise InvalidInput("'/channels': the local stand-in transcribes one channel (mono): 1")
    options = Options(language=None if detect else language)
    reject = reject_if_busy(rest.get("options"))
    return TranscriptionInput(audio, options, "nova", reject, punctuate, detect)


def _refuse(body: dict[str, Any]) -> None:
    for name in sorted(set(body) - _HONOURED):
        if name in _STREAMING:
            raise InvalidInput(f"'/{name}': nova-3's WebSocket streaming option; not served here")
        if name in _REFUSED:
            raise InvalidInput(
                f"'/{name}': not done by the local stand-in for nova-3 (Whisper); "
                "refused rather than ignored"
            )
        raise InvalidInput(f"'/{name}': not a field of @cf/deepgram/nova-3's input")


def _audio(audio: Any, max_bytes: int) -> bytes:
    if audio is None:
        raise InvalidInput("'/audio': required ({body, contentType})")
    if not isinstance(audio, dict):
        raise InvalidInput("'/audio': must be an object {body, contentType}")
    unknown = sorted(set(audio) - {"body", "contentType"})
    if unknown:
        raise InvalidInput(f"'/audio/{unknown[0]}': not a field of audio")
    kind = audio.get("contentType")
    if not isinstance(kind, str) or not kind:
        raise InvalidInput("'/audio/contentType': required, the audio's MIME type")
    body = audio.get("body")
    if isinstance(body, str):
        return base64_audio(body, max_bytes, "/audio/body")
    return byte_array(body, max_bytes, "/audio/body")


def _language(tag: Any) -> str | None:
    """A BCP-47 tag as Whisper's language (its primary subtag); "multi": detected."""
    if tag is None:
        return "en"  # Deepgram's default
    if not isinstance(tag, str):
        raise InvalidInput("'/language': must be a BCP-47 language tag")
    if tag == "multi":
        return None
    primary = tag.split("-")[0].lower()
    if primary not in LANGUAGES:
        raise InvalidInput(f"'/language': {tag!r} is not a language the stand-in (Whisper) knows")
    return primary


def _bool(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"'/{name}': must be a boolean")
    return value
