"""Text-to-speech on a real server: the embedded Piper voice in its own engine process, heard
back by the embedded Whisper (a round trip), every encoding Deepgram's ids offer, melotts' JSON,
OpenAI's /v1/audio/speech through the `openai` SDK, refusals by name, and usage."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from openai import BadRequestError, OpenAI

from tests.conftest import TOKEN, Server, own_server
from tests.speech_audio import SENTENCES, recovered, samples
from wai.catalog import EMBEDDED_TTS_NAME

AURA = "@cf/deepgram/aura-2-en"
MELO = "@cf/myshell-ai/melotts"
WHISPER = "@cf/openai/whisper"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from own_server(tmp_path_factory, "tts")


def _run(server: Server, model: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(server.run_url(model), headers=server.auth, json=body, timeout=120)


def _heard(server: Server, audio: bytes) -> str:
    r = requests.post(server.run_url(WHISPER), headers=server.auth, data=audio, timeout=120)
    assert r.status_code == 200, r.text
    text: str = r.json()["result"]["text"]
    return text


def test_spoken_sentences_are_heard_back(server: Server) -> None:
    for said in SENTENCES:
        r = _run(server, AURA, {"text": said})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "audio/mpeg"
        assert r.headers["x-wai-model"] == f"{EMBEDDED_TTS_NAME} (one voice for every speaker)"
        pcm, rate = samples(r.content)
        assert rate == 22050 and 1.5 < len(pcm) / rate < 10
        assert recovered(said, _heard(server, r.content)) >= 0.75


def test_melotts_answers_base64_mp3_in_the_envelope(server: Server) -> None:
    r = _run(server, MELO, {"prompt": SENTENCES[1]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and set(body["result"]) == {"audio"}
    mp3 = base64.b64decode(body["result"]["audio"])
    assert recovered(SENTENCES[1], _heard(server, mp3)) >= 0.75


@pytest.mark.parametrize(
    ("body", "mime", "rate"),
    [
        ({"encoding": "linear16"}, "audio/wav", 24000),
        ({"encoding": "linear16", "container": "wav", "sample_rate": 16000}, "audio/wav", 16000),
        ({"encoding": "flac"}, "audio/flac", 48000),
        ({"encoding": "opus"}, "audio/ogg", 48000),
        ({"encoding": "mulaw"}, "audio/wav", 8000),
        ({"encoding": "alaw", "sample_rate": 16000}, "audio/wav", 16000),
        ({"encoding": "aac"}, "audio/aac", 22050),
        ({"encoding": "mp3", "bit_rate": 32000}, "audio/mpeg", 22050),
    ],
)
def test_every_encoding_is_real_audio(
    server: Server, body: dict[str, Any], mime: str, rate: int
) -> None:
    r = _run(server, AURA, {"text": "Hello there.", **body})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == mime
    pcm, got = samples(r.content)
    assert got == rate and 0.3 < len(pcm) / rate < 5
    assert abs(pcm.astype(float)).max() > 1000  # speech, not silence


def test_raw_pcm_has_no_header(server: Server) -> None:
    r = _run(server, AURA, {"text": "Hello there.", "encoding": "linear16", "container": "none"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/l16"
    assert not r.content.startswith(b"RIFF") and len(r.content) % 2 == 0
    assert 0.3 < len(r.content) / 2 / 24000 < 5


@pytest.mark.parametrize(
    ("model", "body", "words"),
    [
        (AURA, {"text": "hi", "speaker": "angus"}, "'/speaker'"),  # aura-1's, not aura-2's
        (AURA, {"text": "hi", "encoding": "opus", "container": "wav"}, "'/container'"),
        (AURA, {"text": "hi", "encoding": "mp3", "sample_rate": 8000}, "'/sample_rate'"),
        (AURA, {"text": "hi", "encoding": "flac", "bit_rate": 1000}, "'/bit_rate'"),
        (AURA, {"text": "hi", "encoding": "wav"}, "'/encoding'"),
        (AURA, {"text": ""}, "'/text': the text is empty"),
        (AURA, {"text": 5}, "'/text': must be a string"),
        (AURA, {"text": "x" * 2001}, "'/text': longer than the 2000"),
        (AURA, {"prompt": "hi"}, "'/prompt': not a field"),
        (MELO, {"prompt": "Bonjour", "lang": "fr"}, "no 'fr' voice here"),
        ("@cf/deepgram/aura-2-es", {"text": "Hola"}, "no 'es' voice here"),
        (MELO, {"text": "hi"}, "'/text': not a field"),
    ],
)
def test_refusals_name_the_field(
    server: Server, model: str, body: dict[str, Any], words: str
) -> None:
    r = _run(server, model, body)
    assert r.status_code == 400, r.text
    err = r.json()["errors"][0]
    assert err["code"] == 5006 and words in err["message"], err


def test_the_openai_sdk_speaks(server: Server) -> None:
    client = OpenAI(base_url=f"{server.url}/v1", api_key=TOKEN)
    mp3 = client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCES[0])
    assert mp3.response.headers["content-type"] == "audio/mpeg"
    assert recovered(SENTENCES[0], _heard(server, mp3.content)) >= 0.75
    wav = client.audio.speech.create(
        model="gpt-4o-mini-tts", voice="nova", input="Hello there.", response_format="wav"
    )
    assert wav.content.startswith(b"RIFF")
    pcm = client.audio.speech.create(
        model=AURA, voice="nova", input="Hello there.", response_format="pcm", speed=1.5
    )
    assert 0.2 < len(pcm.content) / 2 / 24000 < 3
    with pytest.raises(BadRequestError, match="voice"):
        client.audio.speech.create(model="tts-1", voice="robot", input="hi")  # type: ignore[arg-type]
    with pytest.raises(BadRequestError, match="instructions"):
        client.audio.speech.create(model="tts-1", voice="alloy", input="hi", instructions="x")
    with pytest.raises(BadRequestError, match="not a text-to-speech model"):
        client.audio.speech.create(model=WHISPER, voice="alloy", input="hi")


def test_characters_and_minutes_are_counted(server: Server) -> None:
    text, account = "Counting the cost of speech.", "characters"  # this test's rows alone
    for model, body in ((AURA, {"text": text}), (MELO, {"prompt": text})):
        r = requests.post(
            server.run_url(model, account), headers=server.auth, json=body, timeout=120
        )
        assert r.status_code == 200, r.text
    pcm, rate = samples(base64.b64decode(r.json()["result"]["audio"]))
    usage = requests.get(
        f"{server.url}/wai/v1/usage", headers=server.auth, params={"account": account}, timeout=10
    ).json()["usage"]
    rows = {row["model"]: row for row in usage}
    assert rows[AURA]["neurons"] == pytest.approx(len(text) / 1000 * 2727.27, abs=0.01)
    # melotts: per minute of audio spoken (the engine's count, before MP3's padding)
    assert rows[MELO]["neurons"] == pytest.approx(len(pcm) / rate / 60 * 18.63, rel=0.05)
    metrics = requests.get(f"{server.url}/metrics", headers=server.auth, timeout=10).text
    line = next(m for m in metrics.splitlines() if m.startswith("wai_spoken_characters_total"))
    assert f'model="{EMBEDDED_TTS_NAME}"' in line and float(line.split()[-1]) >= 2 * len(text)


def test_the_python_client_speaks_and_hears_over_http_and_in_process(
    server: Server, tmp_path: Path
) -> None:
    from wai import Ai

    with Ai(base_url=f"{server.url}/client/v4", token=TOKEN) as remote:
        mp3 = remote.run(AURA, {"text": SENTENCES[1]})
        assert isinstance(mp3, bytes) and samples(mp3)[1] == 22050
        heard = remote.run(WHISPER, mp3)  # bytes in: the raw body
        assert recovered(SENTENCES[1], heard["text"]) >= 0.75
    with Ai.local(engine={"slots": 1}, usage_db=tmp_path / "usage.db") as ai:
        spoken = ai.run(AURA, {"text": SENTENCES[0]})
        assert isinstance(spoken, bytes)
        out = ai.run(WHISPER, spoken)
        assert recovered(SENTENCES[0], out["text"]) >= 0.75 and out["vtt"].startswith("WEBVTT")
        turbo = ai.run(
            "@cf/openai/whisper-large-v3-turbo", {"audio": base64.b64encode(spoken).decode()}
        )
        assert turbo["transcription_info"]["language"] == "en"
