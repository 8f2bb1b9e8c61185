"""The batch queue's durable state and its input rules, without a server: SQLite in a temporary
directory, as the server keeps it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from wai.errors import InvalidInput
from wai.queue.store import Outcome, Owner, QueueFull, QueueStore
from wai.runtime import InteractiveLoad
from wai.schemas.embeddings import parse_embeddings
from wai.schemas.queue import is_poll, parse_batch, parse_poll
from wai.usage import UsageStore

ME = Owner("acc1", "sha256:aaaa", {"account": "acc1"})
MODEL = "@cf/baai/bge-base-en-v1.5"


@pytest.fixture
def store(tmp_path: Path) -> QueueStore:
    return QueueStore(tmp_path / "usage.db")


def _queue(store: QueueStore, n: int, owner: Owner = ME, limit: int = 1000) -> str:
    return store.enqueue(MODEL, owner, [({"text": f"t{i}"}, f"ref{i}") for i in range(n)], limit)


def test_ids_are_random_uuids_and_only_the_owner_sees_a_batch(store: QueueStore) -> None:
    a, b = _queue(store, 1), _queue(store, 1)
    assert a != b and len(a) == 36
    assert store.view(a, ME) is not None
    assert store.view(a, Owner("acc2", "sha256:aaaa", {"account": "acc2"})) is None
    assert (
        store.view(a, Owner("acc1", "sha256:bbbb", {"account": "acc1"})) is None
    )  # same account, other token


def test_an_item_is_finished_once_with_its_usage_row_in_the_same_transaction(
    store: QueueStore, tmp_path: Path
) -> None:
    batch = _queue(store, 2)
    items = store.claim(MODEL, 10)
    assert [i.index for i in items] == [0, 1]
    view = store.view(batch, ME)
    assert view is not None and view.status == "running"
    done = Outcome(True, {"data": [[1.0]]}, prompt_tokens=5)
    store.finish(items[0], done)
    store.finish(items[0], done)  # a second finish of the same item changes nothing
    store.finish(items[1], Outcome(False, {"code": 5006, "message": "bad"}))
    usage = UsageStore(tmp_path / "usage.db").report()
    assert [(r["requests"], r["prompt_tokens"]) for r in usage] == [(1, 5)]  # counted once
    responses, totals = store.responses(batch)
    assert responses[0] == {
        "id": 0,
        "result": {"data": [[1.0]]},
        "success": True,
        "external_reference": "ref0",
    }
    assert responses[1]["success"] is False and responses[1]["errors"] == [
        {"code": 5006, "message": "bad"}
    ]
    assert totals == {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5}
    view = store.view(batch, ME)
    assert view is not None and (view.status, view.done, view.failed) == ("done", 2, 1)


def test_a_result_write_that_fails_leaves_neither_result_nor_usage(
    store: QueueStore, tmp_path: Path
) -> None:
    batch = _queue(store, 1)
    (item,) = store.claim(MODEL, 1)
    store._db.execute(
        "CREATE TRIGGER boom BEFORE UPDATE ON queue_batches "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    with pytest.raises(sqlite3.IntegrityError):
        store.finish(item, Outcome(True, {"data": []}, prompt_tokens=3))
    assert UsageStore(tmp_path / "usage.db").report() == []
    assert store.items(batch)[0]["state"] == "running"


def test_items_left_running_by_a_dead_server_are_queued_again(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / "usage.db")
    batch = _queue(store, 3)
    store.finish(store.claim(MODEL, 1)[0], Outcome(True, {}))
    store.claim(MODEL, 5)  # running when the server "died"
    reopened = QueueStore(tmp_path / "usage.db")
    assert reopened.recover() == 2
    assert [i.index for i in reopened.claim(MODEL, 5)] == [
        1,
        2,
    ]  # the finished one is not run again
    assert [x["state"] for x in reopened.items(batch)] == ["ok", "running", "running"]


def test_the_oldest_batch_runs_first_and_preempted_items_return(store: QueueStore) -> None:
    first, second = _queue(store, 2), _queue(store, 2)
    items = store.claim(MODEL, 3)
    assert [(i.batch, i.index) for i in items] == [(first, 0), (first, 1), (second, 0)]
    store.release(items[0])
    store.release(items[1], lost=True)
    again = store.claim(MODEL, 5)
    assert [(i.batch, i.index, i.attempts) for i in again] == [
        (first, 0, 0),
        (first, 1, 1),
        (second, 1, 0),
    ]


def test_an_account_past_its_queued_items_limit_is_refused_whole(store: QueueStore) -> None:
    _queue(store, 3, limit=5)
    with pytest.raises(QueueFull):
        _queue(store, 3, limit=5)
    _queue(store, 3, Owner("acc2", "-", {"account": "acc2"}), limit=5)  # another account's own
    assert store.counts()["queued"] == 6


def test_finished_batches_expire_after_their_retention(store: QueueStore) -> None:
    batch = _queue(store, 1)
    unfinished = _queue(store, 1)
    store.finish(store.claim(MODEL, 1)[0], Outcome(True, {}))
    view = store.view(batch)
    assert view is not None and view.finished is not None
    assert store.expire(60, now=view.finished + 30) == 0
    assert store.expire(60, now=view.finished + 61) == 1
    assert store.view(batch) is None and store.items(batch) == []
    assert store.view(unfinished) is not None  # never expires before it finishes


def test_a_batch_with_an_invalid_item_is_refused_naming_it() -> None:
    items = [{"text": "ok"}, {"text": "ok", "external_reference": "x"}, {"text": ""}]
    with pytest.raises(InvalidInput, match=r"'/requests/2/text'"):
        parse_batch({"requests": items}, 10, parse_embeddings)
    with pytest.raises(InvalidInput, match=r"'/requests/1/external_reference'"):
        parse_batch(
            {"requests": [{"text": "a"}, {"text": "b", "external_reference": 7}]},
            10,
            parse_embeddings,
        )
    with pytest.raises(InvalidInput, match="1 to 2 items"):
        parse_batch({"requests": [{"text": "a"}] * 3}, 2, parse_embeddings)
    with pytest.raises(InvalidInput, match="'/extra'"):
        parse_batch({"requests": [{"text": "a"}], "extra": 1}, 2, parse_embeddings)
    parsed = parse_batch({"requests": items[:2]}, 10, parse_embeddings)
    assert [(p.inputs, p.external_reference) for p in parsed] == [
        ({"text": "ok"}, None),
        ({"text": "ok"}, "x"),
    ]


def test_a_poll_takes_a_request_id_only() -> None:
    assert is_poll({"request_id": "x"}) and not is_poll({"requests": []})
    rid = "907be418-f7e6-4b08-943a-b3368326c909"
    assert parse_poll({"request_id": rid.upper()}) == rid
    with pytest.raises(InvalidInput, match="not a request id"):
        parse_poll({"request_id": "../etc"})
    with pytest.raises(InvalidInput, match="only 'request_id'"):
        parse_poll({"request_id": rid, "text": "x"})


def test_interactive_load_keeps_its_recent_peak_for_the_window() -> None:
    now = [0.0]
    load = InteractiveLoad(window=5.0, clock=lambda: now[0])
    for _ in range(3):
        load.started("m")
    for _ in range(3):
        load.ended("m")
    assert load.recent("m") == 3  # the peak of the last 5 s: room for those clients' next turn
    now[0] = 5.5
    assert load.recent("m") == 0
    load.started("m")
    assert load.recent("m") == 1 and load.recent("other") == 0


def test_each_text_of_an_embedding_item_counts_against_the_batch_limit() -> None:
    parse_batch({"requests": [{"text": ["a", "b"]}, {"text": "c"}]}, 3, parse_embeddings)
    with pytest.raises(InvalidInput, match="4 texts in all"):
        parse_batch({"requests": [{"text": ["a", "b", "c"]}, {"text": "d"}]}, 3, parse_embeddings)
