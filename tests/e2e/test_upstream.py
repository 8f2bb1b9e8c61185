"""wai in front of real llama.cpp servers (two `llama-server` replicas on loopback, each serving
the embedded model): Workers AI's API, the cloudflare and openai SDKs and Worker code through
wai to them; failures in Cloudflare's terms; cancellation reaching the upstream's slot; a replica
killed mid-run, and brought back."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cloudflare
import openai
import pytest
import requests

from tests.conftest import LLAMA2, ROOT, TOKEN, Server, free_port, start_server, stop_server
from tests.e2e.sse import parse_events
from tests.e2e.upstreams import (
    LlamaServer,
    llama_server_bin,
    start_llama_server,
    stop_llama_server,
)

SMOL = "@cf/acme/smol"  # no default system prompt: its requests match direct ones exactly
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Name three colours."},
]
WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


class Setup:
    def __init__(self, wai: Server, replicas: list[LlamaServer], binary: Path, tmp: Path):
        self.wai = wai
        self.replicas = replicas
        self.binary = binary
        self.tmp = tmp

    def run(self, model: str, body: dict[str, Any], **kw: Any) -> requests.Response:
        return requests.post(
            self.wai.run_url(model), json=body, headers=self.wai.auth, timeout=60, **kw
        )

    def replica_report(self, name: str = "up") -> list[dict[str, Any]]:
        r = requests.get(f"{self.wai.url}/healthz", timeout=5).json()
        replicas: list[dict[str, Any]] = r["runs"][name]["replicas"]
        return replicas


INNER_TOKEN = "inner-token-0123456789"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("upstream")
    binary = llama_server_bin()
    replicas = [start_llama_server(binary, tmp) for _ in range(2)]
    # llama-server runs tools only for templates it knows to carry them, which the embedded
    # model's is not; another wai is an OpenAI-compatible server that does (grammar-enforced)
    inner = start_server(tmp, "--token", INNER_TOKEN, env={"WAI_SLOTS": "2"})
    a, b = (f"http://127.0.0.1:{r.port}/v1" for r in replicas)
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    config = tmp / "wai.toml"
    config.write_text(
        f"""
[engine]
slots = 1
[models.up]
serves = ["{SMOL}", "{LLAMA2}"]
health_interval_s = 0.3
upstreams = [{{url = "{a}", model = "smollm2"}}, {{url = "{b}", model = "smollm2"}}]
[models.unwatched]  # health checks too rare to see a replica die: only requests find out
serves = ["@cf/acme/unwatched"]
health_interval_s = 3600
upstreams = [{{url = "{a}", model = "smollm2"}}, {{url = "{b}", model = "smollm2"}}]
[models.tight]
serves = ["@cf/acme/tight"]
upstreams = [{{url = "{a}", max_in_flight = 1}}]
[models.impatient]
serves = ["@cf/acme/impatient"]
upstreams = [{{url = "{b}", timeout_s = 0.05}}]
[models.tooly]
serves = ["@cf/acme/tooly"]
upstreams = [{{url = "{inner.url}/v1", model = "{LLAMA2}", api_key_env = "INNER_KEY"}}]
[models.nowhere]
serves = ["@cf/acme/nowhere"]
upstreams = [{{url = "{nowhere}", connect_timeout_s = 1}}]
"""
    )
    wai = start_server(
        tmp, "--config", str(config), "--token", TOKEN, env={"INNER_KEY": INNER_TOKEN}
    )
    yield Setup(wai, replicas, binary, tmp)
    stop_server(wai)
    stop_server(inner)
    for r in replicas:
        stop_llama_server(r)


def _direct_chat(replica: LlamaServer, **body: Any) -> dict[str, Any]:
    r = requests.post(f"{replica.url}/v1/chat/completions", json=body, timeout=60)
    r.raise_for_status()
    out: dict[str, Any] = r.json()
    return out


# -- translation, both ways --


def test_rest_answers_what_the_upstream_answers_directly(setup: Setup) -> None:
    r = setup.run(SMOL, {"messages": MESSAGES, "max_tokens": 24, "temperature": 0})
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    direct = _direct_chat(
        setup.replicas[0], messages=MESSAGES, max_tokens=24, temperature=0, model="smollm2"
    )
    assert result["response"] == direct["choices"][0]["message"]["content"]
    assert result["usage"]["prompt_tokens"] == direct["usage"]["prompt_tokens"]
    assert result["usage"]["completion_tokens"] == direct["usage"]["completion_tokens"]
    assert r.headers["x-wai-model"] == "up" and r.headers["cf-ai-req-id"]


def test_raw_prompt_is_a_completion(setup: Setup) -> None:
    prompt = "The capital of France is"
    r = setup.run(SMOL, {"prompt": prompt, "raw": True, "max_tokens": 8, "temperature": 0})
    assert r.status_code == 200, r.text
    direct = requests.post(
        f"{setup.replicas[1].url}/v1/completions",
        json={"prompt": prompt, "max_tokens": 8, "temperature": 0},
        timeout=60,
    ).json()
    assert r.json()["result"]["response"] == direct["choices"][0]["text"]


def test_stream_is_workers_ai_sse_with_usage(setup: Setup) -> None:
    body = {"messages": MESSAGES, "max_tokens": 24, "temperature": 0}
    whole = setup.run(SMOL, body).json()["result"]
    r = setup.run(SMOL, {**body, "stream": True}, stream=True)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream"
    events = parse_events(r.content.decode())
    assert events[-1] == "[DONE]"
    usage = events[-2]["usage"]  # cached_tokens: whichever replica's prefix cache was warm
    assert usage["completion_tokens"] == whole["usage"]["completion_tokens"]
    assert usage["prompt_tokens"] == whole["usage"]["prompt_tokens"]
    assert "".join(e["response"] for e in events[:-1]) == whole["response"]


def test_sampling_fields_reach_the_upstream(setup: Setup) -> None:
    """A seed makes sampled text repeatable; a different seed (almost surely) changes it."""
    body = {"prompt": "Write a word.", "max_tokens": 16, "temperature": 1.5, "top_k": 50}
    first = setup.run(SMOL, {**body, "seed": 11}).json()["result"]["response"]
    again = setup.run(SMOL, {**body, "seed": 11}).json()["result"]["response"]
    others = {setup.run(SMOL, {**body, "seed": s}).json()["result"]["response"] for s in (1, 2, 3)}
    assert first == again
    assert others != {first}


def test_cloudflare_sdk(setup: Setup) -> None:
    with cloudflare.Cloudflare(
        api_token=TOKEN, base_url=f"{setup.wai.url}/client/v4", max_retries=0
    ) as cf:
        out = cf.ai.run(SMOL, account_id="acc", messages=MESSAGES, max_tokens=12, temperature=0)
    assert isinstance(out, dict) and out["response"]
    assert out["usage"]["completion_tokens"] <= 12


def test_openai_sdk_streams_with_usage(setup: Setup) -> None:
    with openai.OpenAI(api_key=TOKEN, base_url=f"{setup.wai.url}/v1", max_retries=0) as client:
        whole = client.chat.completions.create(
            model=SMOL,
            messages=MESSAGES,
            max_tokens=16,
            temperature=0,  # type: ignore[arg-type]
        )
        chunks = list(
            client.chat.completions.create(
                model=SMOL,
                messages=MESSAGES,  # type: ignore[arg-type]
                max_tokens=16,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == whole.choices[0].message.content
        assert chunks[-1].usage is not None and whole.usage is not None
        assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_worker_code_through_the_binding(setup: Setup) -> None:
    """The seed's Worker and a modern one, in Miniflare, their AI binding answered by wai from
    the upstreams (the catalog id they call is served by them here)."""
    before = sum(r["requests"] for r in setup.replica_report())
    out = subprocess.run(
        ["node", "run-workers.mjs", setup.wai.url.removeprefix("http://"), TOKEN],
        cwd=ROOT / "tests" / "node",
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert results["seed"]["status"] == 200 and json.loads(results["seed"]["body"])["response"]
    assert results["/json"]["status"] == 200
    events = parse_events(results["/stream"]["body"])
    assert events[-1] == "[DONE]" and "usage" in events[-2]
    assert sum(r["requests"] for r in setup.replica_report()) >= before + 3


def test_json_mode(setup: Setup) -> None:
    schema = {
        "type": "object",
        "properties": {"colour": {"type": "string"}, "count": {"type": "integer"}},
        "required": ["colour", "count"],
    }
    r = setup.run(
        SMOL,
        {
            "messages": MESSAGES,
            "max_tokens": 64,
            "temperature": 0,
            "response_format": {"type": "json_schema", "json_schema": schema},
        },
    )
    assert r.status_code == 200, r.text
    out = r.json()["result"]["response"]
    assert isinstance(out, dict) and set(out) == {"colour", "count"}
    assert isinstance(out["count"], int)


def test_tool_calls_from_an_upstream_with_tools(setup: Setup) -> None:
    """Tools go upstream in OpenAI's form (with the upstream's API key); its streamed calls
    come back assembled, in Workers AI's form."""
    r = setup.run(
        "@cf/acme/tooly",
        {
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
            "tools": [WEATHER],
            "tool_choice": "required",
            "max_tokens": 64,
            "temperature": 0,
        },
    )
    assert r.status_code == 200, r.text
    calls = r.json()["result"]["tool_calls"]
    assert calls and calls[0]["name"] == "get_weather"
    assert isinstance(calls[0]["arguments"], dict) and "city" in calls[0]["arguments"]


def test_tool_calls_stream_through_the_openai_sdk(setup: Setup) -> None:
    with openai.OpenAI(api_key=TOKEN, base_url=f"{setup.wai.url}/v1", max_retries=0) as client:
        chunks = list(
            client.chat.completions.create(
                model="@cf/acme/tooly",
                messages=[{"role": "user", "content": "Weather in Oslo?"}],
                tools=[{"type": "function", "function": WEATHER}],  # type: ignore[list-item]
                tool_choice={"type": "function", "function": {"name": "get_weather"}},
                max_tokens=64,
                temperature=0,
                stream=True,
            )
        )
        calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
        assert calls[0].function and calls[0].function.name == "get_weather" and calls[0].id
        args = "".join(tc.function.arguments or "" for tc in calls if tc.function)
        assert "city" in json.loads(args)
        assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_an_upstream_without_tool_support_answers_in_text(setup: Setup) -> None:
    r = setup.run(
        SMOL,
        {"prompt": "Weather in Rome?", "tools": [WEATHER], "max_tokens": 8, "temperature": 0},
    )
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["response"] and result["tool_calls"] == []


def test_usage_is_accounted(setup: Setup) -> None:
    r = requests.get(
        f"{setup.wai.url}/wai/v1/usage", params={"by": "model"}, headers=setup.wai.auth, timeout=5
    )
    rows = [row for row in r.json()["usage"] if row["model"] == SMOL]  # one per account
    assert sum(row["requests"] for row in rows) >= 5
    assert sum(row["completion_tokens"] for row in rows) > 0


# -- failures, in Cloudflare's terms --


def test_an_upstream_refusal_is_bad_input_with_its_message(setup: Setup) -> None:
    """More prompt than a llama-server slot holds: llama-server says so (400), wai answers
    400/5006 with its words."""
    r = setup.run(SMOL, {"prompt": "word " * 3000, "max_tokens": 8})
    assert r.status_code == 400, r.text
    err = r.json()["errors"][0]
    assert err["code"] == 5006
    assert "context" in err["message"]


def test_an_upstream_timeout_is_3007(setup: Setup) -> None:
    r = setup.run("@cf/acme/impatient", {"prompt": "Tell me a story", "max_tokens": 200})
    assert r.status_code == 408, r.text
    assert r.json()["errors"][0]["code"] == 3007


def test_no_reachable_upstream_is_3043_and_not_ready(setup: Setup) -> None:
    r = setup.run("@cf/acme/nowhere", {"prompt": "hi"})
    assert r.status_code == 503, r.text
    assert r.json()["errors"][0]["code"] == 3043
    ready = requests.get(f"{setup.wai.url}/readyz", timeout=5)
    assert ready.status_code == 503
    assert any(x.startswith("nowhere: no upstream") for x in ready.json()["reasons"])
    assert "127.0.0.1" not in ready.text and "127.0.0.1" not in r.text  # no internal hosts


def test_replica_addresses_are_for_token_holders_only(setup: Setup) -> None:
    public = requests.get(f"{setup.wai.url}/healthz", timeout=5).text
    assert all(f":{r.port}" not in public for r in setup.replicas)
    stats = requests.get(f"{setup.wai.url}/wai/v1/stats", headers=setup.wai.auth, timeout=5)
    urls = [r["url"] for r in stats.json()["upstreams"]["up"]["replicas"]]
    assert urls == [f"{r.url}/v1" for r in setup.replicas]


def test_a_full_upstream_with_reject_if_busy_is_3040(setup: Setup) -> None:
    long = {"prompt": "Count to a thousand", "max_tokens": 300, "ignore_eos": True}
    with setup.run("@cf/acme/tight", {**long, "stream": True}, stream=True) as first:
        assert first.status_code == 200
        lines = first.iter_lines()  # kept: a dropped iterator closes the connection
        line = next(lines)
        assert json.loads(line.removeprefix(b"data: "))["response"], line
        assert setup.replica_report("tight")[0]["outstanding"] == 1
        r = setup.run("@cf/acme/tight", {"prompt": "hi", "options": {"rejectIfBusy": True}})
        assert r.status_code == 429, r.text
        assert r.json()["errors"][0]["code"] == 3040


def _wait_idle(replicas: list[LlamaServer], seconds: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if all(r.busy_slots() == 0 for r in replicas):
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"an upstream slot still busy after {seconds} s")


def test_a_client_that_goes_away_frees_the_upstream_slot(setup: Setup) -> None:
    _wait_idle(setup.replicas, 30)
    body = {"prompt": "Count to a thousand", "max_tokens": 1500, "ignore_eos": True}
    with setup.run(SMOL, {**body, "stream": True}, stream=True) as r:
        lines = r.iter_lines()
        for _ in range(3):
            next(lines)
        assert sum(rep.busy_slots() for rep in setup.replicas) == 1
    # 1500 tokens take llama-server far longer than this on one thread
    assert _wait_idle(setup.replicas, 3) < 3


# -- replicas --


def test_requests_are_spread_over_the_replicas(setup: Setup) -> None:
    before = [r["requests"] for r in setup.replica_report()]
    body = {"prompt": "Say hi", "max_tokens": 48, "ignore_eos": True, "stream": True}

    def one(_: int) -> int:
        return setup.run(SMOL, body).status_code

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(one, range(4))) == [200] * 4
    after = [r["requests"] for r in setup.replica_report()]
    assert all(b > a for a, b in zip(before, after, strict=True)), (before, after)
    metrics = requests.get(f"{setup.wai.url}/metrics", headers=setup.wai.auth, timeout=5).text
    for i, n in enumerate(after, 1):
        assert f'wai_upstream_requests_total{{model="up",replica="replica {i}"}} {n}.0' in metrics
        assert f'wai_upstream_healthy{{model="up",replica="replica {i}"}} 1.0' in metrics


def test_a_replica_killed_mid_run(setup: Setup) -> None:
    """Streams already on the killed replica end with an error event; the others finish; new
    requests keep succeeding on the survivor; the replica is re-admitted when it is back."""
    _wait_idle(setup.replicas, 30)
    body = {"prompt": "Count to a thousand", "max_tokens": 400, "ignore_eos": True}
    streams = [setup.run(SMOL, {**body, "stream": True}, stream=True) for _ in range(4)]
    lines = [s.iter_lines() for s in streams]
    for it in lines:
        next(it)  # every stream has started
    assert all(r["outstanding"] == 2 for r in setup.replica_report())
    victim = setup.replicas[0]
    victim.kill()
    ends = []
    for it in lines:
        raw = b"\n".join(it).decode()
        events = [json.loads(x[6:]) for x in raw.split("\n") if x.startswith("data: {")]
        assert raw.rstrip().endswith("data: [DONE]")
        ends.append(events[-1])
    failed = [e for e in ends if "error" in e]
    finished = [e for e in ends if "usage" in e]
    assert len(failed) == 2 and len(finished) == 2, ends
    assert all(e["error"]["code"] == 3043 for e in failed)
    for s in streams:
        s.close()

    for _ in range(6):  # the dead replica is skipped (or retried elsewhere): no failures
        r = setup.run(SMOL, {"prompt": "hi", "max_tokens": 4})
        assert r.status_code == 200, r.text
    report = setup.replica_report()
    assert report[0]["healthy"] is False and report[1]["healthy"] is True

    # A model that has not noticed: its requests that go to the dead replica fail to connect
    # (before any byte) and are retried on the other, streams included.
    for stream in (False, True, False, True):
        r = setup.run("@cf/acme/unwatched", {"prompt": "hi", "max_tokens": 4, "stream": stream})
        assert r.status_code == 200, r.text
        if stream:
            assert "usage" in parse_events(r.content.decode())[-2]
    dead, alive = setup.replica_report("unwatched")
    assert dead["healthy"] is False and dead["errors"] == 1 and dead["ejections"] == 1
    assert alive["requests"] == 4 and alive["errors"] == 0

    setup.replicas[0] = start_llama_server(setup.binary, setup.tmp, port=victim.port)
    deadline = time.monotonic() + 10
    while not setup.replica_report()[0]["healthy"]:
        assert time.monotonic() < deadline, "the replica was not re-admitted"
        time.sleep(0.1)
    before = setup.replica_report()[0]["requests"]
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda _: setup.run(SMOL, {"prompt": "hi"}).status_code, range(4)))
    assert codes == [200] * 4
    assert setup.replica_report()[0]["requests"] > before


def test_a_session_stays_on_its_replica_fails_over_and_comes_back(setup: Setup) -> None:
    _wait_idle(setup.replicas, 30)

    def send(session: str) -> int:
        """Which replica answered one request of this session."""
        before = [r["requests"] for r in setup.replica_report()]
        headers = {**setup.wai.auth, "x-session-affinity": session}
        r = requests.post(
            setup.wai.run_url(SMOL),
            json={"prompt": "hi", "max_tokens": 2},
            headers=headers,
            timeout=60,
        )
        assert r.status_code == 200, r.text
        after = [r["requests"] for r in setup.replica_report()]
        moved = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if b > a]
        assert len(moved) == 1, (before, after)
        return moved[0]

    homes = {f"user-{k}": send(f"user-{k}") for k in range(12)}
    assert set(homes.values()) == {0, 1}  # sessions spread over the replicas
    for session, home in list(homes.items())[:4]:
        assert [send(session) for _ in range(3)] == [home] * 3
    away = next(s for s, home in homes.items() if home == 0)
    stays = next(s for s, home in homes.items() if home == 1)

    victim = setup.replicas[0]
    victim.kill()
    deadline = time.monotonic() + 10
    while setup.replica_report()[0]["healthy"]:
        assert time.monotonic() < deadline, "the dead replica was not ejected"
        time.sleep(0.1)
    assert send(away) == 1 and send(stays) == 1

    setup.replicas[0] = start_llama_server(setup.binary, setup.tmp, port=victim.port)
    deadline = time.monotonic() + 10
    while not setup.replica_report()[0]["healthy"]:
        assert time.monotonic() < deadline, "the replica was not re-admitted"
        time.sleep(0.1)
    assert send(away) == 0 and send(stays) == 1  # back home; the other never moved
