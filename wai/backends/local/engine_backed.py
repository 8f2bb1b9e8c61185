"""What every local model shares, whatever its task: an engine behind it (llama.cpp's
`TokenEngine`, or a speech engine; in its own supervised process, or on a thread), whose
lifecycle, counters and health it reports."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from wai.backends.base import Backend, EngineInfo, EngineStats
from wai.engines.llamacpp.types import TokenEngine


class LocalEngine(Protocol):
    """What a backend needs of any engine family's server side."""

    name: str

    async def start(self) -> None: ...

    def stats(self) -> EngineStats: ...

    @property
    def info(self) -> EngineInfo | None: ...

    def memory_bytes(self) -> int: ...

    @property
    def failure(self) -> str | None: ...

    async def close(self) -> None: ...


E = TypeVar("E", bound=LocalEngine)


class EngineBacked(Backend, Generic[E]):
    def __init__(self, engine: E, max_waiting: int = 64) -> None:
        self.engine = engine
        self.name = engine.name
        self._max_waiting = max_waiting

    async def start(self) -> None:
        await self.engine.start()

    @property
    def n_ctx_seq(self) -> int | None:
        return self.engine.n_ctx_seq if isinstance(self.engine, TokenEngine) else None

    def stats(self) -> EngineStats:
        return self.engine.stats()

    def report(self) -> EngineInfo | None:
        return self.engine.info

    def memory_bytes(self) -> int:
        return self.engine.memory_bytes()

    @property
    def failure(self) -> str | None:
        return self.engine.failure

    def unready(self) -> str | None:
        info = self.engine.info
        if info is not None and info.state != "up":
            return f"engine {info.state}"
        waiting = self.engine.stats().waiting
        if waiting >= self._max_waiting:
            return f"queue full ({waiting} waiting)"
        return None

    async def close(self) -> None:
        await self.engine.close()
