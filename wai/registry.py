"""The models and their lifecycle: loaded on first use, under a memory budget.

Each configured model is an entry: unloaded, loading, loaded or failed. A local model's backend
loads its weights; an upstream model's only starts its health checks (it holds no memory here,
and is started at boot). A request leases
its model (`acquire` ... `release`, tied to its Generation), which loads it if needed: at most
one load per model at a time (concurrent first requests wait for the same load), and one load
decision at a time across models, so two loads never both count on the same free memory.

`memory_budget` counts each loaded model's weights file and KV cache (the engine reports both;
before a first load they are estimated from the file and its metadata). When a load would
exceed it, loaded models with no lease are unloaded, least recently used first. A model with
requests in flight is never unloaded under them. If room cannot be made in `load_wait_seconds`
(every other model is busy), the request gets EngineBusy (429/3040, Retry-After). With
`idle_unload_seconds`, lazy models unused that long are unloaded in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from wai.backends.base import Backend, EngineBusy, ModelLoadError
from wai.settings import ModelConfig

log = logging.getLogger("wai.registry")

State = Literal["unloaded", "loading", "loaded", "failed"]


@dataclass(frozen=True, slots=True)
class ModelReport:
    """One model's state in the registry (`/wai/v1/stats`, metrics, readiness)."""

    state: State
    load: Literal["eager", "lazy"]
    bytes: int
    leases: int
    loads: int
    unloads: int
    load_failures: int
    last_load_seconds: float
    idle_seconds: float | None
    failure: str | None


@dataclass(frozen=True, slots=True)
class RegistryReport:
    memory_budget_bytes: int | None
    memory_used_bytes: int
    models: dict[str, ModelReport]


@dataclass(slots=True)
class Entry:
    name: str
    config: ModelConfig
    eager: bool
    estimate: int  # bytes expected before the first load; the measured size after it
    state: State = "unloaded"
    backend: Backend | None = None
    failure: str | None = None
    leases: int = 0
    loads: int = 0
    unloads: int = 0
    load_failures: int = 0
    load_seconds: float = 0.0  # of the last load
    last_used: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Registry:
    def __init__(
        self,
        models: dict[str, tuple[ModelConfig, bool, int]],
        make: Callable[[str, ModelConfig], Backend],
        *,
        budget: int | None = None,
        idle_unload_seconds: float = 0.0,
        load_wait_seconds: float = 30.0,
        measure: Callable[[Backend], int] = lambda b: 0,
    ) -> None:
        """`models`: name -> (its settings, load eagerly?, estimated bytes); `make` builds an
        unstarted backend; `measure` gives a loaded backend's bytes."""
        self.entries = {
            name: Entry(name, config, eager, est) for name, (config, eager, est) in models.items()
        }
        self._make = make
        self._tasks: set[asyncio.Task[None]] = set()
        self._measure = measure
        self.budget = budget
        self.idle_unload_seconds = idle_unload_seconds
        self.load_wait_seconds = load_wait_seconds
        self._room = asyncio.Condition()  # notified when a lease ends or a model unloads
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle --

    async def start(self) -> None:
        """Load the eager models (a failure is recorded, not raised), start the idle reaper."""
        for entry in self.entries.values():
            if entry.eager:
                with contextlib.suppress(ModelLoadError, EngineBusy):
                    await self._ensure_loaded(entry)
        if self.idle_unload_seconds > 0:
            self._reaper = asyncio.create_task(self._reap(), name="registry-reaper")

    async def close(self) -> None:
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for entry in self.entries.values():
            if entry.backend is not None:
                await entry.backend.close()
                entry.backend = None
                entry.state = "unloaded"

    def add(self, name: str, config: ModelConfig, estimate: int) -> None:
        """A model that appeared while running (a pulled file): lazy, unloaded."""
        if name not in self.entries:
            self.entries[name] = Entry(name, config, False, estimate)

    # -- leases --

    def loaded(self) -> dict[str, Backend]:
        return {
            e.name: e.backend
            for e in self.entries.values()
            if e.state == "loaded" and e.backend is not None
        }

    async def acquire(self, name: str) -> Backend:
        """The model's backend, loaded if need be, with a lease the caller must `release`.
        Raises ModelLoadError (it cannot load; also for every later request) or EngineBusy."""
        entry = self.entries[name]
        if entry.state != "loaded":
            await self._ensure_loaded(entry)
        assert entry.backend is not None
        entry.leases += 1
        entry.last_used = time.monotonic()
        return entry.backend

    def release(self, name: str) -> None:
        entry = self.entries[name]
        entry.leases -= 1
        entry.last_used = time.monotonic()
        if entry.leases == 0:
            task = asyncio.get_running_loop().create_task(self._notify())
            self._tasks.add(task)  # kept until done: a task only the loop refers to may vanish
            task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        async with self._room:
            self._room.notify_all()

    # -- loading and unloading --

    def used(self) -> int:
        return sum(e.estimate for e in self.entries.values() if e.state in ("loaded", "loading"))

    async def _ensure_loaded(self, entry: Entry) -> None:
        async with entry.lock:  # one load per model: later requests find it loaded
            if entry.state == "loaded":
                return
            if entry.state == "failed":
                raise ModelLoadError(entry.failure or "failed to load")
            await self._make_room(entry)  # "loading", counted against the budget, from here
            t0 = time.monotonic()
            backend: Backend | None = None
            try:
                backend = self._make(entry.name, entry.config)
                await backend.start()
            except BaseException as e:  # whatever ends the load, the entry ends known
                await self._load_ended(entry, backend, e)
                if isinstance(e, ModelLoadError | asyncio.CancelledError):
                    raise
                raise ModelLoadError(f"{entry.name} failed to load: {e!r}") from e
            self._loaded(entry, backend, t0)

    async def _load_ended(self, entry: Entry, backend: Backend | None, e: BaseException) -> None:
        """A load that did not finish: its backend closed (an engine process included), the
        budget released; cancelled, the model is unloaded and the next request loads it again;
        failed, the failure is recorded and answered from then on."""
        if backend is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(backend.close())
        if isinstance(e, asyncio.CancelledError):
            entry.state = "unloaded"
            log.warning("model %s: load cancelled", entry.name)
        else:
            entry.state, entry.failure = "failed", str(e) or repr(e)
            entry.load_failures += 1
            unexpected = None if isinstance(e, ModelLoadError) else e  # a bug: its traceback
            log.error("model %s refused: %s", entry.name, e, exc_info=unexpected)
        await self._notify()

    def _loaded(self, entry: Entry, backend: Backend, t0: float) -> None:
        entry.backend = backend
        entry.state = "loaded"
        entry.loads += 1
        entry.load_seconds = time.monotonic() - t0
        entry.estimate = self._measure(backend) or entry.estimate
        entry.last_used = time.monotonic()
        log.info(
            "model %s loaded in %.1f s (%.0f MiB; %.0f of %s MiB in use)",
            entry.name,
            entry.load_seconds,
            entry.estimate / 2**20,
            self.used() / 2**20,
            f"{self.budget / 2**20:.0f}" if self.budget else "unlimited",
        )

    async def _make_room(self, entry: Entry) -> None:
        """Unload idle models, least recently used first, until `entry` fits the budget;
        wait for leases to end if that is not enough; EngineBusy after load_wait_seconds."""
        if self.budget is None:
            entry.state = "loading"
            return
        deadline = time.monotonic() + self.load_wait_seconds
        async with self._room:
            while self.used() + entry.estimate > self.budget:
                idle = sorted(
                    (
                        e
                        for e in self.entries.values()
                        if e.state == "loaded" and e.leases == 0 and e is not entry
                    ),
                    key=lambda e: e.last_used,
                )
                if idle:
                    await self._unload(idle[0], "to make room for " + entry.name)
                    continue
                if not any(e.state in ("loaded", "loading") for e in self.entries.values()):
                    break  # nothing else is loaded: it may still fit the machine; try
                left = deadline - time.monotonic()
                if left <= 0:
                    raise EngineBusy(
                        f"Capacity temporarily exceeded: {entry.name} does not fit the memory "
                        "budget while other models are busy, please try again."
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), left)
            entry.state = "loading"  # counted from here: a concurrent load sees it

    async def _unload(self, entry: Entry, why: str) -> None:
        backend, entry.backend = entry.backend, None
        entry.state = "unloaded"
        entry.unloads += 1
        log.info("model %s unloaded (%s)", entry.name, why)
        if backend is not None:
            await backend.close()

    async def _reap(self) -> None:
        period = max(0.2, min(5.0, self.idle_unload_seconds / 4))
        while not self._closed:
            await asyncio.sleep(period)
            now = time.monotonic()
            for entry in list(self.entries.values()):
                if (
                    not entry.eager
                    and entry.state == "loaded"
                    and entry.leases == 0
                    and now - entry.last_used >= self.idle_unload_seconds
                    and not entry.lock.locked()
                ):
                    async with entry.lock:
                        if entry.state == "loaded" and entry.leases == 0:
                            await self._unload(entry, "idle")
                    await self._notify()

    # -- reporting --

    def failures(self) -> dict[str, str]:
        return {e.name: e.failure or "" for e in self.entries.values() if e.state == "failed"}

    def report(self) -> RegistryReport:
        now = time.monotonic()
        return RegistryReport(
            memory_budget_bytes=self.budget,
            memory_used_bytes=self.used(),
            models={
                e.name: ModelReport(
                    state=e.state,
                    load="eager" if e.eager else "lazy",
                    bytes=e.estimate,
                    leases=e.leases,
                    loads=e.loads,
                    unloads=e.unloads,
                    load_failures=e.load_failures,
                    last_load_seconds=round(e.load_seconds, 3),
                    idle_seconds=round(now - e.last_used, 1) if e.last_used else None,
                    failure=e.failure,
                )
                for e in self.entries.values()
            },
        )
