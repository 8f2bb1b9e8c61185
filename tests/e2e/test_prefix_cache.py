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
    # an exact repeat: the whole prompt, its first token from the logits kept
    assert warm["usage"]["prompt_tokens_details"]["cached_tokens"] == warm["usage"]["prompt_tokens"]
    assert warm["response"] == cold["response"]

    other = _run(server, [system, {"role": "user", "content": "Name three mountains."}])
    # the system message ends a chunk (its end-of-turn token is a cut): all of it is reused,
    # only the short user turn and the generation header are computed
    cached = other["usage"]["prompt_tokens_details"]["cached_tokens"]
    n_prompt = other["usage"]["prompt_tokens"]
    assert (n_prompt - 1) // 128 * 128 < cached < n_prompt
    assert n_prompt - cached < 20


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


# -- any slot's KV, the RAM cache, followers: the same tokens as computed fresh --

SLOTS = 4  # the test server's engine.slots


def _system(words: str) -> dict[str, str]:
    """A system prompt never seen before, of about 150 tokens: with 24 generated tokens a
    sequence stays under 256 cells of KV (see the README's determinism section)."""
    return {"role": "system", "content": f"[{uuid.uuid4()}] " + f"{words} " * 24}


def _cached(result: dict[str, Any]) -> int:
    n: int = result["usage"].get("prompt_tokens_details", {"cached_tokens": 0})["cached_tokens"]
    return n


def _hits(server: Server) -> dict[str, int]:
    pc: dict[str, int] = server.stats()["prompt_cache"]  # type: ignore[assignment]
    return pc


def _evict_every_slot(server: Server) -> None:
    """Unrelated requests, one at a time, until every slot has held one: what the slots held
    before is in the RAM cache now (or nowhere)."""
    for _ in range(SLOTS):
        _run(server, [_system("Unrelated filler."), {"role": "user", "content": "Hi"}])


def test_a_prompt_restored_from_ram_gives_the_tokens_computed_fresh(server: Server) -> None:
    wait_for(lambda: idle(server))
    question = [_system("You answer in French."), {"role": "user", "content": "Name a river."}]
    fresh = _run(server, question, ignore_eos=True)
    assert _cached(fresh) < 10  # nothing of it was anywhere
    _evict_every_slot(server)
    before = _hits(server)
    restored = _run(server, question, ignore_eos=True)
    after = _hits(server)
    assert after["hits_ram"] == before["hits_ram"] + 1
    assert after["entries"] >= 1 and after["bytes"] > 0
    # all but the last message's tail came from RAM
    assert restored["usage"]["prompt_tokens"] - _cached(restored) < 16
    assert restored["response"] == fresh["response"]


def test_a_prefix_copied_from_another_slot_gives_the_tokens_computed_fresh(
    server: Server,
) -> None:
    wait_for(lambda: idle(server))
    system = _system("You are terse.")
    mine = [system, {"role": "user", "content": "Hi"}]
    fresh = _run(server, mine, ignore_eos=True)
    # another request with the same system prompt takes mine's slot (it holds the most of its
    # prompt) and holds it while mine comes again: the system prompt is copied from there
    other = [system, {"role": "user", "content": "Count to one hundred, slowly."}]
    body = {"messages": other, "max_tokens": 400, "ignore_eos": True, "stream": True}
    with requests.post(
        server.run_url(), headers=server.auth, json=body, stream=True, timeout=120
    ) as holder:
        lines = holder.iter_lines()  # kept: a dropped iterator closes the stream
        next(lines)  # it is decoding
        before = _hits(server)
        copied = _run(server, mine, ignore_eos=True)
        after = _hits(server)
    assert after["hits_copy"] == before["hits_copy"] + 1
    assert _cached(copied) > 100
    assert copied["response"] == fresh["response"]


def test_requests_arriving_together_compute_a_shared_prefix_once(server: Server) -> None:
    wait_for(lambda: idle(server))
    system = _system("You help with bicycles.")
    asks = [[system, {"role": "user", "content": f"Tell me about part {k}."}] for k in range(3)]
    before = _hits(server)
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda m: _run(server, m, ignore_eos=True), asks))
    after = _hits(server)
    # the first computes the system prompt; the others copy it from its slot (what it has
    # computed when they arrive, or all of it once computed, waiting for it)
    assert sorted(_cached(r) > 100 for r in together) == [False, True, True]
    assert after["hits_copy"] == before["hits_copy"] + 2
    assert after["misses"] == before["misses"] + 1
    _evict_every_slot(server)
    alone = [_run(server, m, ignore_eos=True) for m in asks]  # from RAM, one at a time
    assert [r["response"] for r in alone] == [r["response"] for r in together]


def test_an_exact_repeat_computes_nothing_and_answers_the_same(server: Server) -> None:
    wait_for(lambda: idle(server))
    question = [_system("You like maps."), {"role": "user", "content": "Name a city."}]
    first = _run(server, question, ignore_eos=True)
    again = _run(server, question, ignore_eos=True)
    assert _cached(again) == again["usage"]["prompt_tokens"]
    assert again["response"] == first["response"]
