"""schemas/speech.py: the Whisper ids' inputs, each refusal naming its field."""

from __future__ import annotations

import base64

import pytest

from wai.errors import InputTooLarge, InvalidInput
from wai.schemas.speech import LANGUAGES, RawAudio, parse_transcription

WHISPER = "@cf/openai/whisper"
TURBO = "@cf/openai/whisper-large-v3-turbo"
LIMIT = 1000


def test_the_raw_body_is_the_audio_on_every_id() -> None:
    for model in (WHISPER, "@cf/openai/whisper-tiny-en", TURBO):
        inp = parse_transcription(model, RawAudio(b"RIFF...."), LIMIT)
        assert inp.audio == b"RIFF...."
    assert parse_transcription(WHISPER, RawAudio(b"x"), LIMIT).options.language == "en"
    assert parse_transcription(TURBO, RawAudio(b"x"), LIMIT).options.language is None


def test_whisper_takes_the_files_bytes_as_an_array() -> None:
    inp = parse_transcription(WHISPER, {"audio": [82, 73, 70, 70, 0, 255]}, LIMIT)
    assert inp.audio == b"RIFF\x00\xff" and inp.shape == "whisper"
    rejecting = parse_transcription(WHISPER, {"audio": [1], "options": {"rejectIfBusy": True}}, 9)
    assert rejecting.reject_if_busy


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "'/audio': required"),
        ({"audio": "UklGRg=="}, "'/audio': must be an array"),
        ({"audio": []}, "'/audio': the array is empty"),
        ({"audio": [1, 256]}, "'/audio/1': 256 is not a byte value"),
        ({"audio": [1, -1]}, "'/audio/1': -1 is not a byte value"),
        ({"audio": [1, 2.5]}, "'/audio/1': must be an integer"),
        ({"audio": [True]}, "'/audio/0': must be an integer"),
        ({"audio": [1], "language": "en"}, "'/language': not a field of @cf/openai/whisper"),
        ([1, 2, 3], "expected the audio, or an object"),
    ],
)
def test_whisper_refuses_by_field(body: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_transcription(WHISPER, body, LIMIT)


def test_turbo_takes_base64_and_its_options() -> None:
    audio = base64.b64encode(b"\x00\x01audio").decode()
    inp = parse_transcription(
        TURBO,
        {
            "audio": audio,
            "task": "translate",
            "language": "fr",
            "vad_filter": True,
            "initial_prompt": "Names: Zoë.",
            "prefix": "Bonjour",
            "beam_size": 2,
            "condition_on_previous_text": False,
            "no_speech_threshold": 0.3,
        },
        LIMIT,
    )
    o = inp.options
    assert inp.audio == b"\x00\x01audio" and inp.shape == "turbo"
    assert (o.task, o.language, o.vad_filter, o.beam_size) == ("translate", "fr", True, 2)
    assert (o.initial_prompt, o.prefix) == ("Names: Zoë.", "Bonjour")
    assert (o.condition_on_previous_text, o.no_speech_threshold) == (False, 0.3)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"task": "summarize"}, "'/task'"),
        ({"language": "english"}, "'/language'"),
        ({"vad_filter": "yes"}, "'/vad_filter': must be a boolean"),
        ({"beam_size": 0}, "'/beam_size'"),
        ({"beam_size": 1.5}, "'/beam_size'"),
        ({"no_speech_threshold": 2}, "'/no_speech_threshold'"),
        ({"initial_prompt": 5}, "'/initial_prompt': must be a string"),
        ({"prefix": "x" * 5000}, "'/prefix': longer than"),
        ({"hotwords": "x"}, "'/hotwords': not a field"),
    ],
)
def test_turbo_refuses_by_field(extra: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_transcription(TURBO, {"audio": "AAAA", **extra}, LIMIT)


def test_turbo_refuses_what_is_not_base64() -> None:
    with pytest.raises(InvalidInput, match="'/audio': not valid base64"):
        parse_transcription(TURBO, {"audio": "not base64!"}, LIMIT)
    with pytest.raises(InvalidInput, match="'/audio': must be a base64"):
        parse_transcription(TURBO, {"audio": [1, 2]}, LIMIT)


def test_audio_over_the_size_limit_is_its_own_error() -> None:
    for model, body in (
        (WHISPER, RawAudio(b"x" * (LIMIT + 1))),
        (WHISPER, {"audio": [0] * (LIMIT + 1)}),
        (TURBO, {"audio": base64.b64encode(b"x" * (LIMIT + 30)).decode()}),
    ):
        with pytest.raises(InputTooLarge, match=f"larger than the {LIMIT} bytes"):
            parse_transcription(model, body, LIMIT)


def test_the_languages_are_whispers() -> None:
    assert len(LANGUAGES) == 100
    assert {"en", "fr", "zh", "yue", "haw"} <= LANGUAGES


def test_raw_audio_with_the_inputs_beside_it() -> None:
    """The binding's ReadableStream: the body is the audio, the other inputs come beside it
    and are checked as JSON's are."""
    turbo = parse_transcription(TURBO, RawAudio(b"RIFF", {"language": "fr", "beam_size": 2}), LIMIT)
    assert turbo.audio == b"RIFF" and turbo.options.language == "fr"
    assert turbo.options.beam_size == 2
    busy = RawAudio(b"RIFF", {"options": {"rejectIfBusy": True}})
    assert parse_transcription(WHISPER, busy, LIMIT).reject_if_busy
    with pytest.raises(InvalidInput, match="'/language': not a field"):
        parse_transcription(WHISPER, RawAudio(b"RIFF", {"language": "fr"}), LIMIT)
    with pytest.raises(InvalidInput, match="'/audio': given twice"):
        parse_transcription(TURBO, RawAudio(b"RIFF", {"audio": "UklGRg=="}), LIMIT)
    with pytest.raises(InvalidInput, match="'/beam_size'"):
        parse_transcription(TURBO, RawAudio(b"RIFF", {"beam_size": 99}), LIMIT)
