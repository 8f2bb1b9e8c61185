"""Speech recognition on a real server: the embedded Whisper base in its own engine process,
real speech (espeak-ng), every body shape of the Whisper ids, other containers, the `openai`
SDK's audio routes, bad audio refused, the batch queue, and a killed engine."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import requests
from openai import BadRequestError, OpenAI

from tests.conftest import TOKEN, Server, own_server
from tests.e2e.queueing import submit, wait_done
from tests.speech_audio import SENTENCES, encode, recovered, samples, speak, wav
from wai.catalog import EMBEDDED_ASR_NAME

WHISPER = "@cf/openai/whisper"
TINY = "@cf/openai/whisper-tiny-en"
TURBO = "@cf/openai/whisper-large-v3-turbo"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from own_server(tmp_path_factory, "speech")


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Each of SENTENCES as a WAV file."""
    tmp = tmp_path_factory.mktemp("speech")
    return [speak(s, tmp / f"{i}.wav") for i, s in enumerate(SENTENCES)]


def _run(
    server: Server, model: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> requests.Response:
    headers = {**server.auth, **(headers or {})}
    return requests.post(server.run_url(model), headers=headers, timeout=120, **kwargs)


def _result(r: requests.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()["result"]
    return result


def _duration(data: bytes) -> float:
    pcm, rate = samples(data)
    return len(pcm) / rate


def _check_words(words: list[dict[str, Any]], duration: float) -> None:
    """Word timings inside the audio, each word's end after its start, in order."""
    assert words
    last = 0.0
    for w in words:
        assert 0.0 <= w["start"] <= w["end"] <= duration + 0.05, w
        assert w["start"] >= last - 1e-6, words
        last = w["start"]


def _check_vtt(vtt: str, text: str) -> None:
    lines = vtt.split("\n")
    assert lines[0] == "WEBVTT" and lines[1] == ""
    cues = [line for line in lines if "-->" in line]
    assert cues and all(len(c.split(" --> ")) == 2 for c in cues)
    assert " ".join(lines[i + 1] for i, c in enumerate(lines) if "-->" in c) == text


def test_a_raw_body_is_transcribed_with_real_word_timings(
    server: Server, spoken: list[bytes]
) -> None:
    for said, audio in zip(SENTENCES, spoken, strict=True):
        r = _run(server, WHISPER, data=audio, headers={"content-type": "audio/wav"})
        out = _result(r)
        assert r.headers["x-wai-model"] == EMBEDDED_ASR_NAME
        assert set(out) == {"text", "word_count", "words", "vtt"}
        assert recovered(said, out["text"]) >= 0.75, out["text"]
        assert out["word_count"] == len(out["text"].split()) == len(out["words"])
        _check_words(out["words"], _duration(audio))
        _check_vtt(out["vtt"], out["text"])


def test_the_body_shapes_of_every_whisper_id_give_the_same_text(
    server: Server, spoken: list[bytes]
) -> None:
    audio = spoken[1]
    curl = _result(_run(server, WHISPER, data=audio))  # curl --data-binary: a form type
    array = _result(_run(server, WHISPER, json={"audio": list(audio)}))
    tiny = _result(_run(server, TINY, json={"audio": list(audio)}))
    turbo = _result(_run(server, TURBO, json={"audio": base64.b64encode(audio).decode()}))
    assert curl["text"] == array["text"] == tiny["text"] == turbo["text"]
    assert set(turbo) == {"transcription_info", "text", "word_count", "segments", "vtt"}
    info = turbo["transcription_info"]
    assert info["language"] == "en" and 0 < info["language_probability"] <= 1
    assert info["duration"] == pytest.approx(_duration(audio), abs=0.05)
    assert info["duration_after_vad"] == info["duration"]  # no VAD asked for
    duration = _duration(audio)
    for seg in turbo["segments"]:
        assert 0 <= seg["start"] <= seg["end"] <= duration + 0.05
        assert {"temperature", "avg_logprob", "compression_ratio", "no_speech_prob"} <= set(seg)
        _check_words(seg["words"], duration)


def test_mp3_ogg_and_flac_give_the_text_of_the_wav(server: Server, spoken: list[bytes]) -> None:
    for said, audio in zip(SENTENCES, spoken, strict=True):
        text = _result(_run(server, WHISPER, data=audio))["text"]
        flac = _result(_run(server, WHISPER, data=encode(audio, "flac", "flac")))["text"]
        assert flac == text  # lossless: the same samples
        for container, codec in (("mp3", "libmp3lame"), ("ogg", "libopus")):
            data = encode(audio, container, codec, 48000 if codec == "libopus" else None)
            lossy = _result(_run(server, WHISPER, data=data))["text"]
            assert recovered(said, lossy) >= 0.75, (container, lossy)


def test_turbo_takes_its_options_and_refuses_what_it_does_not_know(
    server: Server, spoken: list[bytes]
) -> None:
    b64 = base64.b64encode(spoken[0]).decode()
    out = _result(_run(server, TURBO, json={"audio": b64, "language": "en", "vad_filter": True}))
    info = out["transcription_info"]
    assert info["duration_after_vad"] <= info["duration"]
    for body, field in (
        ({"audio": b64, "language": "xx"}, "/language"),
        ({"audio": b64, "task": "summarize"}, "/task"),
        ({"audio": b64, "beam_size": 0}, "/beam_size"),
        ({"audio": b64, "temperature_increment": 0.2}, "/temperature_increment"),
        ({"audio": "not base64!"}, "/audio"),
        ({"audio": list(spoken[0][:10])}, "/audio"),
    ):
        r = _run(server, TURBO, json=body)
        assert r.status_code == 400, r.text
        err = r.json()["errors"][0]
        assert err["code"] == 5006 and f"'{field}'" in err["message"], err


def test_bad_audio_is_refused_with_a_4xx_envelope(server: Server) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"data": os.urandom(4000)}, "could not be decoded"),
        ({"json": {"audio": [82, 73, 70, 300]}}, "'/audio/3': 300 is not a byte value"),
        ({"json": {"audio": [1, 2, "x"]}}, "'/audio/2'"),
        ({"json": {"audio": []}}, "'/audio': the array is empty"),
        ({"json": {"audio": "UklGRg=="}}, "'/audio'"),
        ({"json": {"text": "hello"}}, "'/text'"),
        ({"data": b"hello there", "headers": {"content-type": "text/plain"}}, "decoded"),
        ({"data": b"", "headers": {"content-type": "audio/wav"}}, "empty"),
    ]
    for kwargs, words in cases:
        headers = {**server.auth, **kwargs.pop("headers", {})}
        r = requests.post(server.run_url(WHISPER), headers=headers, timeout=60, **kwargs)
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["success"] is False and body["errors"][0]["code"] == 5006
        assert words in body["errors"][0]["message"], body


def test_audio_over_the_size_or_duration_limit_is_413(server: Server, spoken: list[bytes]) -> None:
    """The default limits: 25 MiB refused whole before anything runs, and over 2 hours refused
    from what the container says (beyond the 1 % its estimate may be off), before the audio is
    transcribed."""
    _result(_run(server, WHISPER, data=spoken[0]))  # loaded
    r = _run(server, WHISPER, data=os.urandom(25 * 1024 * 1024 + 1))
    assert r.status_code == 413 and r.json()["errors"][0]["code"] == 3006, r.text
    long = _flac(np.zeros(7300 * 8000, np.int16), 8000)  # silence: 2 h 1m 40 s in 1.3 MB
    assert len(long) < 2 << 20
    start = time.monotonic()
    r = _run(server, WHISPER, data=long)
    assert r.status_code == 413 and r.json()["errors"][0]["code"] == 3006, r.text
    assert "longer than the 7200 s" in r.json()["errors"][0]["message"]
    assert time.monotonic() - start < 10


def test_the_openai_sdk_transcribes_and_translates(server: Server, spoken: list[bytes]) -> None:
    client = OpenAI(base_url=f"{server.url}/v1", api_key=TOKEN)
    audio = ("speech.wav", spoken[1], "audio/wav")
    said = SENTENCES[1]
    json_ = client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert recovered(said, json_.text) >= 0.75
    text = client.audio.transcriptions.create(model=WHISPER, file=audio, response_format="text")
    assert text.strip() == json_.text
    vtt = client.audio.transcriptions.create(model=WHISPER, file=audio, response_format="vtt")
    _check_vtt(vtt.strip() + "\n", json_.text)
    srt = client.audio.transcriptions.create(model=WHISPER, file=audio, response_format="srt")
    assert srt.startswith("1\n00:00:00,") and json_.text in srt
    verbose = client.audio.transcriptions.create(
        model="whisper-1",
        file=audio,
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert verbose.language == "en" and verbose.text == json_.text
    assert verbose.duration == pytest.approx(_duration(spoken[1]), abs=0.05)
    assert verbose.words and verbose.segments
    _check_words([w.model_dump() for w in verbose.words], verbose.duration)
    with warnings.catch_warnings():  # the SDK marks translations deprecated; OpenAI serves them
        warnings.simplefilter("ignore", DeprecationWarning)
        translated = client.audio.translations.create(model="whisper-1", file=audio)
    assert recovered(said, translated.text) >= 0.75
    with pytest.raises(BadRequestError, match="not a speech recognition model"):
        client.audio.transcriptions.create(model="@cf/meta/llama-3-8b-instruct", file=audio)
    with pytest.raises(BadRequestError, match="verbose_json"):  # refused, not ignored
        client.audio.transcriptions.create(
            model=WHISPER, file=audio, timestamp_granularities=["word"]
        )
    with pytest.raises(BadRequestError, match="response_format"):
        client.audio.transcriptions.create(model=WHISPER, file=audio, response_format="xml")  # type: ignore[arg-type]


def test_queued_transcriptions_equal_direct_calls(server: Server, spoken: list[bytes]) -> None:
    direct = [_result(_run(server, WHISPER, json={"audio": list(a)})) for a in spoken]
    items = [{"audio": list(a), "external_reference": f"s{i}"} for i, a in enumerate(spoken)]
    request_id = submit(server, WHISPER, items)
    result, _ = wait_done(server, WHISPER, request_id)
    by_ref = {r["external_reference"]: r for r in result["responses"]}
    for i, want in enumerate(direct):
        got = by_ref[f"s{i}"]
        assert got["success"] is True, got
        assert got["result"] == want


def _engine_pid(server: Server) -> int:
    runs = requests.get(f"{server.url}/healthz", timeout=10).json()["runs"]
    pid: int = runs[EMBEDDED_ASR_NAME]["pid"]
    return pid


def test_a_killed_speech_engine_fails_its_request_only_and_comes_back(
    server: Server, spoken: list[bytes]
) -> None:
    _result(_run(server, WHISPER, data=spoken[0]))  # loaded
    pid = _engine_pid(server)
    pcm, rate = samples(spoken[0])
    long = wav(np.tile(pcm, 12), rate)  # about a minute of speech
    with ThreadPoolExecutor(2) as pool:
        doomed = pool.submit(_run, server, WHISPER, data=long)
        time.sleep(1.5)
        os.kill(pid, signal.SIGKILL)
        text = pool.submit(_run, server, "@cf/meta/llama-3-8b-instruct", json={"prompt": "Hi"})
        r = doomed.result()
        assert r.status_code == 503, r.text
        assert r.json()["errors"][0]["code"] == 3043
        assert text.result().status_code == 200  # the text model never noticed
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = _run(server, WHISPER, data=spoken[1])
        if r.status_code == 200:
            break
        time.sleep(0.5)
    assert recovered(SENTENCES[1], _result(r)["text"]) >= 0.75
    assert _engine_pid(server) != pid


def test_concurrent_requests_each_get_their_own_answer(server: Server, spoken: list[bytes]) -> None:
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda a: _run(server, WHISPER, data=a), spoken * 2))
    texts = [_result(r)["text"] for r in answers]
    assert texts[:2] == texts[2:]
    assert json.dumps(texts)  # plain strings


def test_audio_minutes_are_counted_in_usage_and_metrics(
    server: Server, spoken: list[bytes]
) -> None:
    audio, account = spoken[1], "minutes"  # an account of its own: this test's rows alone
    body = {"audio": base64.b64encode(audio).decode()}
    r = requests.post(server.run_url(TURBO, account), headers=server.auth, json=body, timeout=120)
    assert r.status_code == 200, r.text
    r = requests.post(
        server.run_url(WHISPER, account), headers=server.auth, data=audio, timeout=120
    )
    assert r.status_code == 200, r.text
    usage = requests.get(
        f"{server.url}/wai/v1/usage", headers=server.auth, params={"account": account}, timeout=10
    ).json()["usage"]
    rows = {row["model"]: row for row in usage}
    minutes = _duration(audio) / 60
    assert rows[TURBO]["neurons"] == pytest.approx(minutes * 46.63, abs=0.01)
    assert rows[WHISPER]["neurons"] == pytest.approx(minutes * 41.14, abs=0.01)
    assert rows[WHISPER]["requests"] == 1 and rows[WHISPER]["prompt_tokens"] == 0
    metrics = requests.get(f"{server.url}/metrics", headers=server.auth, timeout=10).text
    line = next(m for m in metrics.splitlines() if m.startswith("wai_audio_seconds_total"))
    assert f'model="{EMBEDDED_ASR_NAME}"' in line
    assert float(line.split()[-1]) >= 2 * _duration(audio)


def _flac(pcm: np.ndarray, rate: int) -> bytes:
    """int16 mono samples as FLAC, encoded a minute at a time (an hour of mostly silence is
    under a megabyte)."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="flac") as c:
        stream = c.add_stream("flac", rate=rate, layout="mono")
        for i in range(0, len(pcm), 60 * rate):
            frame = av.AudioFrame.from_ndarray(
                pcm[i : i + 60 * rate].reshape(1, -1), format="s16", layout="mono"
            )
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    return out.getvalue()


def _long_audio(spoken: list[bytes], seconds: int) -> bytes:
    """`seconds` of silence with a sentence near the start, one at the middle and one that
    ends 2 s before the end."""
    pcm0, rate = samples(spoken[0])
    pcm1, _ = samples(spoken[1])
    x = np.zeros(seconds * rate, np.int16)
    for at, said in (
        (rate, pcm0),
        (seconds // 2 * rate, pcm1),
        (len(x) - 2 * rate - len(pcm0), pcm0),
    ):
        x[at : at + len(said)] = said
    return _flac(x, rate)


def _peak_mib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(ln for ln in status.splitlines() if ln.startswith("VmHWM:"))
    return int(line.split()[1]) // 1024


def test_an_hour_of_audio_is_transcribed_in_bounded_memory(
    server: Server, spoken: list[bytes]
) -> None:
    """Decoded and transcribed a block at a time: the engine's peak memory after an hour is
    that of ten minutes (the hour's samples alone, decoded whole, are 220 MiB). Every job
    thread first runs ten minutes, so that each has grown what a long request grows."""
    body = {"audio": base64.b64encode(_long_audio(spoken, 600)).decode()}
    with ThreadPoolExecutor(4) as pool:
        warm = list(pool.map(lambda _: _result(_run(server, TURBO, json=body)), range(4)))
    assert all(len(w["segments"]) == 3 for w in warm)
    pid = _engine_pid(server)
    before = _peak_mib(pid)
    hour = _long_audio(spoken, 3600)
    out = _result(_run(server, TURBO, json={"audio": base64.b64encode(hour).decode()}))
    assert _engine_pid(server) == pid
    assert _peak_mib(pid) - before < 100, (before, _peak_mib(pid))
    info = out["transcription_info"]
    assert info["duration"] == pytest.approx(3600, abs=0.1)
    assert 10 < info["duration_after_vad"] < 60  # the silence cut by VAD
    starts = [round(s["start"]) for s in out["segments"]]
    ends = [s["end"] for s in out["segments"]]
    assert len(starts) == 3 and abs(starts[1] - 1800) <= 1 and 3585 < ends[2] <= 3600, out
    said = [SENTENCES[0], SENTENCES[1], SENTENCES[0]]
    for seg, want in zip(out["segments"], said, strict=True):
        assert recovered(want, seg["text"]) >= 0.75, seg["text"]
        _check_words(seg["words"], 3600)


NOVA = "@cf/deepgram/nova-3"


def test_nova_3_answers_deepgrams_shape_from_the_whisper_stand_in(
    server: Server, spoken: list[bytes]
) -> None:
    said, audio = SENTENCES[0], spoken[0]
    r = _run(server, NOVA, data=audio, headers={"content-type": "audio/wav"})
    out = _result(r)
    assert r.headers["x-wai-model"] == EMBEDDED_ASR_NAME
    (channel,) = out["results"]["channels"]
    (alt,) = channel["alternatives"]
    assert recovered(said, alt["transcript"]) >= 0.75 and 0 < alt["confidence"] <= 1
    assert [w["punctuated_word"] for w in alt["words"]] == alt["transcript"].split()
    for w in alt["words"]:
        assert (w["word"] == w["word"].lower() and w["word"].isalnum()) or "'" in w["word"]
        assert 0 < w["confidence"] <= 1
    _check_words(alt["words"], _duration(audio))
    body = {
        "audio": {"body": list(audio), "contentType": "audio/wav"},
        "detect_language": True,
        "punctuate": False,
        "language": "en-US",
        "mip_opt_out": True,
    }
    bare = _result(_run(server, NOVA, json=body))["results"]["channels"][0]
    assert bare["detected_language"] == "en" and 0 < bare["language_confidence"] <= 1
    words = [w["word"] for w in alt["words"]]
    assert bare["alternatives"][0]["transcript"] == " ".join(words)
    assert "punctuated_word" not in bare["alternatives"][0]["words"][0]
    b64 = {"audio": {"body": base64.b64encode(audio).decode(), "contentType": "audio/wav"}}
    assert _result(_run(server, NOVA, json=b64)) == out


def test_nova_3_refuses_by_name_what_the_stand_in_cannot_do(
    server: Server, spoken: list[bytes]
) -> None:
    audio = {"body": list(spoken[0][:2000]), "contentType": "audio/wav"}
    cases = [
        ({"audio": audio, "diarize": True}, "'/diarize': not done by the local stand-in"),
        ({"audio": audio, "interim_results": True}, "WebSocket"),
        ({"audio": audio, "smart_format": False}, "'/smart_format'"),
        ({"audio": audio, "language": "xx-YY"}, "'/language'"),
        ({"audio": audio, "channels": 2}, "'/channels'"),
        ({"audio": audio, "colour": "red"}, "'/colour': not a field"),
        ({"audio": {"body": list(spoken[0][:2000])}}, "'/audio/contentType'"),
        ({"audio": {"body": [1, 300], "contentType": "audio/wav"}}, "'/audio/body/1'"),
        ({"audio": {"body": "%%%", "contentType": "audio/wav"}}, "'/audio/body': not valid"),
    ]
    for body, words in cases:
        r = _run(server, NOVA, json=body)
        assert r.status_code == 400, (body, r.text)
        error = r.json()["errors"][0]
        assert error["code"] == 5006 and words in error["message"], (body, error)
