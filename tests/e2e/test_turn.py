"""Turn detection on a real server: smart-turn (v3.2, shipped in pipecat-ai) standing in for
`@cf/pipecat-ai/smart-turn-v2`, on speech the embedded voice says: a finished sentence is a
finished turn, a sentence cut off is not; every input shape; refusals."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import numpy as np
import pytest
import requests

from tests.conftest import Server, own_server
from tests.speech_audio import samples, wav
from wai.catalog import EMBEDDED_TURN_NAME

TURN = "@cf/pipecat-ai/smart-turn-v2"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from own_server(tmp_path_factory, "turn")


def _say(server: Server, text: str) -> bytes:
    """`text` spoken by the server's voice, as a 16 kHz WAV."""
    body = {"text": text, "encoding": "linear16", "sample_rate": 16000}
    r = requests.post(
        server.run_url("@cf/deepgram/aura-2-en"), headers=server.auth, json=body, timeout=120
    )
    assert r.status_code == 200, r.text
    return r.content


def _turn(server: Server, **kwargs: object) -> dict[str, object]:
    r = requests.post(server.run_url(TURN), headers=server.auth, timeout=120, **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    assert r.headers["x-wai-model"] == EMBEDDED_TURN_NAME
    out: dict[str, object] = r.json()["result"]
    return out


def test_a_finished_sentence_ends_the_turn_and_a_cut_one_does_not(server: Server) -> None:
    done = _say(server, "The quick brown fox jumps over the lazy dog near the river bank.")
    cut = _say(server, "I was thinking that maybe we could")
    finished = _turn(server, json={"audio": base64.b64encode(done).decode()})
    unfinished = _turn(server, data=cut)  # the raw body
    assert set(finished) == {"is_complete", "probability"}
    assert finished["is_complete"] is True and float(finished["probability"]) > 0.5  # type: ignore[arg-type]
    assert unfinished["is_complete"] is False and float(unfinished["probability"]) < 0.5  # type: ignore[arg-type]


def test_raw_float_samples_give_what_the_file_gives(server: Server) -> None:
    audio = _say(server, "Please remember to water the garden every morning before work.")
    pcm, rate = samples(audio)
    assert rate == 16000
    as_file = _turn(server, data=wav(pcm, rate))
    for dtype in ("float32", "float64"):
        raw = (pcm.astype(np.float64) / 32768).astype(dtype).tobytes()
        as_samples = _turn(server, json={"audio": base64.b64encode(raw).decode(), "dtype": dtype})
        assert as_samples["is_complete"] == as_file["is_complete"]
        assert float(as_samples["probability"]) == pytest.approx(  # type: ignore[arg-type]
            float(as_file["probability"]),  # type: ignore[arg-type]
            abs=0.02,
        )


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"audio": "AAAA", "dtype": "int16"}, "'/dtype'"),
        ({"audio": "not base64"}, "'/audio': not valid base64"),
        ({"audio": [1, 2]}, "'/audio': must be a base64"),
        ({"audio": base64.b64encode(b"\x00" * 6).decode(), "dtype": "float32"}, "whole 4-byte"),
        ({"audio": base64.b64encode(b"garbage" * 50).decode()}, "could not be decoded"),
        ({"dtype": "float32"}, "'/audio': required"),
        ({"audio": "AAAA", "threshold": 0.3}, "'/threshold': not a field"),
    ],
)
def test_refusals_name_the_problem(server: Server, body: dict[str, object], words: str) -> None:
    r = requests.post(server.run_url(TURN), headers=server.auth, json=body, timeout=60)
    assert r.status_code == 400, r.text
    err = r.json()["errors"][0]
    assert err["code"] == 5006 and words in err["message"], err
