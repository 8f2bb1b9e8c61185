"""Speculative decoding: the same answers as without it, drafts verified and counted.

One server verifies every draft prompt lookup finds (`WAI_DRAFT_MIN`), another has
`WAI_SPECULATION=off`. Greedy and seeded answers must be the same on both, token for token,
while the answers that quote their input are drafted and partly accepted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.conftest import TOKEN, Server, answer_only, start_server, stop_server
from tests.e2e.test_capacity import idle, wait_for

TEXT = (
    "Their are many reasons to beleive that the wether tomorow will be sunny, acording to the "
    "forcast. The city councel met on Tuesday to discus the new park, wich will open next "
    "spring with a playgroud, a pond and a smal cafe near the entrence."
)
COPY = f"Repeat this text with the typos fixed:\n\n{TEXT}"
DOCUMENT = (
    "Invoice 2291 was issued by Northwind Traders of Lyon, France on 3 March 2026 to Alice "
    "Moreau for 12 oak chairs at 85 euros each."
)


def _server(factory: pytest.TempPathFactory, env: dict[str, str]) -> Iterator[Server]:
    srv = start_server(factory.mktemp("spec"), "--token", TOKEN, env={"WAI_SLOTS": "4", **env})
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Speculation that verifies every draft it finds (engine.draft_min), whether or not it
    pays on this machine: what is checked is that verification never changes a token."""
    yield from _server(tmp_path_factory, {"WAI_DRAFT_MIN": "4"})


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _server(tmp_path_factory, {"WAI_SPECULATION": "off"})


def chat(server: Server, content: str, **extra: Any) -> dict[str, Any]:
    body = {"model": "@cf/meta/llama-2-7b-chat-int8", "max_tokens": 96, "temperature": 0}
    r = requests.post(
        f"{server.url}/v1/chat/completions",
        headers=server.auth,
        json={**body, "messages": [{"role": "user", "content": content}], **extra},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def streamed(server: Server, content: str, max_tokens: int) -> requests.Response:
    """A streamed chat request, its response open (read its lines, or close it)."""
    return requests.post(
        f"{server.url}/v1/chat/completions",
        headers=server.auth,
        json={
            "model": "@cf/meta/llama-2-7b-chat-int8",
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
        },
        stream=True,
        timeout=120,
    )


def drafts(answer: dict[str, Any]) -> tuple[int, int]:
    """(drafted, accepted) tokens of an answer."""
    details = answer["usage"].get("completion_tokens_details") or {}
    accepted = details.get("accepted_prediction_tokens", 0)
    return accepted + details.get("rejected_prediction_tokens", 0), accepted


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a["choices"] == b["choices"] and answer_only(a["usage"]) == answer_only(b["usage"]))


CASES = {
    "copy": (COPY, {}),
    "chat": ("Write a short story about a lighthouse keeper.", {}),
    "json": (
        f"Extract the invoice's number, company, city and date as JSON.\n\n{DOCUMENT}",
        {"response_format": {"type": "json_object"}},
    ),
    "stop": (COPY, {"stop": ["park"]}),
    "seeded": (COPY, {"temperature": 0.7, "seed": 11}),
    "biased": (COPY, {"logit_bias": {"13": -5}, "frequency_penalty": 0.2}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_answers_are_the_same_as_without_speculation(
    spec: Server, plain: Server, case: str
) -> None:
    content, extra = CASES[case]
    with_drafts = chat(spec, content, **extra)
    without = chat(plain, content, **extra)
    assert same(with_drafts, without)
    assert drafts(without) == (0, 0)
    if case != "chat":  # these quote their input: drafted, and mostly accepted
        drafted, accepted = drafts(with_drafts)
        assert drafted > 0 and accepted > 0, (drafted, accepted)
    if case == "stop":
        assert with_drafts["choices"][0]["finish_reason"] == "stop"
        assert "park" not in with_drafts["choices"][0]["message"]["content"]


def test_sequences_with_and_without_drafts_in_one_batch_get_their_own_tokens(
    spec: Server, plain: Server
) -> None:
    contents = [COPY, "Name three rivers.", COPY.replace("park", "museum"), "Describe rain."]
    alone = [chat(plain, c, max_tokens=64) for c in contents]
    wait_for(lambda: idle(spec))
    with ThreadPoolExecutor(len(contents)) as pool:
        together = list(pool.map(lambda c: chat(spec, c, max_tokens=64), contents))
    for a, b in zip(alone, together, strict=True):
        assert same(a, b)
    assert any(drafts(t)[0] for t in together)


def test_drafted_and_accepted_tokens_are_counted(spec: Server) -> None:
    before = spec.stats()
    drafted, accepted = drafts(chat(spec, COPY.replace("Tuesday", "Friday")))
    after = spec.stats()
    assert drafted > 0
    assert after["drafted_tokens"] - before["drafted_tokens"] == drafted
    assert after["accepted_tokens"] - before["accepted_tokens"] == accepted
    metrics = requests.get(f"{spec.url}/metrics", headers=spec.auth, timeout=10).text
    assert 'wai_speculative_drafted_tokens_total{model="' in metrics
    assert 'wai_speculative_accepted_tokens_total{model="' in metrics


def test_an_answer_read_whole_arrives_whole_with_its_first_token_timed(spec: Server) -> None:
    """A non-streamed request's text after its first token travels with its end (one frame,
    not one per step): the same answer as streamed, and its TTFT still measured."""
    whole = chat(spec, "Name three rivers.", max_tokens=32)
    r = streamed(spec, "Name three rivers.", max_tokens=32)
    lines = r.iter_lines()
    pieces = []
    for line in lines:
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            choices = json.loads(line[6:])["choices"]
            if choices:
                pieces.append(choices[0]["delta"].get("content") or "")
    assert len(pieces) > 3  # streamed: a chunk per token
    assert "".join(pieces) == whole["choices"][0]["message"]["content"]
    again = chat(spec, "Write a short story about a lighthouse keeper.", max_tokens=48)
    assert again["usage"]["completion_tokens"] > 24
    # its first token was sent as it came: the access log's TTFT is well before its end
    usage = again["usage"]

    def logged() -> list[dict[str, Any]]:
        lines = [json.loads(x) for x in spec.log.read_text().splitlines() if x.startswith("{")]
        return [
            x
            for x in lines
            if x.get("route") == "/v1/chat/completions"
            and (x.get("prompt_tokens"), x.get("completion_tokens"))
            == (usage["prompt_tokens"], usage["completion_tokens"])
        ]

    wait_for(lambda: bool(logged()))
    line = logged()[-1]
    assert line["ttft_ms"] < line["duration_ms"] / 2


def test_a_client_that_goes_away_mid_verification_frees_its_slot(spec: Server) -> None:
    wait_for(lambda: idle(spec))
    before = spec.stats()
    r = streamed(spec, COPY, max_tokens=200)
    lines = r.iter_lines()
    for _ in range(80):  # tokens as they come (drafts verified for it by now)
        next(lines)
    r.close()  # gone
    wait_for(lambda: idle(spec))
    after = spec.stats()
    assert after["requests_cancelled"] == before["requests_cancelled"] + 1
    assert after["drafted_tokens"] > before["drafted_tokens"]
