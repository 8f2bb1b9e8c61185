"""schemas/tts.py: the text-to-speech ids' inputs, with Deepgram's output combinations."""

from __future__ import annotations

import pytest

from wai.errors import InvalidInput
from wai.schemas.tts import DEFAULT_SPEAKER, ENCODINGS, SPEAKERS, parse_speech

AURA_1 = "@cf/deepgram/aura-1"
AURA_2 = "@cf/deepgram/aura-2-en"


def test_aura_defaults_to_mp3_with_its_default_speaker() -> None:
    inp = parse_speech(AURA_2, {"text": "Hello"})
    assert inp.shape == "aura" and inp.language == "en" and inp.speaker == "luna"
    v = inp.voice
    assert (v.text, v.encoding, v.container, v.sample_rate, v.bit_rate) == (
        "Hello",
        "mp3",
        "none",
        22050,
        None,
    )
    assert parse_speech(AURA_1, {"text": "x"}).speaker == "angus"
    assert parse_speech("@cf/deepgram/aura-2-es", {"text": "x"}).language == "es"


def test_each_encoding_gets_deepgrams_default_container_and_rate() -> None:
    expected = {
        "linear16": ("wav", 24000),
        "mulaw": ("wav", 8000),
        "alaw": ("wav", 8000),
        "mp3": ("none", 22050),
        "opus": ("ogg", 48000),
        "flac": ("none", 48000),
        "aac": ("none", 22050),
    }
    assert set(expected) == set(ENCODINGS)
    for encoding, (container, rate) in expected.items():
        v = parse_speech(AURA_2, {"text": "x", "encoding": encoding}).voice
        assert (v.container, v.sample_rate) == (container, rate), encoding


def test_melotts_takes_prompt_and_lang() -> None:
    inp = parse_speech("@cf/myshell-ai/melotts", {"prompt": "Bonjour", "lang": "fr"})
    assert inp.shape == "melotts" and inp.language == "fr" and inp.voice.text == "Bonjour"
    assert inp.voice.encoding == "mp3"


def test_the_speakers_are_the_schemas() -> None:
    assert len(SPEAKERS[AURA_1]) == 12 and len(SPEAKERS[AURA_2]) == 40
    assert len(SPEAKERS["@cf/deepgram/aura-2-es"]) == 10
    assert all(DEFAULT_SPEAKER[m] in SPEAKERS[m] for m in SPEAKERS)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "'/text': required"),
        ({"text": "  "}, "'/text': the text is empty"),
        ({"text": "x", "speaker": "amalthea"}, "'/speaker'"),
        ({"text": "x", "encoding": "ogg"}, "'/encoding'"),
        ({"text": "x", "encoding": "linear16", "container": "ogg"}, "'/container'"),
        ({"text": "x", "encoding": "linear16", "sample_rate": 44100}, "'/sample_rate'"),
        ({"text": "x", "sample_rate": 22050.5}, "'/sample_rate': must be a whole number"),
        ({"text": "x", "encoding": "linear16", "bit_rate": 64000}, "'/bit_rate': linear16 has"),
        ({"text": "x", "encoding": "opus", "bit_rate": 1}, "'/bit_rate': opus takes"),
        ({"text": "x", "voice": "y"}, "'/voice': not a field"),
        ({"text": "x", "options": 3}, "'/options'"),
    ],
)
def test_aura_refuses_by_field(body: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_speech(AURA_1, body)
