"""backends/upstream's decisions, one by one: the OpenAI request built for a generation, the
tool calls assembled from streamed fragments, the message read out of an upstream's error,
which replica takes a request; and the settings of an upstream model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from wai.api.framing import status_for
from wai.backends.base import (
    GenerationRequest,
    Message,
    SamplingParams,
    Tool,
    ToolCall,
    ToolsRequest,
    UpstreamError,
    Usage,
)
from wai.backends.upstream.backend import UpstreamBackend
from wai.backends.upstream.openai_format import (
    Retry,
    error_message,
    merge_calls,
    openai_message,
    parse_calls,
    request_body,
    sse_data,
    usage_of,
)
from wai.settings import Settings, SettingsError, Upstream, load_settings


def test_a_chat_is_a_streamed_chat_completion_withusage_of() -> None:
    path, body = request_body(
        GenerationRequest(
            max_tokens=12,
            messages=(Message("user", "hi"),),
            sampling=SamplingParams(temperature=0, seed=3),
            stop=("\n",),
        )
    )
    assert path == "/chat/completions"
    assert body == {
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 12,
        "temperature": 0,
        "seed": 3,
        "stop": ["\n"],
        "messages": [{"role": "user", "content": "hi"}],
    }


def test_a_raw_prompt_is_a_completion_and_unset_knobs_are_left_out() -> None:
    path, body = request_body(GenerationRequest(max_tokens=5, prompt="Once", ignore_eos=True))
    assert path == "/completions"
    assert body["prompt"] == "Once" and body["ignore_eos"] is True
    assert "messages" not in body and "top_p" not in body and "logit_bias" not in body


def test_every_sampling_knob_and_the_penalty_under_both_names() -> None:
    s = SamplingParams(
        temperature=0.7,
        top_p=0.9,
        top_k=40,
        min_p=0.05,
        repetition_penalty=1.1,
        frequency_penalty=0.2,
        presence_penalty=0.3,
        logit_bias=((15, -100.0),),
    )
    _, body = request_body(GenerationRequest(max_tokens=1, prompt="x", sampling=s))
    assert body["top_k"] == 40 and body["min_p"] == 0.05 and body["top_p"] == 0.9
    assert body["repetition_penalty"] == body["repeat_penalty"] == 1.1
    assert body["logit_bias"] == {"15": -100.0}


def test_json_mode_is_a_json_schema_response_format() -> None:
    schema = {"type": "object"}
    _, body = request_body(
        GenerationRequest(max_tokens=1, messages=(Message("user", "x"),), json_schema=schema)
    )
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == schema


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", "auto"),
        ("required", "required"),
        ("get_time", {"type": "function", "function": {"name": "get_time"}}),
    ],
)
def test_tools_and_tool_choice(choice: str, wire: object) -> None:
    tools = ToolsRequest((Tool("get_time", "Time"),), choice, parallel=False)
    _, body = request_body(
        GenerationRequest(max_tokens=1, messages=(Message("user", "x"),), tools=tools)
    )
    fn = {"name": "get_time", "description": "Time", "parameters": {"type": "object"}}
    assert body["tools"] == [{"type": "function", "function": fn}]
    assert body["tool_choice"] == wire and body["parallel_tool_calls"] is False


def test_earlier_calls_go_upstream_with_arguments_as_a_json_string() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
    out = openai_message(Message("assistant", "", (call,)))
    assert out["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'
    assert call["function"]["arguments"] == {"a": 1}  # the request's own message is untouched


def test_streamed_call_fragments_are_assembled() -> None:
    calls: dict[int, dict[str, str]] = {}
    merge_calls(calls, [{"index": 0, "id": "a", "function": {"name": "get_weather"}}])
    merge_calls(calls, [{"index": 0, "function": {"arguments": '{"city": '}}])
    merge_calls(calls, [{"index": 1, "id": "b", "function": {"name": "f", "arguments": ""}}])
    merge_calls(calls, [{"index": 0, "function": {"arguments": '"Paris"}'}}])
    parsed, leftover = parse_calls(calls)
    assert parsed == [ToolCall("a", "get_weather", {"city": "Paris"}), ToolCall("b", "f", {})]
    assert leftover == ""


def test_a_call_whose_arguments_are_not_an_object_stays_text() -> None:
    parsed, leftover = parse_calls({0: {"id": "a", "name": "f", "arguments": "{oops"}})
    assert parsed == [] and "{oops" in leftover


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"error": {"message": "context too long", "type": "x"}}', "context too long"),
        (b'{"object": "error", "message": "bad model"}', "bad model"),
        (b'{"detail": "invalid"}', "invalid"),
        (b"plain words", "plain words"),
        (b"", "HTTP 418"),
    ],
)
def test_an_upstreamerror_message(raw: bytes, message: str) -> None:
    assert error_message(raw, 418) == message


def test_usage_without_one_counts_the_chunks() -> None:
    assert usage_of(None, 7) == Usage(0, 7)
    u = {"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 4}}
    assert usage_of(u, 9) == Usage(5, 2, 4)


def _backend(n: int, max_in_flight: int = 2) -> UpstreamBackend:
    ups = [
        Upstream(url=f"http://10.0.0.{i}:8000/v1", max_in_flight=max_in_flight) for i in range(n)
    ]
    return UpstreamBackend("m", ups)


def test_routing_takes_the_least_busy_healthy_replica_with_room() -> None:
    b = _backend(3)
    r0, r1, r2 = b.replicas
    r0.outstanding, r1.outstanding, r2.outstanding = 1, 0, 1
    assert b.pool.pick(set()) is r1
    r1.healthy = False
    assert b.pool.pick(set()) in (r0, r2)
    r0.outstanding = r2.outstanding = 2  # full
    assert b.pool.pick(set()) is None
    r2.outstanding = 0
    assert b.pool.pick({2}) is None  # tried already: a retry goes elsewhere


def test_ties_are_taken_in_turn() -> None:
    b = _backend(2)
    assert {id(b.pool.pick(set())) for _ in range(4)} == {id(r) for r in b.replicas}


def test_an_unreachable_replica_is_ejected_at_once_others_after_repeated_failures() -> None:
    b = _backend(2)
    r0, r1 = b.replicas
    b.pool.note_failure(r0, "ConnectError", eject_now=True)
    assert not r0.healthy and r0.ejections == 1
    b.pool.note_failure(r1, "HTTP 500", eject_now=False)
    assert r1.healthy
    b.pool.note_failure(r1, "HTTP 500", eject_now=False)
    assert not r1.healthy
    assert b.unready() is not None and "no upstream" in (b.unready() or "")


def _settings(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    p = tmp_path / "wai.toml"
    p.write_text(text)
    return load_settings(p, env=env or {})


def test_an_upstream_model_needs_no_path(tmp_path: Path) -> None:
    s = _settings(
        tmp_path,
        '[models.big]\nserves = ["@cf/x/y"]\nupstreams = [{url = "http://gpu:8000/v1"}]\n',
    )
    up = s.models["big"].upstreams[0]
    assert up.url == "http://gpu:8000/v1" and up.max_in_flight == 64 and up.api_key is None


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ("serves = []", "a `path`"),
        ('path = "/m.gguf"\nupstreams = [{url = "http://a/v1"}]', "path: only for a local"),
        ('upstreams = [{url = "http://a/v1"}]\nslots = 2', "slots: only for a local"),
        ('upstreams = [{url = "ftp://a/v1"}]', "url"),
        ('upstreams = [{url = "http://a/v1", max_in_flight = 0}]', "max_in_flight"),
        ('upstreams = [{url = "http://a/v1", api_key = "x"}]', "api_key"),
    ],
)
def test_bad_upstream_entries_are_refused(tmp_path: Path, entry: str, error: str) -> None:
    with pytest.raises(SettingsError, match=error):
        _settings(tmp_path, f"[models.big]\n{entry}\n")


def test_an_api_key_comes_from_the_named_variable_which_must_be_set(tmp_path: Path) -> None:
    entry = '[models.big]\nupstreams = [{url = "http://a/v1", api_key_env = "VLLM_KEY"}]\n'
    s = _settings(tmp_path, entry, env={"VLLM_KEY": "sekrit"})
    assert s.models["big"].upstreams[0].api_key == "sekrit"
    assert "sekrit" not in str(s.model_dump())
    with pytest.raises(SettingsError, match="VLLM_KEY is not set"):
        _settings(tmp_path, entry)


def _stream(*chunks: bytes) -> httpx.Response:
    class Chunks(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for c in chunks:
                yield c

    return httpx.Response(200, stream=Chunks())


@pytest.mark.parametrize(
    "chunks",
    [
        (b'data: {"a":1}\n\ndata: [DONE]\n\n',),
        (b'data: {"a"', b":1}\n", b"\n: ping\n\ndata: [DO", b"NE]\n\n"),
        (b'data:{"a":1}\r\n\r\n', b"data: [DONE]"),  # CRLF, and no newline at the very end
    ],
)
def test_event_stream_payloads_whatever_the_chunking(chunks: tuple[bytes, ...]) -> None:
    async def payloads() -> list[bytes]:
        return [d async for d in sse_data(_stream(*chunks))]

    assert asyncio.run(payloads()) == [b'{"a":1}', b"[DONE]"]


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (429, "retry busy"),
        (503, "retry busy"),
        (500, "retry"),
        (502, "retry"),
        (400, (400, 5006)),
        (422, (400, 5006)),
        (408, (408, 3007)),
        (401, (503, 3043)),
        (404, (503, 3043)),
    ],
)
def test_an_upstream_refusal_is_a_retry_or_the_clients_error(status: int, outcome: object) -> None:
    backend = _backend(1)
    response = httpx.Response(status, content=b'{"error": {"message": "nope"}}')
    e = asyncio.run(backend._refused(backend.replicas[0], response))
    if isinstance(e, Retry):
        assert outcome == ("retry busy" if e.busy else "retry")
    else:
        assert isinstance(e, UpstreamError)
        assert (status_for(e.code), e.code) == outcome and "nope" in e.message


def test_a_session_keeps_its_replica_fails_over_and_comes_back() -> None:
    b = _backend(3)
    sessions = [f"session {i}" for i in range(12)]
    home = {s: b.pool.pick(set(), s) for s in sessions}
    assert len({id(r) for r in home.values()}) > 1  # sessions spread over the replicas
    s = sessions[0]
    mine = home[s]
    assert mine is not None
    mine.outstanding = 1  # busy but with room, others idle: still the session's own
    assert all(b.pool.pick(set(), s) is mine for _ in range(4))
    mine.outstanding = 2  # full: the session waits for it rather than move
    assert b.pool.pick(set(), s) is None
    mine.outstanding, mine.healthy = 0, False  # ejected: the next in the session's order
    other = b.pool.pick(set(), s)
    assert other is not None and other is not mine
    # no other session moves, except those of the ejected replica
    assert all(b.pool.pick(set(), t) is home[t] for t in sessions if home[t] is not mine)
    assert b.pool.pick({b.replicas.index(other)}, s) not in (mine, other)  # a retry: a third
    mine.healthy = True
    assert b.pool.pick(set(), s) is mine  # back home
