"""Usage accounting: requests, tokens and neurons per UTC day, account, token and model, in
SQLite.

One row per (day, account, token, model), upserted once per finished generation in its own
transaction: concurrent requests never lose an increment (the server writes from one thread,
and an upsert is atomic), and a SIGKILL loses at most the requests still in flight (a committed
transaction is in the write-ahead log). WAL mode lets `wai usage` read while the server writes.

Neurons are Cloudflare's unit: prompt and completion tokens at the model's published rates
(neurons per million tokens, spec §7.2). Ids without a published rate use llama-2-7b-chat-fp16's,
the dearest in the table. Days end at 00:00 UTC, when Workers AI's free allocation resets.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

# neurons per million tokens: (prompt, completion)
RATES: dict[str, tuple[float, float]] = {
    "@cf/meta/llama-2-7b-chat-fp16": (50_505, 606_061),
    "@cf/meta/llama-3.1-8b-instruct": (25_608, 75_147),
    "@cf/mistral/mistral-7b-instruct-v0.1": (10_000, 17_300),
    "@cf/meta/llama-3.3-70b-instruct-fp8-fast": (26_668, 204_805),
    # Text Embeddings: input tokens only (the pricing page)
    "@cf/baai/bge-small-en-v1.5": (1_841, 0),
    "@cf/baai/bge-base-en-v1.5": (6_058, 0),
    "@cf/baai/bge-large-en-v1.5": (18_582, 0),
    "@cf/baai/bge-m3": (1_075, 0),
    "@cf/qwen/qwen3-embedding-0.6b": (1_075, 0),
    "@cf/pfnet/plamo-embedding-1b": (1_689, 0),
    # no published rate confirmed here: counted as the BERT model of the same size
    "@cf/google/embeddinggemma-300m": (6_058, 0),
    "@cf/baai/bge-reranker-base": (6_058, 0),
    # text-to-text: translation priced on input and output tokens ($0.342 per M each),
    # sentiment on input tokens ($0.026 per M)
    "@cf/meta/m2m100-1.2b": (31_050, 31_050),
    "@cf/ai4bharat/indictrans2-en-indic-1B": (31_050, 31_050),
    "@cf/huggingface/distilbert-sst-2-int8": (2_394, 0),
    # no published rate: counted as the other encoder-decoder's
    "@cf/facebook/bart-large-cnn": (31_050, 31_050),
}
DEFAULT_RATE = RATES["@cf/meta/llama-2-7b-chat-fp16"]
# neurons per audio minute (speech recognition is priced by the audio, not by tokens)
AUDIO_RATES: dict[str, float] = {
    "@cf/openai/whisper": 41.14,
    "@cf/openai/whisper-large-v3-turbo": 46.63,
    "@cf/openai/whisper-tiny-en": 0.0,  # a beta: no published price
    "@cf/deepgram/nova-3": 472.73,  # $0.0052 an audio minute
    "@cf/myshell-ai/melotts": 18.63,  # text-to-speech: per minute of audio spoken
    # turn detection: $0.00033795 an audio minute (the pricing page's "0.51 neurons per
    # minute" matches that price per second, not per minute)
    "@cf/pipecat-ai/smart-turn-v2": 30.72,
}
# neurons per 1,000 characters spoken (Deepgram's voices; aura-2's derived from $0.03)
CHARACTER_RATES: dict[str, float] = {
    "@cf/deepgram/aura-1": 1363.64,
    "@cf/deepgram/aura-2-en": 2727.27,
    "@cf/deepgram/aura-2-es": 2727.27,
}

By = Literal["model", "day", "account"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    day TEXT NOT NULL,
    account TEXT NOT NULL,
    token TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    neurons REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (day, account, token, model)
)
"""
_ADD = """
INSERT INTO usage VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?)
ON CONFLICT (day, account, token, model) DO UPDATE SET
    requests = requests + 1,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    cached_tokens = cached_tokens + excluded.cached_tokens,
    neurons = neurons + excluded.neurons
"""


def neurons(
    model_id: str,
    prompt_tokens: int,
    completion_tokens: int,
    audio_seconds: float = 0.0,
    characters: int = 0,
) -> float:
    if characters and model_id in CHARACTER_RATES:
        return characters / 1000 * CHARACTER_RATES[model_id]
    if audio_seconds:
        rate = AUDIO_RATES.get(model_id, AUDIO_RATES["@cf/openai/whisper-large-v3-turbo"])
        return audio_seconds / 60 * rate
    rate_in, rate_out = RATES.get(model_id, DEFAULT_RATE)
    return (prompt_tokens * rate_in + completion_tokens * rate_out) / 1e6


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def open_db(path: Path) -> sqlite3.Connection:
    """The usage database (the batch queue's tables live in it too), in WAL mode, autocommit:
    a transaction is an explicit BEGIN ... COMMIT."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash
    db.execute("PRAGMA busy_timeout=5000")
    db.execute(_SCHEMA)
    return db


def record(
    db: sqlite3.Connection,
    account: str,
    token: str,
    model_id: str,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int = 0,
    day: str | None = None,
    audio_seconds: float = 0.0,
    characters: int = 0,
) -> None:
    """Count one request, in the caller's transaction if one is open (the batch queue counts
    an item in the transaction that stores its result: never one without the other)."""
    spent = neurons(model_id, prompt_tokens, completion_tokens, audio_seconds, characters)
    row = (day or today(), account, token, model_id, prompt_tokens, completion_tokens)
    db.execute(_ADD, (*row, cached_tokens, spent))


def spent_on(db: sqlite3.Connection, column: str, key: str, day: str | None = None) -> float:
    """Neurons spent on a UTC day where `column` (account or token) is `key`."""
    assert column in ("account", "token")
    (total,) = db.execute(
        f"SELECT COALESCE(SUM(neurons), 0) FROM usage WHERE day = ? AND {column} = ?",
        (day or today(), key),
    ).fetchone()
    return float(total)


class UsageStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_db(path)
        self._lock = threading.Lock()

    def add(
        self,
        account: str,
        token: str,
        model_id: str,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        day: str | None = None,
        audio_seconds: float = 0.0,
        characters: int = 0,
    ) -> None:
        with self._lock:
            record(self._db, account, token, model_id, prompt_tokens, completion_tokens,
                   cached_tokens, day, audio_seconds, characters)  # fmt: skip

    def neurons_on(
        self, account: str | None = None, *, token: str | None = None, day: str | None = None
    ) -> float:
        """Neurons spent on a UTC day by an account, or by one token (its fingerprint),
        whatever accounts it named."""
        column, key = ("token", token) if token is not None else ("account", account or "")
        with self._lock:
            return spent_on(self._db, column, key, day)

    def report(
        self, since: date | None = None, account: str | None = None, by: By = "model"
    ) -> list[dict[str, Any]]:
        """Totals grouped by model, day or account (and always by account when grouped by
        model or day), oldest day and largest first."""
        keys = {"model": "account, model", "day": "account, day", "account": "account"}[by]
        where, args = [], []
        if since is not None:
            where.append("day >= ?")
            args.append(since.isoformat())
        if account is not None:
            where.append("account = ?")
            args.append(account)
        sql = (
            f"SELECT {keys}, SUM(requests), SUM(prompt_tokens), SUM(completion_tokens), "
            f"SUM(cached_tokens), SUM(neurons) FROM usage "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} GROUP BY {keys} ORDER BY {keys}"
        )
        names = [*keys.split(", "), "requests", "prompt_tokens", "completion_tokens"]
        names += ["cached_tokens", "neurons"]
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        out = [dict(zip(names, row, strict=True)) for row in rows]
        for r in out:
            r["neurons"] = round(r["neurons"], 3)
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()
