"""auto_pull: the first request for an id whose curated GGUF is not in the cache starts its
download, in the background, and every request for it meanwhile answers 503/3043 with
Retry-After and the progress (WeightsDownloading). Concurrent requests share the one download.
Once the bytes are checked, the id is served by the file, as if it had been pulled before the
server started (added to the model table and the registry, lazy)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from wai import hub
from wai.errors import ModelUnavailable, WeightsDownloading

log = logging.getLogger("wai.pull")


@dataclass
class _Pull:
    hub_file: hub.HubFile
    task: asyncio.Task[None] | None = None
    done: int = 0
    total: int | None = None
    failure: str | None = None
    lines: list[str] = field(default_factory=list)

    def progress(self) -> str:
        if not self.total:
            return f"{hub.size_text(self.done)} so far"
        return f"{self.done * 100 // self.total}% of {hub.size_text(self.total)}"


class Pulls:
    def __init__(self, serve: Callable[[str, hub.HubFile, Path], Awaitable[None]]) -> None:
        """`serve(model_id, hub_file, path)`: make a pulled file answer its id."""
        self._serve = serve
        self._pulls: dict[str, _Pull] = {}

    def require(self, model_id: str, hub_file: hub.HubFile) -> None:
        """Raise WeightsDownloading (starting the download if none runs), or ModelUnavailable
        once for a download that failed (the next request tries again)."""
        pull = self._pulls.get(model_id)
        if pull is not None and pull.failure is not None:
            del self._pulls[model_id]
            raise ModelUnavailable(model_id, f"pulling its weights failed: {pull.failure}")
        if pull is None:
            pull = self._pulls[model_id] = _Pull(hub_file)
            pull.task = asyncio.create_task(self._run(model_id, pull), name=f"pull {model_id}")
        raise WeightsDownloading(model_id, pull.progress())

    async def _run(self, model_id: str, pull: _Pull) -> None:
        loop = asyncio.get_running_loop()

        def on_bytes(done: int, total: int | None) -> None:
            pull.done, pull.total = done, total  # plain assignments: read on the loop

        def say(line: str) -> None:
            log.info("%s: %s", model_id, line.strip())

        try:
            path = await asyncio.to_thread(hub.pull, pull.hub_file, say=say, on_bytes=on_bytes)
            await self._serve(model_id, pull.hub_file, path)
        except hub.PullError as e:
            log.warning("%s: pulling %s failed: %s", model_id, pull.hub_file.spec, e)
            pull.failure = str(e)
            return
        except Exception as e:  # the loop must not lose the reason
            log.exception("%s: pulling %s failed", model_id, pull.hub_file.spec)
            pull.failure = f"{type(e).__name__}: {e}"
            return
        log.info("%s: pulled %s; served by it from now", model_id, pull.hub_file.spec)
        loop.call_soon(self._pulls.pop, model_id, None)

    async def close(self) -> None:
        tasks = [p.task for p in self._pulls.values() if p.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
