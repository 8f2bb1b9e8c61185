"""llama.cpp in its own supervised process (`engine.isolation: process`, the default).

The shared machinery (engines/process/supervisor.py) starts the engine process (worker.py),
restarts it after a crash (stepping down the warm-up probe's safer plans, see params.fallbacks)
and ends the requests a dead engine held with `Failed(crashed=True)` (a stream gets an error
event, then [DONE]); if even the safest plan crashes, the model is marked failed with the reason
and its ids answer 503 (3043). This class is what is llama.cpp's about it: token requests and
cancels down the pipe, one frame per engine step back (wire.py).

Tokenizing and chat templates stay in the server, on a vocabulary-only load of the same GGUF
(no weights, no compute: nothing that runs a kernel); the engine detokenizes and applies stop
strings, since they decide when a sequence ends and frees its slot.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from wai.engines.llamacpp import wire
from wai.engines.llamacpp.admission import Admission, prompt_size
from wai.engines.llamacpp.config import LlamaCppConfig
from wai.engines.llamacpp.gguf import LlamaTokenizer, load_tokenizer
from wai.engines.llamacpp.types import (
    EmbedRequest,
    EngineInfo,
    EngineStats,
    Finished,
    Generation,
    TokenEngine,
    TokenEvent,
    TokenRequest,
    Usage,
)
from wai.engines.process.supervisor import RestartPolicy as RestartPolicy
from wai.engines.process.supervisor import Supervisor


class ProcessEngine(Supervisor[wire.FromEngine], TokenEngine):
    tokenizer: LlamaTokenizer
    worker_module = "wai.engines.llamacpp.worker"

    def __init__(self, config: LlamaCppConfig, policy: RestartPolicy | None = None) -> None:
        super().__init__(config.name, wire.from_engine, policy)
        self.config = config
        self.n_ctx_seq = config.n_ctx_seq
        self.chat_template: str | None = None
        self.metadata: dict[str, str] = {}
        self._info: EngineInfo | None = None
        self.kv_bytes = 0
        self.weights_bytes = 0
        # decode call times each plan's first process measured (by plans skipped), for a
        # restart to start with instead of measuring again (LlamaCppEngine.step_costs)
        self._step_costs: dict[int, dict[int, float]] = {}
        self._admission = Admission(config.name, config.n_slots, config.max_waiting)

    @property
    def info(self) -> EngineInfo | None:
        if self._info is None:
            return None
        return dataclasses.replace(
            self._info,
            isolation="process",
            state=self.state(),
            pid=self.pid,
            restarts=self.restarts,
        )

    @property
    def step_costs(self) -> dict[int, float]:
        """Decode call times by rows the running plan's engine started with (empty: none)."""
        return dict(self._step_costs.get(self.policy.skip_plans, {}))

    # -- the supervisor's hooks --

    async def start(self) -> None:
        """Load the vocabulary here and the model in a new engine process; returns once it
        has warmed up (see Supervisor.start)."""
        self.tokenizer = await asyncio.to_thread(load_tokenizer, self.config.path)
        await super().start()

    def _spec(self, skip_plans: int) -> dict[str, Any]:
        return {
            "config": self.config.as_dict(),
            "skip_plans": skip_plans,
            "step_costs": self._step_costs.get(skip_plans, {}),
        }

    def _ready(self, msg: wire.FromEngine) -> bool:
        if not isinstance(msg, wire.Ready):
            return False
        self.n_ctx_seq = msg.n_ctx_seq
        self.chat_template = msg.chat_template
        self.metadata = msg.metadata
        self._info = msg.info
        self.kv_bytes = msg.kv_bytes
        self.weights_bytes = msg.weights_bytes
        if msg.step_costs:
            self._step_costs[self.policy.skip_plans] = msg.step_costs
        return True

    def _deliver(self, msg: wire.FromEngine) -> None:
        if isinstance(msg, wire.Step):
            self._admission.deliver(map(wire.msg_event, msg.events), msg.counters)

    def _held(self) -> list[int]:
        return self._admission.open_ids()

    def _lose(self, request_ids: list[int], message: str) -> None:
        self._admission.lose(request_ids, message)

    def _closed(self) -> None:
        self._admission.closed = True

    # -- requests --

    def submit(self, request: TokenRequest | EmbedRequest) -> Generation[TokenEvent]:
        rid = self._admission.open(request, self.n_ctx_seq)
        self._send(rid, wire.submit(request))
        n_prompt = prompt_size(request)
        return self._admission.generation(rid, lambda: self._cancel(rid, n_prompt))

    def _cancel(self, rid: int, n_prompt: int) -> None:
        if self._backlog.pop(rid, None) is not None:  # never reached an engine
            self._admission.deliver([(rid, Finished("cancelled", Usage(n_prompt, 0)))], None)
        elif (child := self._ready_child()) is not None:
            child.send(wire.frame(wire.Cancel(rid)))

    def stats(self) -> EngineStats:
        return self._admission.stats(self.kv_bytes, self.restarts)

    def memory_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes
