"""Translation, summarization and text classification on a real server.

Two servers: one with tiny random M2M100, BART and DistilBERT models of the real architectures
(written as Hugging Face lays them out, converted by the server on first load, run in the
text-to-text engine process), and the shared server, which has none: its summaries and
sentiment come from the embedding model's stand-ins, and translation is refused with the
command that pulls real weights."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import TOKEN, Server, start_server, stop_server
from tests.e2e.queueing import submit, wait_done
from tests.text2text_models import distilbert_scores, write_bart, write_distilbert, write_m2m100
from wai.catalog import BART_CNN, DISTILBERT_SST2, INDICTRANS2, M2M100
from wai.client import Ai, AiError
from wai.engines.text2text.models import load
from wai.engines.text2text.types import Text2TextConfig, Translate
from wai.usage import neurons

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Machine translation turns a sentence in one language into another.",
    "A summary keeps the subject of the article.",
    "I loved this film, it was wonderful.",
    "El zorro marrón salta sobre el perro perezoso.",
    "Der schnelle braune Fuchs springt.",
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("t2t-models")
    return {
        "m2m": write_m2m100(tmp / "m2m"),
        "bart": write_bart(tmp / "bart"),
        "sst": write_distilbert(tmp / "sst"),
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, folders: dict[str, Path]) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("t2t")
    served = {"m2m": M2M100, "bart": BART_CNN, "sst": DISTILBERT_SST2}
    config = tmp / "wai.toml"
    config.write_text(
        f'cache_dir = "{tmp / "cache"}"\nrate_limits = {{ summarization = 6 }}\n'
        + "".join(
            f'[models.{name}]\npath = "{folders[name]}"\nserves = ["{mid}"]\n'
            'compute_type = "float32"\n'
            for name, mid in served.items()
        )
    )
    srv = start_server(
        tmp, "--config", str(config), "--token", TOKEN, env={"WAI_USAGE_DB": str(tmp / "u.db")}
    )
    srv.cache = tmp / "cache"  # type: ignore[attr-defined]
    yield srv
    stop_server(srv)


def _run(server: Server, model: str, body: Any, timeout: float = 120) -> requests.Response:
    return requests.post(server.run_url(model), headers=server.auth, json=body, timeout=timeout)


def _ok(server: Server, model: str, body: Any) -> Any:
    r = _run(server, model, body)
    assert r.status_code == 200, r.text
    return r.json()["result"]


def _translate(server: Server, text: str, target: str = "de") -> str:
    out: str = _ok(server, M2M100, {"text": text, "target_lang": target})["translated_text"]
    return out


# --- the real engine on converted models ------------------------------------------------------


def test_translation_equals_the_engine_called_directly(tiny: Server) -> None:
    """What wai answers is what CTranslate2 gives for the same converted model and options."""
    got = [_translate(tiny, s, "fr") for s in SENTENCES]
    path = tiny.cache / "m2m.ct2"  # type: ignore[attr-defined]
    model = load(Text2TextConfig(path=str(path), name="m2m", compute_type="float32"))
    for sentence, answer in zip(SENTENCES, got, strict=True):
        job = Translate([sentence], "en", "fr")
        units = model.units(job)
        want = model.result(job, units, model.run(units[0].key, units)).texts[0]
        assert answer == want
    assert len(set(got)) > 3, got  # the answers depend on the input


def test_language_names_and_codes_are_the_same_language(tiny: Server) -> None:
    text = SENTENCES[0]
    by_code = _ok(tiny, M2M100, {"text": text, "source_lang": "en", "target_lang": "fr"})
    by_name = _ok(tiny, M2M100, {"text": text, "source_lang": "English", "target_lang": "french"})
    by_region = _ok(tiny, M2M100, {"text": text, "target_lang": "fr-FR"})  # source: en
    assert by_code == by_name == by_region


def test_long_texts_are_cut_at_sentences_and_rejoined(tiny: Server) -> None:
    text = f"{SENTENCES[0]} {SENTENCES[1]}\n{SENTENCES[2]}"
    whole = _translate(tiny, text)
    parts = [_translate(tiny, s) for s in SENTENCES[:3]]
    assert whole == f"{parts[0]} {parts[1]}\n{parts[2]}"


def test_indictrans2_is_answered_by_the_translation_model_in_its_shape(tiny: Server) -> None:
    r = _run(tiny, INDICTRANS2, {"text": SENTENCES[:2], "target_language": "hin_Deva"})
    assert r.status_code == 200, r.text
    assert r.headers["x-wai-model"] == "m2m (M2M100 standing in for IndicTrans2)"
    out = r.json()["result"]
    assert out == {"translations": [_translate(tiny, s, "hi") for s in SENTENCES[:2]]}
    one = _ok(tiny, INDICTRANS2, {"text": SENTENCES[0], "target_language": "tam_Taml"})
    assert one == {"translations": [_translate(tiny, SENTENCES[0], "ta")]}
    r = _run(tiny, INDICTRANS2, {"text": "Hello", "target_language": "sat_Olck"})
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == 5006
    assert "sat_Olck is not among the languages of M2M100" in r.text


def test_classification_scores_equal_the_reference(tiny: Server, folders: dict[str, Path]) -> None:
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(str(folders["sst"] / "vocab.txt"), lowercase=True)
    for text in SENTENCES[:4]:
        r = _run(tiny, DISTILBERT_SST2, {"text": text})
        assert r.status_code == 200 and r.headers["x-wai-model"] == "sst"
        out = r.json()["result"]
        assert [o["score"] for o in out] == sorted((o["score"] for o in out), reverse=True)
        assert sum(o["score"] for o in out) == pytest.approx(1.0, abs=1e-6)
        want = distilbert_scores(folders["sst"], tok.encode(text).ids)
        got = {o["label"]: o["score"] for o in out}
        assert got["NEGATIVE"] == pytest.approx(want[0], abs=1e-4)
        assert got["POSITIVE"] == pytest.approx(want[1], abs=1e-4)


def test_a_summary_is_a_string_bounded_by_max_length(tiny: Server) -> None:
    article = " ".join(SENTENCES)
    out = _ok(tiny, BART_CNN, {"input_text": article, "max_length": 12})
    assert set(out) == {"summary"} and isinstance(out["summary"], str) and out["summary"]
    usage = requests.get(
        f"{tiny.url}/wai/v1/usage", headers=tiny.auth, params={"by": "model"}, timeout=10
    ).json()["usage"]
    assert any(row["model"] == BART_CNN for row in usage)


def test_usage_counts_tokens_and_neurons_at_the_published_rate(tiny: Server) -> None:
    before = _usage_row(tiny, "acc-usage")
    assert before is None
    r = requests.post(
        tiny.run_url(M2M100, "acc-usage"),
        headers=tiny.auth,
        json={"text": SENTENCES[1], "target_lang": "es"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    row = _usage_row(tiny, "acc-usage")
    assert row is not None and row["requests"] == 1
    assert row["prompt_tokens"] > 5 and row["completion_tokens"] > 0
    want = neurons(M2M100, row["prompt_tokens"], row["completion_tokens"])
    assert want == pytest.approx((row["prompt_tokens"] + row["completion_tokens"]) * 0.03105)
    assert row["neurons"] == pytest.approx(want, abs=1e-3)


def _usage_row(server: Server, account: str) -> dict[str, Any] | None:
    r = requests.get(
        f"{server.url}/wai/v1/usage",
        headers=server.auth,
        params={"by": "model", "account": account},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    rows = [row for row in r.json()["usage"] if row["model"] == M2M100]
    return rows[0] if rows else None


def test_a_batch_of_200_queued_translations_equals_direct_calls(tiny: Server) -> None:
    texts = [f"{SENTENCES[i % len(SENTENCES)]} Number {i}." for i in range(200)]
    items = [{"text": t, "target_lang": "de", "external_reference": str(i)} for i, t in
             enumerate(texts)]  # fmt: skip
    request_id = submit(tiny, M2M100, items)
    result, _ = wait_done(tiny, M2M100, request_id, timeout=300)
    responses = {r["external_reference"]: r for r in result["responses"]}
    assert len(responses) == 200
    for i in range(0, 200, 7):  # every 7th, called directly
        assert responses[str(i)]["result"] == {"translated_text": _translate(tiny, texts[i])}


def test_concurrent_requests_each_get_their_own_answer(tiny: Server) -> None:
    texts = [f"{SENTENCES[i % len(SENTENCES)]} {i}" for i in range(16)]
    alone = [_translate(tiny, t) for t in texts]
    together: list[str | None] = [None] * len(texts)

    def one(i: int) -> None:
        together[i] = _translate(tiny, texts[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone


def test_a_killed_engine_fails_its_request_only(tiny: Server) -> None:
    """SIGKILL of the translation engine mid-request: that request answers 3043, the other
    models answer meanwhile, and the engine comes back."""
    pid = _engine_pid(tiny, "m2m")
    long_text = " ".join(f"{SENTENCES[i % 6]} {i}." for i in range(600))[:20_000]
    answer: dict[str, Any] = {}

    def long_request() -> None:
        r = _run(tiny, M2M100, {"text": long_text, "target_lang": "de"})
        answer["status"], answer["body"] = r.status_code, r.json()

    t = threading.Thread(target=long_request)
    t.start()
    deadline = time.monotonic() + 30
    while _busy(tiny, "m2m") == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    summary = _run(tiny, BART_CNN, {"input_text": SENTENCES[2]})  # another model answers
    t.join(60)
    assert summary.status_code == 200
    assert answer["status"] == 503, answer
    assert answer["body"]["errors"][0]["code"] == 3043
    assert "SIGKILL" in answer["body"]["errors"][0]["message"]
    deadline = time.monotonic() + 60
    while _engine_pid(tiny, "m2m") in (None, pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _translate(tiny, SENTENCES[0])  # back


def _health(server: Server) -> dict[str, Any]:
    out: dict[str, Any] = requests.get(f"{server.url}/healthz", timeout=5).json()
    return out


def _engine_pid(server: Server, name: str) -> int | None:
    run = _health(server)["runs"].get(name) or {}
    pid: int | None = run.get("pid")
    return pid


def _busy(server: Server, name: str) -> int:
    r = requests.get(f"{server.url}/wai/v1/stats", headers=server.auth, timeout=5)
    busy: int = r.json()["models"][name]["slots_busy"]
    return busy


def test_the_catalog_and_schemas_say_served(tiny: Server) -> None:
    for mid in (M2M100, BART_CNN, DISTILBERT_SST2, INDICTRANS2):
        r = requests.get(
            f"{tiny.url}/client/v4/accounts/a/ai/models/schema",
            params={"model": mid},
            headers=tiny.auth,
            timeout=10,
        )
        assert r.status_code == 200, r.text
        assert set(r.json()["result"]) >= {"input", "output"}
    metrics = requests.get(f"{tiny.url}/metrics", headers=tiny.auth, timeout=10).text
    assert 'model="m2m"' in metrics


# --- the shared server: stand-ins and refusals ---------------------------------------------


REVIEWS = {
    "I absolutely loved this movie, the acting was wonderful.": "POSITIVE",
    "What a great restaurant, the food was delicious and the staff friendly.": "POSITIVE",
    "This was the worst purchase I have ever made, it broke after a day.": "NEGATIVE",
    "The hotel room was dirty and the service was terrible.": "NEGATIVE",
}

ARTICLE = (
    "The city council of Springfield approved a new public library on Tuesday. "
    "The library will be built next to the central park and open in two years. "
    "Council members said the library will offer free courses and a large children's section. "
    "The weather on Tuesday was sunny and warm. "
    "The new library is expected to cost twelve million dollars, paid by the city and the state. "
    "A local bakery celebrated its tenth anniversary the same day. "
    "Residents had asked for a larger library for many years, the mayor said."
)


def test_sentiment_stand_in_classifies_plain_sentences(server: Server) -> None:
    for text, label in REVIEWS.items():
        r = _run(server, DISTILBERT_SST2, {"text": text})
        assert r.status_code == 200, r.text
        assert r.headers["x-wai-model"].endswith("(zero-shot: similarity to label descriptions)")
        out = r.json()["result"]
        assert next(o["label"] for o in out) == label, (text, out)
        assert sum(o["score"] for o in out) == pytest.approx(1.0, abs=1e-6)
        assert {o["label"] for o in out} == {"POSITIVE", "NEGATIVE"}


def test_summary_stand_in_is_shorter_and_keeps_the_subject(server: Server) -> None:
    r = _run(server, BART_CNN, {"input_text": ARTICLE})
    assert r.status_code == 200, r.text
    assert r.headers["x-wai-model"].endswith("(extractive: the most central sentences)")
    summary = r.json()["result"]["summary"]
    assert 0 < len(summary) < len(ARTICLE) / 2
    assert "library" in summary.lower()
    assert "bakery" not in summary.lower()
    short = _ok(server, BART_CNN, {"input_text": ARTICLE, "max_length": 10})["summary"]
    assert len(short.split(". ")) == 1  # one sentence: the most central


def test_translation_without_weights_names_the_pull(server: Server) -> None:
    for mid, body in (
        (M2M100, {"text": "Hello", "source_lang": "english", "target_lang": "french"}),
        (INDICTRANS2, {"text": ["Hello"], "target_language": "hin_Deva"}),
    ):
        r = _run(server, mid, body)
        assert r.status_code == 400, r.text
        error = r.json()["errors"][0]
        assert error["code"] == 5007
        assert (
            f"wai pull {M2M100}" in error["message"] and "no translation model" in error["message"]
        )
    found = requests.get(
        f"{server.url}/client/v4/accounts/a/ai/models/search",
        params={"search": "m2m100"},
        headers=server.auth,
        timeout=10,
    ).json()["result"]
    props = {p["property_id"]: p["value"] for p in found[0]["properties"]}
    assert props["wai_served"] == "false" and props["wai_pull"] == f"wai pull {M2M100}"


@pytest.mark.parametrize(
    ("model", "body", "words"),
    [
        (M2M100, {"text": "Hello"}, "'/target_lang': required"),
        (M2M100, {"text": "Hello", "target_lang": "klingon"}, "'/target_lang': 'klingon' is not"),
        (M2M100, {"text": "", "target_lang": "fr"}, "'/text': must not be empty"),
        (M2M100, {"text": 42, "target_lang": "fr"}, "Type mismatch of '/text'"),
        (M2M100, {"text": "Hi", "target_lang": "fr", "beam": 2}, "'/beam': not a field"),
        (M2M100, {"text": "Hi", "source_lang": 7, "target_lang": "fr"}, "'/source_lang'"),
        (INDICTRANS2, {"text": ["Hi", 3], "target_language": "hin_Deva"}, "'/text/1'"),
        (INDICTRANS2, {"text": "Hi", "target_language": "hi"}, "'/target_language': must be"),
        (INDICTRANS2, {"text": "Hi"}, "'/target_language': required"),
        (BART_CNN, {"input_text": "x" * 100_001}, "'/input_text': longer than"),
        (BART_CNN, {"input_text": "News.", "max_length": 0}, "'/max_length'"),
        (BART_CNN, {"input_text": "News.", "max_length": "9"}, "'/max_length': must be an int"),
        (BART_CNN, {"text": "News."}, "'/input_text': required"),
        (DISTILBERT_SST2, {"text": ["a", "b"]}, "Type mismatch of '/text'"),
        (DISTILBERT_SST2, {}, "'/text': required"),
        (DISTILBERT_SST2, "just a string", "Type mismatch of '/'"),
    ],
)
def test_invalid_bodies_are_400_5006_naming_the_field(
    request: pytest.FixtureRequest, model: str, body: Any, words: str
) -> None:
    """Translation ids on the server that translates (the other refuses them first, with the
    pull), the others on both."""
    servers = ["tiny"] if model in (M2M100, INDICTRANS2) else ["tiny", "server"]
    for name in servers:
        _invalid(request.getfixturevalue(name), model, body, words)


def _invalid(server: Server, model: str, body: Any, words: str) -> None:
    r = _run(server, model, body)
    assert r.status_code == 400, r.text
    error = r.json()["errors"][0]
    assert error["code"] == 5006 and words in error["message"], error


def test_ai_local_answers_in_process(tmp_path: Path, folders: dict[str, Path]) -> None:
    """`Ai.local()`: the stand-ins, a configured model, and the refusal, as the server gives
    them."""
    settings = {
        "cache_dir": str(tmp_path / "cache"),
        "usage_db": str(tmp_path / "usage.db"),
        "models": {"bart": {"path": str(folders["bart"]), "compute_type": "float32"}},
    }
    with Ai.local(**settings) as ai:
        out = ai.run(DISTILBERT_SST2, {"text": next(iter(REVIEWS))})
        assert out[0]["label"] == "POSITIVE"
        summary = ai.run(BART_CNN, {"input_text": ARTICLE, "max_length": 20})
        assert isinstance(summary["summary"], str) and summary["summary"]
        with pytest.raises(AiError) as refused:
            ai.run(M2M100, {"text": "Hello", "target_lang": "fr"})
        assert refused.value.code == 5007 and "wai pull" in refused.value.message


def test_a_client_that_goes_away_stops_its_long_translation(tiny: Server) -> None:
    """The request's units not yet decoded are dropped: the engine is idle again long before
    the whole text would have been translated, and counts the request cancelled."""
    before = _stats(tiny, "m2m")["requests_cancelled"]
    long_text = " ".join(f"{SENTENCES[i % 6]} {i}." for i in range(600))[:20_000]
    with pytest.raises(requests.exceptions.ReadTimeout):
        _run(tiny, M2M100, {"text": long_text, "target_lang": "de"}, timeout=0.3)
    deadline = time.monotonic() + 30
    while _stats(tiny, "m2m")["requests_cancelled"] == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _stats(tiny, "m2m")["requests_cancelled"] == before + 1
    while _busy(tiny, "m2m") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _translate(tiny, SENTENCES[0])


def _stats(server: Server, name: str) -> dict[str, int]:
    r = requests.get(f"{server.url}/wai/v1/stats", headers=server.auth, timeout=5)
    stats: dict[str, int] = r.json()["models"][name]
    return stats


# last: it spends the tiny server's summarization budget
def test_each_task_has_its_own_rate_limit(tiny: Server) -> None:
    """summarization = 6 a minute here (two used above): the next ones run out, translation
    does not."""
    statuses = [_run(tiny, BART_CNN, {"input_text": SENTENCES[0]}).status_code for _ in range(6)]
    assert statuses[0] == 200 and statuses[-1] == 429, statuses
    assert _translate(tiny, SENTENCES[1])
