"""schemas/nova.py: nova-3's input as the Whisper stand-in takes it, every option either
honoured or refused by name."""

from __future__ import annotations

import base64

import pytest

from wai.catalog import Catalog
from wai.errors import InputTooLarge, InvalidInput
from wai.schemas.nova import _HONOURED, _REFUSED, parse_nova
from wai.schemas.speech import RawAudio

LIMIT = 1000
AUDIO = {"body": [82, 73, 70, 70], "contentType": "audio/wav"}


def test_the_raw_body_and_both_json_bodies_are_the_audio() -> None:
    raw = parse_nova(RawAudio(b"RIFF"), LIMIT)
    array = parse_nova({"audio": AUDIO}, LIMIT)
    b64 = parse_nova({"audio": {**AUDIO, "body": base64.b64encode(b"RIFF").decode()}}, LIMIT)
    assert raw.audio == array.audio == b64.audio == b"RIFF"
    assert raw.shape == "nova" and raw.options.language == "en"  # Deepgram's default
    assert raw.punctuate and not raw.detect_language


def test_the_options_wai_honours() -> None:
    assert parse_nova({"audio": AUDIO, "language": "es-419"}, LIMIT).options.language == "es"
    assert parse_nova({"audio": AUDIO, "language": "multi"}, LIMIT).options.language is None
    detect = parse_nova({"audio": AUDIO, "language": "fr", "detect_language": True}, LIMIT)
    assert detect.detect_language and detect.options.language is None
    bare = parse_nova({"audio": AUDIO, "punctuate": False, "smart_format": True}, LIMIT)
    assert not bare.punctuate
    quiet = {"audio": AUDIO, "mip_opt_out": True, "channels": 1, "options": {"rejectIfBusy": True}}
    assert parse_nova(quiet, LIMIT).reject_if_busy


def test_every_field_of_the_official_schema_is_honoured_or_refused_by_name() -> None:
    spec = Catalog().get("@cf/deepgram/nova-3")
    assert spec is not None and spec.schema is not None
    official = set(spec.schema["input"]["properties"])
    assert official <= _HONOURED | _REFUSED and not _HONOURED & _REFUSED
    for name in sorted(_REFUSED):
        with pytest.raises(InvalidInput, match=f"'/{name}'"):
            parse_nova({"audio": AUDIO, name: True}, LIMIT)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "'/audio': required"),
        ({"audio": [1, 2]}, "'/audio': must be an object"),
        ({"audio": {"body": [1]}}, "'/audio/contentType': required"),
        ({"audio": {**AUDIO, "size": 3}}, "'/audio/size': not a field"),
        ({"audio": {**AUDIO, "body": []}}, "'/audio/body': the array is empty"),
        ({"audio": {**AUDIO, "body": [1, 256]}}, "'/audio/body/1': 256 is not a byte value"),
        ({"audio": {**AUDIO, "body": "%%"}}, "'/audio/body': not valid base64"),
        ({"audio": AUDIO, "language": 7}, "'/language': must be a BCP-47"),
        ({"audio": AUDIO, "language": "tlh"}, "'/language': 'tlh' is not a language"),
        ({"audio": AUDIO, "punctuate": "yes"}, "'/punctuate': must be a boolean"),
        ({"audio": AUDIO, "smart_format": False}, "'/smart_format'"),
        ({"audio": AUDIO, "channels": 2}, "'/channels'"),
        ({"audio": AUDIO, "vad_events": True}, "WebSocket"),
        ({"audio": AUDIO, "model": "nova-2"}, "'/model': not a field"),
        ("audio", "Type mismatch of '/'"),
    ],
)
def test_refusals_name_the_field(body: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        parse_nova(body, LIMIT)


def test_audio_over_the_limit_is_too_large() -> None:
    with pytest.raises(InputTooLarge):
        parse_nova({"audio": {**AUDIO, "body": [1] * (LIMIT + 1)}}, LIMIT)


def test_a_stream_with_its_inputs_beside_it() -> None:
    inp = parse_nova(RawAudio(b"RIFF", {"detect_language": True, "punctuate": False}), LIMIT)
    assert inp.audio == b"RIFF" and inp.detect_language and not inp.punctuate
    with pytest.raises(InvalidInput, match="'/diarize'"):
        parse_nova(RawAudio(b"RIFF", {"diarize": True}), LIMIT)
    with pytest.raises(InvalidInput, match="given twice"):
        parse_nova(RawAudio(b"RIFF", {"audio": AUDIO}), LIMIT)
