"""What every engine reports, whatever its family: how it runs (`EngineInfo`, /healthz's
`runs`) and its counters (`EngineStats`, /metrics and /wai/v1/stats)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class PromptCacheStats:
    """Requests that reused prompt KV, by where it was: their own slot, a copy of another
    slot's, the RAM cache; requests that reused none; what the RAM cache holds."""

    hits_slot: int = 0
    hits_copy: int = 0
    hits_ram: int = 0
    misses: int = 0
    bytes: int = 0
    entries: int = 0

    def after(self, past: PromptCacheStats) -> PromptCacheStats:
        """These figures on top of a dead engine's: its counts added, what RAM holds now."""
        return dataclasses.replace(
            self,
            hits_slot=past.hits_slot + self.hits_slot,
            hits_copy=past.hits_copy + self.hits_copy,
            hits_ram=past.hits_ram + self.hits_ram,
            misses=past.misses + self.misses,
        )


@dataclass(frozen=True, slots=True)
class EngineStats:
    """Counters the server exposes; tests read them to prove slots are freed."""

    slots_total: int
    slots_busy: int
    waiting: int
    requests_finished: int
    requests_cancelled: int
    requests_failed: int = 0  # llama_decode errors, engine stopped or crashed under them
    tokens_generated: int = 0
    kv_cache_bytes: int = 0
    steps: int = 0  # llama_decode calls
    decode_seconds: float = 0.0  # time spent inside them
    restarts: int = 0  # engine processes started again after a crash
    prompt_cache: PromptCacheStats = field(default_factory=PromptCacheStats)
    drafted_tokens: int = 0  # speculative decoding: tokens drafted and verified
    accepted_tokens: int = 0  # of which accepted


EngineState = Literal["up", "restarting", "failed"]


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """How a loaded model runs: where, with which settings, what the warm-up probe found, and
    (for an engine process) its state. /healthz shows it under `runs`."""

    device: str
    gpu_layers: int
    extra_buffers: bool
    weights: str  # the file llama.cpp loaded (its name)
    converted: bool  # wai's Q8_0 conversion of the configured file
    probe: str
    isolation: Literal["thread", "process"] = "thread"
    state: EngineState = "up"
    pid: int | None = None
    restarts: int = 0

    def public(self) -> dict[str, object]:
        """What /healthz shows: the engine process's fields only when there is one."""
        out: dict[str, object] = {
            "device": self.device,
            "gpu_layers": self.gpu_layers,
            "extra_buffers": self.extra_buffers,
            "weights": self.weights,
            "converted": self.converted,
            "probe": self.probe,
        }
        if self.isolation == "process":
            out.update(isolation="process", state=self.state, pid=self.pid, restarts=self.restarts)
        return out
