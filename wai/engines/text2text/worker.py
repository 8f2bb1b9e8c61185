"""A text-to-text engine process: `python -m wai.engines.text2text.worker SPEC` runs one model
for the server, supervised by engine.py through the shared machinery (engines/process/).

One batcher thread takes the jobs waiting, cuts each into units (models.py), and decodes the
units of all of them together, `max_batch` at a time: concurrent requests share CTranslate2's
batched beam search instead of queuing behind each other. A reader thread takes the server's
frames; a cancelled job is dropped before its batch runs. When the server goes away, the reader
sees end-of-file and the process exits after the batch in hand."""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import msgspec

from wai.engines.process.child import EXIT_LOAD_FAILED
from wai.engines.process.frames import Fatal, Sender, read_jobs, start_child
from wai.engines.text2text import wire
from wai.engines.text2text.models import Model, Unit, load
from wai.engines.text2text.types import Text2TextConfig, Text2TextFailed

log = logging.getLogger("wai.engines")

# How long the batcher waits for the requests it expects before it starts a batch: the clients
# of the last batch send their next ones as its answers arrive. A batch costs 0.1-2 s, so this
# costs about 1 % at most, and nothing to a lone client (it expects no one else).
GATHER_SECONDS = 0.02


class WorkerSpec(msgspec.Struct):
    config: Text2TextConfig
    fd_in: int
    fd_out: int
    skip_plans: int = 0
    log_level: int = logging.INFO


class _Inbox:
    """The jobs sent and the cancels, as the reader thread hands them over."""

    def __init__(self, out: Sender) -> None:
        self.jobs: queue.Queue[wire.Run | None] = queue.Queue()
        self.cancelled: set[int] = set()
        self.out = out

    def read(self, fd: int) -> None:
        """Reader thread: the server's frames until Stop or end-of-file, then the end
        marker."""
        read_jobs(fd, wire.to_engine, wire.Run, self.jobs, self.cancelled)

    def take(self, most: int, expect: int) -> tuple[list[wire.Run], bool]:
        """The next jobs: one (waiting for it), then every job already waiting, up to `most`;
        and while fewer than `expect` (the last batch's size: clients whose answers just went
        out are sending their next request) are here, up to GATHER_SECONDS more for them. And
        whether the end marker came."""
        first = self.jobs.get()
        if first is None:
            return [], True
        runs = [first]
        deadline = time.monotonic() + GATHER_SECONDS
        while len(runs) < most:
            wait = deadline - time.monotonic() if len(runs) < expect else 0.0
            try:
                nxt = self.jobs.get(timeout=wait) if wait > 0 else self.jobs.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                return runs, True
            runs.append(nxt)
        return runs, False


def _cut(model: Model, inbox: _Inbox, runs: list[wire.Run]) -> dict[int, list[Unit]]:
    """Each job's units; a job that is cancelled, or that its model refuses, fails here."""
    cut: dict[int, list[Unit]] = {}
    for run in runs:
        try:
            if run.rid in inbox.cancelled:
                raise Text2TextFailed("error", "cancelled")
            cut[run.rid] = model.units(run.job)
        except Text2TextFailed as e:
            inbox.out.send(wire.Failure(run.rid, e.kind, e.message))
        except Exception as e:  # the tokenizer's own failure: this job's
            log.exception("text job %d failed", run.rid)
            inbox.out.send(wire.Failure(run.rid, "error", f"the model failed: {e}"))
    return cut


def _decode(
    model: Model, cut: dict[int, list[Unit]], max_batch: int, cancelled: set[int]
) -> dict[int, list[Any]]:
    """Every unit's output: units of equal decoding options in shared calls of at most
    `max_batch`. A job cancelled meanwhile loses its units not yet decoded (a long text stops
    within one call of its client going away)."""
    groups: dict[Hashable, list[tuple[int, int]]] = {}
    for rid, units in cut.items():
        for i, u in enumerate(units):
            groups.setdefault(u.key, []).append((rid, i))
    outputs: dict[int, list[Any]] = {rid: [None] * len(units) for rid, units in cut.items()}
    for key, members in groups.items():
        while members:
            members = [(rid, i) for rid, i in members if rid not in cancelled]
            batch, members = members[:max_batch], members[max_batch:]
            if not batch:
                break
            results = model.run(key, [cut[rid][i] for rid, i in batch])
            for (rid, i), out in zip(batch, results, strict=True):
                outputs[rid][i] = out
    return outputs


def _serve(model: Model, inbox: _Inbox, max_batch: int) -> None:
    """The batcher: jobs waiting, cut, decoded together, answered; until the end marker."""
    ended, last = False, 1
    while not ended:
        runs, ended = inbox.take(max_batch, last)
        if not runs:
            break
        last = len(runs)
        inbox.out.send(wire.Counts(len(runs), inbox.jobs.qsize()))
        start = time.perf_counter()
        cut = _cut(model, inbox, runs)
        try:
            outputs = _decode(model, cut, max_batch, inbox.cancelled)
        except Exception as e:  # CTranslate2's own failure: this batch's jobs
            log.exception("a batch of %d jobs failed", len(cut))
            for rid in cut:
                inbox.out.send(wire.Failure(rid, "error", f"the model failed: {e}"))
            continue
        share = (time.perf_counter() - start) / max(1, len(cut))
        for run in runs:
            if run.rid in inbox.cancelled and run.rid in cut:
                inbox.out.send(wire.Failure(run.rid, "error", "cancelled"))
            elif run.rid in cut:
                result = model.result(run.job, cut[run.rid], outputs[run.rid])
                inbox.out.send(wire.Done(run.rid, result, share))
            inbox.cancelled.discard(run.rid)
        inbox.out.send(wire.Counts(0, inbox.jobs.qsize()))


def main(argv: list[str]) -> int:
    spec = msgspec.json.decode(argv[1], type=WorkerSpec)
    config = spec.config
    start_child(spec.log_level, config.name)
    out = Sender(spec.fd_out)
    try:
        model = load(config)
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        out.send(Fatal(f"the model {Path(config.path).name} cannot be loaded: {e}"))
        return EXIT_LOAD_FAILED
    inbox = _Inbox(out)
    out.send(model.ready())
    threading.Thread(target=inbox.read, args=(spec.fd_in,), daemon=True).start()
    _serve(model, inbox, max(1, config.max_batch))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
