"""How one model's engine is set up: the part of the configuration that crosses into the engine
process (as JSON), free of llama.cpp so that the server side can hold it without loading it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from wai.weights.quantize import WeightsMode

# "auto": Q4_1/Q5_1 weights computed as Q8_0 (see weights.py); "as-is": the file's own
# llama.cpp's extra (repacking, AMX) buffer types: "auto" decides per CPU (see hardware.py)
ExtraBuffers = Literal["auto", "on", "off"]


Speculation = Literal["ngram", "off"]

# what the model's engine does: generate text (engine/llamacpp.py) or embed it (embedder.py)
EngineKind = Literal["generate", "embed"]


@dataclass(frozen=True, slots=True)
class LlamaCppConfig:
    path: Path
    name: str
    kind: EngineKind = "generate"
    n_slots: int = 8
    n_ctx_seq: int = 2048  # context per sequence; KV memory grows with n_slots * n_ctx_seq
    n_batch: int = 512  # per-step token budget (decode tokens + prefill chunks)
    prefill_chunk: int = 128  # prompts are computed in aligned chunks of this many tokens
    # host RAM for prompt prefixes slots evict (prompt_cache.py); -1: sized from free memory
    prompt_cache_bytes: int = -1
    n_threads: int = 0  # 0: all cores
    sampling_threads: int = 0  # sampler chains of one step in parallel; 0: as n_threads
    max_waiting: int = 64  # bounded waiting queue; beyond it submit raises EngineBusy
    flash_attn: bool = True
    # True: outputs independent of load (one KV stream per sequence, a llama_decode per group of
    # equal-length works). False: one KV stream for all and one llama_decode per step, prompt
    # chunks beside decode rows (see scheduler.py and README's determinism section).
    batch_invariant: bool = True
    # speculative decoding (speculation.py): "ngram" (prompt lookup) or "off"; the most
    # tokens a sequence drafts per step
    speculation: Speculation = "ngram"
    draft_max: int = 16
    draft_min: int = 0  # draft at least this many whenever there is a draft (0: as pays)
    draft_path: Path | None = None  # a draft model (draft.py) instead of prompt lookup
    weights: WeightsMode = "auto"  # see weights.py
    extra_buffers: ExtraBuffers = "auto"  # see hardware.py
    gpu_layers: int = -1  # -1: all when the build has a GPU backend
    probe_fault: str = ""  # fault injection for the warm-up probe (see probe.py)
    cache_dir: Path = Path.home() / ".cache" / "wai"

    def as_dict(self) -> dict[str, Any]:
        """The config as JSON can carry it (paths as strings); `from_dict` reads it back."""
        return {
            k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LlamaCppConfig:
        draft = d.get("draft_path")
        return cls(
            **{
                **d,
                "path": Path(d["path"]),
                "cache_dir": Path(d["cache_dir"]),
                "draft_path": None if draft is None else Path(draft),
            }
        )
