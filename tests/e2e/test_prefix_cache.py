"""Prefix caching: reuse is reported, and never changes greedy output."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from tests.conftest import Server
from tests.e2e.test_capacity import idle, wait_for


def _run(server: Server, messages: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    r = requests.post(
        server.run_url(),
        headers=server.auth,
        timeout=120,
        json={"messages": messages, "max_tokens": 24, "temperature": 0, **extra},
    )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()["result"]
    return result


def test_repeated_system_prompt_is_reused_and_output_is_unchanged(server: Server) -> None:
    wait_for(lambda: idle(server))
    system = {"role": "system", "content": f"[{uuid.uuid4()}] You are a careful assistant. " * 8}
    question = [system, {"role": "user", "content": "Name three rivers."}]
    cold = _run(server, question)
    # only the template's first few tokens can match an earlier, unrelated request
    assert cold["usage"].get("prompt_tokens_details", {"cached_tokens": 0})["cached_tokens"] < 10
    warm = _run(server, question)
    cached = warm["usage"]["prompt_tokens_details"]["cached_tokens"]
    chunk = 128  # engine.prefill_chunk: reuse stops at a chunk boundary
    assert cached == (warm["usage"]["prompt_tokens"] - 1) // chunk * chunk > 0
    assert warm["response"] == cold["response"]

    other = _run(server, [system, {"role": "user", "content": "Name three mountains."}])
    assert other["usage"]["prompt_tokens_details"]["cached_tokens"] > 60


def test_next_chat_turn_reuses_the_previous_turn(server: Server) -> None:
    wait_for(lambda: idle(server))
    turn1 = [
        {
            "role": "user",
            "content": f"({uuid.uuid4()}) Tell me about owls. " + "Owls are birds. " * 40,
        }
    ]
    first = _run(server, turn1)
    turn2 = [
        *turn1,
        {"role": "assistant", "content": first["response"]},
        {"role": "user", "content": "And about cats?"},
    ]
    second = _run(server, turn2)
    # the previous turn's prompt (less the template's generation header), cut at a chunk
    # boundary
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= (first["usage"]["prompt_tokens"] - 4) // 128 * 128 > 0


def test_greedy_output_does_not_depend_on_batch_composition(server: Server) -> None:
    wait_for(lambda: idle(server))
    prompts = [
        [{"role": "user", "content": f"({uuid.uuid4()}) Describe {topic}."}]
        for topic in ("rain", "bread", "chess", "the moon")
    ]
    alone = [_run(server, p, ignore_eos=True)["response"] for p in prompts]
    # the same four again, together (and now with cache hits)
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda p: _run(server, p, ignore_eos=True)["response"], prompts))
    assert together == alone
