"""Schemathesis against wai's own OpenAPI document: every route, generated valid and invalid
inputs; no response is ever a 5xx, every response matches the document, and the server still
answers afterwards. The long run (10,000+ cases) is bench/fuzz.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode

from tests.conftest import TOKEN, Server, start_server, stop_server

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="session")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # max_tokens capped at 8 (and documented so), to keep generated requests short; scoped
    # tokens configured beside the plain one the fuzzer uses (auth then matches among both)
    tmp = tmp_path_factory.mktemp("fuzz")
    config = tmp / "wai.toml"
    config.write_text(
        '[access.team]\ntoken = "sha256:' + "ab" * 32 + '"\naccounts = ["acc1"]\n'
        '[access.reader]\ntoken = "reader-token-0123456789"\npermissions = ["catalog"]\n'
    )
    srv = start_server(
        tmp, "--token", TOKEN, "--config", str(config),
        env={"WAI_MAX_TOKENS": "8", "WAI_SLOTS": "4"},
    )  # fmt: skip
    yield srv
    stop_server(srv)


@pytest.fixture
def api_schema(fuzz_server: Server) -> schemathesis.BaseSchema:
    doc = requests.get(f"{fuzz_server.url}/openapi.json", headers=AUTH, timeout=10).json()
    return schemathesis.openapi.from_dict(doc)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
# every operation of the document in one test (~2 min alone on 2 cores): the suite's 300 s
# per test would be too tight on a busy machine
@pytest.mark.timeout(900)
@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_conforms_and_never_fails(case: schemathesis.Case, fuzz_server: Server) -> None:
    # Both excluded checks expect 401 for a request with no Authorization header at all;
    # Cloudflare's API answers 400 with code 9106 there, and wai copies Cloudflare (a wrong
    # token still gets 401, which the document says).
    excluded = [schemathesis.checks.missing_required_header, schemathesis.checks.ignored_auth]
    checks = (_mislabelled, _json_mode, _tools, _long_text, _dimensions, _audio, _text_tasks)
    if any(f(case) for f in checks):
        excluded.append(schemathesis.checks.positive_data_acceptance)
    if _undocumented_query(case):
        excluded.append(schemathesis.checks.negative_data_rejection)
    case.call_and_validate(
        base_url=fuzz_server.url, headers=AUTH, timeout=60, excluded_checks=excluded
    )


def _mislabelled(case: schemathesis.Case) -> bool:
    """schemathesis 4.32's coverage phase, when it varies a header (here the binding routes'
    cf-consn-model-id), sends the body of an earlier negative case (the bare JSON `0`) yet
    labels the whole case positive; its own metadata gives it away. Rejecting that body is
    right, so the acceptance check is skipped for exactly these cases."""
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return False
    body = meta.components.get(ParameterLocation.BODY)
    return body is not None and body.mode == GenerationMode.NEGATIVE


def _json_mode(case: schemathesis.Case) -> bool:
    """JSON mode may rightly refuse a request the document calls valid: a schema keyword the
    grammar cannot enforce (the document cannot list what a JSON Schema may hold), or, on the
    Workers AI routes, an object the model could not close within max_tokens (capped at 8
    here): "JSON Mode couldn't be met". Every other check still applies (no 5xx, documented
    status and shape)."""
    body = case.body if isinstance(case.body, dict) else {}
    inputs = body.get("inputs") if isinstance(body.get("inputs"), dict) else body
    fmt = inputs.get("response_format") if isinstance(inputs, dict) else None
    return isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")


def test_server_still_answers_after_fuzzing(fuzz_server: Server) -> None:
    assert requests.get(f"{fuzz_server.url}/healthz", timeout=5).status_code == 200
    assert "Traceback" not in fuzz_server.log.read_text()


def _tools(case: schemathesis.Case) -> bool:
    """Tool definitions and earlier calls have rules across fields the document cannot state:
    a tool's `parameters` is a JSON Schema (with JSON mode's keywords only), a named
    tool_choice must name a tool, names must differ, an earlier call's `arguments` string must
    hold a JSON object. Such requests may rightly be refused; every other check applies."""
    body = case.body if isinstance(case.body, dict) else {}
    inputs = body.get("inputs") if isinstance(body.get("inputs"), dict) else body
    if not isinstance(inputs, dict):
        return False
    messages = inputs.get("messages") if isinstance(inputs.get("messages"), list) else []
    return (
        inputs.get("tools") is not None
        or inputs.get("tool_choice") is not None
        or any(isinstance(m, dict) and m.get("tool_calls") for m in messages)
    )


def _undocumented_query(case: schemathesis.Case) -> bool:
    """wai ignores query parameters it does not know (as Cloudflare's API and most servers
    do); schemathesis counts an unknown one as invalid data that should have been refused."""
    raw = case.operation.definition.raw
    documented = {p.get("name") for p in raw.get("parameters", []) if p.get("in") == "query"}
    return any(name not in documented for name in case.query or {})


def _long_text(case: schemathesis.Case) -> bool:
    """An embedding model takes a text of at most its window in tokens (512 for BERT), which
    the document can only bound in characters: a text of more than 510 characters may be over
    it (a character is at most one WordPiece token, and [CLS] and [SEP] take two), and be
    rightly refused, naming it. Every other check applies."""
    body = case.body if isinstance(case.body, dict) else {}
    text = body.get("text", body.get("input"))
    texts = text if isinstance(text, list) else [text]
    return any(isinstance(t, str) and len(t) > 510 for t in texts)


def _dimensions(case: schemathesis.Case) -> bool:
    """OpenAI's `dimensions` is honoured only when it is the answering model's own size, which
    the document cannot know before a model is loaded (a stand-in answers with its own)."""
    body = case.body if isinstance(case.body, dict) else {}
    return body.get("dimensions") is not None


TEXT2TEXT_IDS = ("bart-large-cnn", "distilbert-sst-2", "m2m100", "indictrans2")


def _text_tasks(case: schemathesis.Case) -> bool:
    """The text-to-text ids' official schemas bound neither text nor max_length: a text of
    whitespace only, over the README's character limits, or a max_length below 1 is rightly
    refused by name. Every other check applies."""
    return any(s in case.operation.path for s in TEXT2TEXT_IDS)


SPEECH_IDS = ("whisper", "melotts", "aura-", "smart-turn", "nova-3")


def _audio(case: schemathesis.Case) -> bool:
    """Audio the document calls valid (any bytes, any array of byte values, any base64) is
    rightly refused when it is not audio FFmpeg can decode, and a text a voice cannot speak (in
    another language than the voice's, or empty) rightly refused too, as are the options of
    nova-3's official schema that its Whisper stand-in refuses by name (diarize, redact, …);
    every other check applies (no 5xx, documented statuses and shapes)."""
    path = case.operation.path
    return "/audio/" in path or any(s in path for s in SPEECH_IDS)
