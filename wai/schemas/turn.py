"""Turn detection input, as `@cf/pipecat-ai/smart-turn-v2` takes it: `{"audio": <base64>,
"dtype"?: "uint8" | "float32" | "float64"}`, or the audio as the raw body. With `dtype`
float32 or float64 the bytes are raw little-endian samples at 16 kHz, mono; otherwise (uint8,
the default) they are an audio file FFmpeg reads (WAV, MP3, …). Output: `{"is_complete":
bool, "probability": number}`."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from wai.engines.speech.types import TurnQuery
from wai.errors import InputTooLarge, InvalidInput
from wai.schemas.speech import RawAudio, reject_if_busy

DTYPES = ("uint8", "float32", "float64")


@dataclass(frozen=True, slots=True)
class TurnInput:
    audio: bytes
    query: TurnQuery
    reject_if_busy: bool = False


def parse_turn(model_id: str, body: Any, max_bytes: int) -> TurnInput:
    if isinstance(body, RawAudio):
        return TurnInput(_sized(body.data, max_bytes), TurnQuery())
    if not isinstance(body, dict):
        raise InvalidInput("Type mismatch of '/', expected the audio, or an object with 'audio'")
    unknown = sorted(set(body) - {"audio", "dtype", "options"})  # a field it cannot honour
    if unknown:
        raise InvalidInput(f"'/{unknown[0]}': not a field of {model_id}'s input")
    dtype = body.get("dtype", "uint8")
    if dtype not in DTYPES:
        raise InvalidInput(f"'/dtype': must be one of {', '.join(DTYPES)}")
    audio = body.get("audio")
    if audio is None:
        raise InvalidInput("'/audio': required (the audio, base64-encoded)")
    if not isinstance(audio, str):
        raise InvalidInput("'/audio': must be a base64-encoded string")
    if len(audio) > (max_bytes * 4) // 3 + 4:
        raise InputTooLarge(f"the audio is larger than the {max_bytes} bytes allowed")
    try:
        data = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("'/audio': not valid base64") from None
    reject = reject_if_busy(body.get("options"))
    query = TurnQuery(None if dtype == "uint8" else dtype)
    return TurnInput(_sized(data, max_bytes), query, reject)


def _sized(data: bytes, max_bytes: int) -> bytes:
    if not data:
        raise InvalidInput("'/audio': the audio is empty")
    if len(data) > max_bytes:
        raise InputTooLarge(f"the audio ({len(data)} bytes) is larger than the {max_bytes} allowed")
    return data
