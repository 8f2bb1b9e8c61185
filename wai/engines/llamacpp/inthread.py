"""llama.cpp on a thread of the calling process (`engine.isolation: thread`).

The engine's step loop runs on one thread of the server; its per-step event batches reach the
event loop through `call_soon_threadsafe`. Cheaper to start than an engine process and with no
channel in between, but a native crash in llama.cpp takes the whole process with it: the
default is the engine process (process.py). Tests and benchmarks use this one to look at the
engine alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading

from wai.engines.llamacpp.admission import Admission
from wai.engines.llamacpp.config import LlamaCppConfig
from wai.engines.llamacpp.gguf import LlamaTokenizer
from wai.engines.llamacpp.llamacpp import StepLoop, step_loop
from wai.engines.llamacpp.types import (
    Counters,
    EmbedRequest,
    EngineInfo,
    EngineStats,
    EngineStopped,
    Generation,
    ModelLoadError,
    TokenEngine,
    TokenEvent,
    TokenRequest,
)


class InThreadEngine(TokenEngine):
    tokenizer: LlamaTokenizer

    def __init__(self, config: LlamaCppConfig) -> None:
        self.config = config
        self.name = config.name
        self.n_ctx_seq = config.n_ctx_seq
        self._info: EngineInfo | None = None
        self._admission = Admission(config.name, config.n_slots, config.max_waiting)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.engine: StepLoop | None = None

    async def start(self) -> None:
        """Load the model (on a worker thread) and start the engine thread; returns once its
        warm-up decode has passed. Raises ModelLoadError (the thread then ends) if it failed."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        engine = await asyncio.to_thread(step_loop, self.config, self._sink)
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.n_ctx_seq = engine.n_ctx_seq
        self.chat_template = engine.chat_template
        self.metadata = engine.metadata
        self._info = engine.info
        warmed: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=engine.run, args=(warmed.put,), name=f"engine-{self.name}", daemon=True
        )
        self._thread.start()
        rc = await asyncio.to_thread(warmed.get)
        if rc != 0:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
            raise ModelLoadError(f"the warm-up decode of {self.config.path} failed (rc={rc})")

    @property
    def info(self) -> EngineInfo | None:
        return self._info

    def _sink(
        self, events: list[tuple[int, TokenEvent]], counters: Counters
    ) -> None:  # engine thread
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
                self._loop.call_soon_threadsafe(self._admission.deliver, events, counters)

    def submit(self, request: TokenRequest | EmbedRequest) -> Generation[TokenEvent]:
        engine = self.engine
        if engine is None:
            raise EngineStopped(f"the model {self.name} is not started")
        rid = self._admission.open(request, self.n_ctx_seq)
        engine.submit(request)
        return self._admission.generation(rid, lambda: engine.cancel(rid))

    def stats(self) -> EngineStats:
        return self._admission.stats(self.engine.kv_bytes if self.engine else 0)

    def memory_bytes(self) -> int:
        return self.engine.weights_bytes + self.engine.kv_bytes if self.engine else 0

    async def close(self) -> None:
        self._admission.closed = True  # from here on submit raises EngineStopped
        if self.engine is None:
            return
        if self._thread is not None:
            self.engine.stop()
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self.engine.free()
