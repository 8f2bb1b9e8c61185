"""The replicas of one upstream model: their health, and which one takes the next request.

The least-outstanding healthy replica with room takes a request (ties in turn); a request with a
session (`x-session-affinity`) goes to its session's replica instead (`pinned`), waiting for
room there, so that the replica's prompt cache holds its conversation. A replica is
ejected when it cannot be reached, or after `EJECT_AFTER` failures in a row, and re-admitted
when an active health check (`GET {url}/models`, every `health_interval_s`) passes again. While
every healthy replica is full a request waits, up to `max_waiting` of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
from dataclasses import dataclass, field

import httpx

from wai.backends.base import EngineBusy, EngineStopped, ReplicaReport, UpstreamError
from wai.errors import MODEL_UNAVAILABLE
from wai.settings import Upstream

log = logging.getLogger("wai.upstream")

EJECT_AFTER = 2  # failures in a row (a refused connection ejects at once)
HEALTH_TIMEOUT = 5.0


@dataclass(slots=True)
class Replica:
    config: Upstream
    model: str
    label: str  # "replica 2": what clients and public endpoints see (never the URL)
    healthy: bool = True
    outstanding: int = 0
    failures: int = 0  # in a row
    requests: int = 0
    errors: int = 0
    ejections: int = 0
    last_error: str | None = None
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = self.config.url.rstrip("/")

    @property
    def has_room(self) -> bool:
        return self.healthy and self.outstanding < self.config.max_in_flight

    def headers(self) -> dict[str, str]:
        headers = {"accept-encoding": "identity"}  # an event stream is read as it comes
        if self.config.api_key:
            headers["authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def report(self, private: bool = False) -> ReplicaReport:
        """Its state; with `private`, its URL and model name too (for token holders only:
        they name hosts inside the deployment)."""
        return ReplicaReport(
            replica=self.label,
            healthy=self.healthy,
            outstanding=self.outstanding,
            max_in_flight=self.config.max_in_flight,
            requests=self.requests,
            errors=self.errors,
            ejections=self.ejections,
            last_error=self.last_error,
            url=self.url if private else None,
            model=self.model if private else None,
        )


def busy() -> EngineBusy:
    return EngineBusy("Capacity temporarily exceeded, please try again.")


class Pool:
    def __init__(self, name: str, upstreams: list[Upstream], max_waiting: int) -> None:
        if not upstreams:
            raise ValueError("an upstream model needs at least one upstream")
        self.name = name
        self.replicas = [
            Replica(u, u.model or name, f"replica {i + 1}") for i, u in enumerate(upstreams)
        ]
        self.max_waiting = max_waiting
        self.waiting = 0
        self.closed = False
        self._room = asyncio.Condition()
        self._rotate = itertools.count()

    # -- health --

    async def check_health(self, client: httpx.AsyncClient) -> None:
        await asyncio.gather(*(self._check(client, r) for r in self.replicas))

    async def _check(self, client: httpx.AsyncClient, replica: Replica) -> None:
        timeout = min(HEALTH_TIMEOUT, replica.config.connect_timeout_s + 1)
        try:
            r = await client.get(
                f"{replica.url}/models", headers=replica.headers(), timeout=timeout
            )
            ok, why = r.status_code == 200, f"health check: HTTP {r.status_code}"
        except httpx.HTTPError as e:
            ok, why = False, f"health check: {describe(e)}"
        if ok and not replica.healthy:
            replica.healthy, replica.failures = True, 0
            log.info("%s of %s (%s) is back", replica.label, self.name, replica.url)
            await self.notify()
        elif not ok:
            replica.last_error = why
            if replica.healthy:
                self._eject(replica, why)

    async def health_loop(self, client: httpx.AsyncClient, interval: float) -> None:
        while not self.closed:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await self.check_health(client)

    def _eject(self, replica: Replica, why: str) -> None:
        replica.healthy = False
        replica.ejections += 1
        log.warning("%s of %s (%s) ejected: %s", replica.label, self.name, replica.url, why)

    def note_failure(self, replica: Replica, why: str, eject_now: bool) -> None:
        replica.errors += 1
        replica.failures += 1
        replica.last_error = why
        if replica.healthy and (eject_now or replica.failures >= EJECT_AFTER):
            self._eject(replica, why)

    # -- routing --

    def pick(self, tried: set[int], session: str = "") -> Replica | None:
        """The healthy replica with room and the fewest requests in flight (ties in turn), or
        the session's own."""
        if session:
            return self.pinned(tried, session)
        start = next(self._rotate)
        n = len(self.replicas)
        best: Replica | None = None
        for k in range(n):
            i = (start + k) % n
            r = self.replicas[i]
            if i in tried or not r.has_room:
                continue
            if best is None or r.outstanding < best.outstanding:
                best = r
        return best

    def pinned(self, tried: set[int], session: str) -> Replica | None:
        """A session's replica: the first healthy one not yet tried in the session's own order
        of the replicas (rendezvous hashing: the same one while it is up, the next while it is
        not, the first again once it is back, and moving no other session when one comes or
        goes). None while it is full: the session waits for the replica with its cache."""
        order = sorted(
            range(len(self.replicas)),
            key=lambda i: hashlib.blake2b(
                f"{session} {self.replicas[i].url}".encode(), digest_size=8
            ).digest(),
        )
        for i in order:
            replica = self.replicas[i]
            if i not in tried and replica.healthy:
                return replica if replica.has_room else None
        return None

    def _untried_healthy(self, tried: set[int]) -> bool:
        return any(r.healthy for i, r in enumerate(self.replicas) if i not in tried)

    async def acquire(self, tried: set[int], reject_if_busy: bool, session: str = "") -> Replica:
        """A replica for one attempt, waiting for room while every healthy one is full (or,
        with a session, while its replica is)."""
        replica = self.pick(tried, session)
        if replica is None:
            if not self._untried_healthy(tried):
                raise UpstreamError(MODEL_UNAVAILABLE, self.down_message(), retry_after=1)
            if reject_if_busy or self.waiting >= self.max_waiting:
                raise busy()
            replica = await self._wait_for_room(tried, session)
        replica.outstanding += 1
        replica.requests += 1
        return replica

    async def _wait_for_room(self, tried: set[int], session: str) -> Replica:
        self.waiting += 1
        try:
            async with self._room:
                while (replica := self.pick(tried, session)) is None:
                    if self.closed:
                        raise EngineStopped(f"the model {self.name} is shutting down")
                    if not self._untried_healthy(tried):
                        raise UpstreamError(MODEL_UNAVAILABLE, self.down_message(), retry_after=1)
                    await self._room.wait()
                return replica
        finally:
            self.waiting -= 1

    async def release(self, replica: Replica) -> None:
        replica.outstanding -= 1
        await self.notify()

    async def notify(self) -> None:
        async with self._room:
            self._room.notify_all()

    def down_message(self) -> str:
        why = "; ".join(f"{r.label}: {r.last_error or 'down'}" for r in self.replicas)
        return f"no upstream of {self.name} is answering ({why})"

    def unready(self) -> str | None:
        if not any(r.healthy for r in self.replicas):
            return self.down_message()
        if self.waiting >= self.max_waiting:
            return f"queue full ({self.waiting} waiting)"
        return None


def describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
