"""The batch queue's durable state: batches and their items in SQLite, in the usage database.

One file for both so that an item's result and its usage row are written in one transaction:
after a crash an item is either done (result kept, usage counted once) or still to run (neither),
never half. WAL mode with `synchronous=NORMAL` keeps every committed transaction across a
SIGKILL of the server; an item that was running when the server died has no result committed
and is queued again at the next start (`recover`).

A batch is kept until `retention` seconds after its last item ended, then deleted with its
items. Ids are random UUIDs (122 random bits): unguessable, and a batch is read only by the
account and token that queued it.

Methods are blocking (SQLite): the queue calls them off the event loop.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wai.usage import open_db, record, spent_on

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS queue_batches (
        id TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        account TEXT NOT NULL,
        token TEXT NOT NULL,
        allocation TEXT NOT NULL,          -- whose daily neurons its items spend (JSON)
        created REAL NOT NULL,
        items INTEGER NOT NULL,
        done INTEGER NOT NULL DEFAULT 0,   -- items ended, successfully or not
        failed INTEGER NOT NULL DEFAULT 0,
        finished REAL                      -- when the last item ended
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS queue_items (
        batch TEXT NOT NULL REFERENCES queue_batches(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        inputs TEXT NOT NULL,              -- the item's inputs (JSON), as validated
        external_reference TEXT,
        state TEXT NOT NULL DEFAULT 'queued',  -- queued | running | done
        attempts INTEGER NOT NULL DEFAULT 0,   -- runs that ended with the engine lost
        success INTEGER,
        result TEXT,                       -- the model's output, or the error (JSON)
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (batch, idx)
    )
    """,
    "CREATE INDEX IF NOT EXISTS queue_items_todo ON queue_items(state, batch, idx)",
    "CREATE INDEX IF NOT EXISTS queue_batches_account ON queue_batches(account, created)",
)

QUEUED, RUNNING, DONE = "queued", "running", "done"


@dataclass(frozen=True, slots=True)
class Owner:
    """Who queued a batch: the account it counts under, the token's fingerprint ("-": none),
    and whose daily allocation its items spend (UsageStore.neurons_on's keywords)."""

    account: str
    token: str
    allocation: dict[str, str]


@dataclass(frozen=True, slots=True)
class Item:
    """One queued request, as the runner takes it."""

    batch: str
    index: int
    model: str
    inputs: dict[str, Any]
    owner: Owner
    attempts: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an item ended: its output, or its Workers AI error, and the tokens it used."""

    success: bool
    result: Any  # the model's output (an object; a classifier's: a list), or {"code", "message"}
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    audio_seconds: float = 0.0
    characters: int = 0


@dataclass(frozen=True, slots=True)
class BatchView:
    """A batch as its owner sees it."""

    id: str
    model: str
    account: str
    created: float
    items: int
    done: int
    failed: int
    running: int
    finished: float | None

    @property
    def status(self) -> str:
        if self.done == self.items:
            return DONE
        return RUNNING if self.running or self.done else QUEUED

    def summary(self) -> dict[str, Any]:
        return {
            "request_id": self.id,
            "model": self.model,
            "account": self.account,
            "status": self.status,
            "items": self.items,
            "done": self.done,
            "failed": self.failed,
            "created": self.created,
            "finished": self.finished,
        }


class QueueFull(Exception):
    """An account's queued items would pass its limit."""

    def __init__(self, queued: int, limit: int) -> None:
        super().__init__(f"{queued} items queued for this account; the limit is {limit}")
        self.queued = queued
        self.limit = limit


class QueueStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_db(path)
        self._db.execute("PRAGMA foreign_keys=ON")
        for statement in _SCHEMA:
            self._db.execute(statement)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- transactions ---------------------------------------------------------------------------

    def _write(self) -> _Transaction:
        return _Transaction(self._db, self._lock)

    # -- the API's side -------------------------------------------------------------------------

    def enqueue(
        self,
        model: str,
        owner: Owner,
        items: Sequence[tuple[dict[str, Any], str | None]],
        max_queued: int,
    ) -> str:
        """Queue a batch (its items' inputs and external references) in one transaction;
        raises QueueFull when the account would have more than `max_queued` items waiting
        or running."""
        batch = str(uuid.uuid4())
        with self._write() as db:
            (queued,) = db.execute(
                "SELECT COUNT(*) FROM queue_items i JOIN queue_batches b ON b.id = i.batch "
                "WHERE b.account = ? AND i.state != 'done'",
                (owner.account,),
            ).fetchone()
            if queued + len(items) > max_queued:
                raise QueueFull(queued, max_queued)
            db.execute(
                "INSERT INTO queue_batches (id, model, account, token, allocation, created, items)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (batch, model, owner.account, owner.token, json.dumps(owner.allocation),
                 time.time(), len(items)),
            )  # fmt: skip
            db.executemany(
                "INSERT INTO queue_items (batch, idx, inputs, external_reference) "
                "VALUES (?, ?, ?, ?)",
                [(batch, i, json.dumps(inp), ref) for i, (inp, ref) in enumerate(items)],
            )
        return batch

    def view(self, batch: str, owner: Owner | None = None) -> BatchView | None:
        """A batch, if it exists and (with `owner`) was queued by that account and token."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, model, account, token, created, items, done, failed, finished "
                "FROM queue_batches WHERE id = ?",
                (batch,),
            ).fetchone()
            if row is None:
                return None
            if owner is not None and (row[2], row[3]) != (owner.account, owner.token):
                return None
            (running,) = self._db.execute(
                "SELECT COUNT(*) FROM queue_items WHERE batch = ? AND state = 'running'", (batch,)
            ).fetchone()
        return BatchView(row[0], row[1], row[2], row[4], row[5], row[6], row[7], running, row[8])

    def responses(self, batch: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """A finished batch's responses in item order, and its usage totals."""
        with self._lock:
            rows = self._db.execute(
                "SELECT idx, success, result, external_reference, prompt_tokens, "
                "completion_tokens FROM queue_items WHERE batch = ? ORDER BY idx",
                (batch,),
            ).fetchall()
        responses = []
        prompt = completion = 0
        for idx, success, result, ref, p, c in rows:
            if success:
                response = {"id": idx, "result": json.loads(result), "success": True}
            else:
                response = {"id": idx, "result": None, "success": False}
                response["errors"] = [json.loads(result)]
            responses.append(response | {"external_reference": ref})
            prompt, completion = prompt + p, completion + c
        usage = {"prompt_tokens": prompt, "completion_tokens": completion}
        return responses, usage | {"total_tokens": prompt + completion}

    def items(self, batch: str) -> list[dict[str, Any]]:
        """A batch's items without their outputs (`wai queue ID`): state, tokens, error."""
        with self._lock:
            rows = self._db.execute(
                "SELECT idx, state, success, result, external_reference, attempts, "
                "prompt_tokens, completion_tokens FROM queue_items WHERE batch = ? ORDER BY idx",
                (batch,),
            ).fetchall()
        out = []
        for idx, state, success, result, ref, attempts, p, c in rows:
            error = json.loads(result).get("message") if state == DONE and not success else None
            if state == DONE:
                state = "ok" if success else "failed"
            out.append({"id": idx, "state": state, "external_reference": ref,
                        "prompt_tokens": p, "completion_tokens": c, "attempts": attempts,
                        "error": error})  # fmt: skip
        return out

    def batches(self, account: str | None = None, limit: int = 100) -> list[BatchView]:
        """The newest batches (of one account), for `wai queue`."""
        where, args = ("WHERE account = ?", [account]) if account is not None else ("", [])
        with self._lock:
            ids = self._db.execute(
                f"SELECT id FROM queue_batches {where} ORDER BY created DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [v for (bid,) in ids if (v := self.view(bid)) is not None]

    # -- the runner's side ----------------------------------------------------------------------

    def recover(self) -> int:
        """At start: items left running by a server that died go back to the queue (their
        results were never committed, nor their usage)."""
        with self._write() as db:
            return db.execute(
                "UPDATE queue_items SET state = 'queued' WHERE state = 'running'"
            ).rowcount

    def models_waiting(self) -> list[str]:
        """The model ids with queued items, the one with the oldest batch first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT b.model, MIN(b.created) FROM queue_items i "
                "JOIN queue_batches b ON b.id = i.batch WHERE i.state = 'queued' "
                "GROUP BY b.model ORDER BY 2"
            ).fetchall()
        return [model for model, _ in rows]

    def claim(self, model: str, n: int) -> list[Item]:
        """Up to n queued items of a model, oldest batch first, marked running."""
        with self._write() as db:
            rows = db.execute(
                "SELECT i.batch, i.idx, i.inputs, i.attempts, b.account, b.token, b.allocation "
                "FROM queue_items i JOIN queue_batches b ON b.id = i.batch "
                "WHERE i.state = 'queued' AND b.model = ? ORDER BY b.created, i.batch, i.idx "
                "LIMIT ?",
                (model, n),
            ).fetchall()
            db.executemany(
                "UPDATE queue_items SET state = 'running' WHERE batch = ? AND idx = ?",
                [(r[0], r[1]) for r in rows],
            )
        return [
            Item(b, idx, model, json.loads(inp), Owner(acc, tok, json.loads(alloc)), attempts)
            for b, idx, inp, attempts, acc, tok, alloc in rows
        ]

    def release(self, item: Item, lost: bool = False) -> None:
        """A running item back to the queue (preempted, or `lost` with its engine)."""
        with self._write() as db:
            db.execute(
                "UPDATE queue_items SET state = 'queued', attempts = attempts + ? "
                "WHERE batch = ? AND idx = ? AND state = 'running'",
                (int(lost), item.batch, item.index),
            )

    def finish(self, item: Item, outcome: Outcome) -> None:
        """An item's end: its result, its usage row and its batch's count, in one
        transaction. An item already done (it cannot be, but a result is never written
        twice) changes nothing."""
        with self._write() as db:
            changed = db.execute(
                "UPDATE queue_items SET state = 'done', success = ?, result = ?, "
                "prompt_tokens = ?, completion_tokens = ? "
                "WHERE batch = ? AND idx = ? AND state != 'done'",
                (int(outcome.success), json.dumps(outcome.result), outcome.prompt_tokens,
                 outcome.completion_tokens, item.batch, item.index),
            ).rowcount  # fmt: skip
            if not changed:
                return
            if outcome.success:
                o, who = outcome, item.owner
                record(db, who.account, who.token, item.model, o.prompt_tokens,
                       o.completion_tokens, o.cached_tokens,
                       audio_seconds=o.audio_seconds, characters=o.characters)  # fmt: skip
            db.execute(
                "UPDATE queue_batches SET done = done + 1, failed = failed + ?, "
                "finished = CASE WHEN done + 1 = items THEN ? ELSE finished END WHERE id = ?",
                (int(not outcome.success), time.time(), item.batch),
            )

    def spent(self, allocation: dict[str, str]) -> float:
        """Neurons spent today under an allocation key (see Owner)."""
        ((column, key),) = allocation.items()
        with self._lock:
            return spent_on(self._db, column, key)

    def expire(self, retention: float, now: float | None = None) -> int:
        """Delete the batches that finished more than `retention` seconds ago."""
        cutoff = (now if now is not None else time.time()) - retention
        with self._write() as db:
            return db.execute(
                "DELETE FROM queue_batches WHERE finished IS NOT NULL AND finished < ?", (cutoff,)
            ).rowcount

    def counts(self) -> dict[str, float]:
        """Items queued, running, finished and failed (kept now), and the age in seconds of
        the oldest queued one: what /metrics shows."""
        with self._lock:
            states = dict(
                self._db.execute(
                    "SELECT state || CASE WHEN state = 'done' AND NOT success THEN '-failed' "
                    "ELSE '' END, COUNT(*) FROM queue_items GROUP BY 1"
                ).fetchall()
            )
            (oldest,) = self._db.execute(
                "SELECT MIN(b.created) FROM queue_items i JOIN queue_batches b "
                "ON b.id = i.batch WHERE i.state = 'queued'"
            ).fetchone()
        return {
            "queued": states.get(QUEUED, 0),
            "running": states.get(RUNNING, 0),
            "finished": states.get(DONE, 0),
            "failed": states.get(f"{DONE}-failed", 0),
            "oldest_age": time.time() - oldest if oldest is not None else 0.0,
        }


class _Transaction:
    """`with store._write() as db:` one immediate transaction under the store's lock:
    committed at the end, rolled back on an exception."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db = db
        self._lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            self._db.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            self._lock.release()
