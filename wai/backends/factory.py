"""Backends from configuration: a local model (its engine in a process of its own, or on a
thread) or an upstream one, and what a local model will hold in memory once loaded."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from wai.backends.base import Backend
from wai.backends.local.backend import LocalBackend
from wai.backends.local.embeddings import LocalEmbeddingBackend
from wai.backends.local.speech import LocalSpeechBackend
from wai.backends.local.text2text import LocalText2TextBackend
from wai.backends.upstream.backend import UpstreamBackend
from wai.catalog import EMBEDDED_ASR_NAME, TEXT2TEXT_KINDS, Kind, embedded_asr_parts
from wai.engines.llamacpp.config import LlamaCppConfig
from wai.engines.llamacpp.gguf import POOLING_RANK, declared_pooling, kv_cache_bytes, read_metadata
from wai.engines.llamacpp.inthread import InThreadEngine
from wai.engines.llamacpp.process import ProcessEngine
from wai.engines.llamacpp.types import ModelLoadError, TokenEngine
from wai.engines.speech.engine import SpeechEngine
from wai.engines.speech.types import SpeechConfig, SpeechKind
from wai.engines.text2text.engine import Text2TextEngine
from wai.engines.text2text.types import Text2TextConfig
from wai.settings import ModelConfig, Settings
from wai.weights import seq2seq, whisper
from wai.weights.quantize import compute_size

log = logging.getLogger("wai.runtime")

# Tokens per llama_decode of an embedding model (whole texts; a longer text gets a call of its
# own). Packed texts attend across each other's tokens before the mask drops it, so a call's
# cost per token grows with its size: for all-MiniLM-L6-v2 on 2 EPYC cores, 0.20 ms per token
# up to 500 tokens, 0.21 at 800, 0.25 at 2,000 (bench/RESULTS.md).
EMBED_BATCH_TOKENS = 512
EMBED_TEXTS_PER_CALL = 64
# architectures llama.cpp computes as encoders: each such model embeds
_ENCODERS = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "modern-bert"})


def task_of(model: ModelConfig) -> Kind:
    """What a configured model does: as configured, else as its GGUF says (rank pooling, a
    classification head, reranks; an encoder, or a model that declares another pooling type,
    embeds; anything else generates). The model table resolves it once per model (models.py),
    so the file is read here only for a config that did not come through it."""
    if model.task != "auto" or model.upstreams:
        return "text-generation" if model.task == "auto" else model.task
    if whisper.is_model_dir(model.local_path):
        return "automatic-speech-recognition"
    if (text2text := seq2seq.task_of(model.local_path)) is not None:
        return text2text
    if model.local_path.suffix == ".onnx":  # a Piper voice (smart-turn: say its task)
        return "text-to-speech"
    try:
        meta = read_metadata(model.local_path)
    except ModelLoadError:
        return "text-generation"  # its load will say what is wrong
    pooling = declared_pooling(meta)
    if pooling == POOLING_RANK:
        return "reranking"
    embeds = meta.get("general.architecture") in _ENCODERS or pooling is not None
    return "text-embeddings" if embeds else "text-generation"


# Speech jobs computed at once per model, a thread each (`[models.NAME] slots` sets it). On 2
# cores, four concurrent 42 s transcriptions ran at 0.60x faster-whisper's own four workers
# one after another, 1.01x four at a time (bench/speech.py, bench/RESULTS.md).
SPEECH_SLOTS = 4
# Sentences a text-to-text engine decodes in one batch, from as many requests as are waiting
# (`[models.NAME] slots` sets it).
TEXT2TEXT_BATCH = 32
_SPEECH: dict[str, SpeechKind] = {
    "automatic-speech-recognition": "asr",
    "text-to-speech": "tts",
    "voice-activity-detection": "turn",
}


def _preparation(name: str, path: Path) -> Callable[[], object] | None:
    """What a speech model needs done before its engine starts: the embedded Whisper base is
    joined from its two packages into `cache_dir` (once; checked against its SHA-256)."""
    if name != EMBEDDED_ASR_NAME:
        return None
    return lambda: whisper.assembled(embedded_asr_parts(), path.parent, path.name)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class BackendFactory:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def llama_config(self, name: str, model: ModelConfig) -> LlamaCppConfig:
        e = self.settings.engine
        if task_of(model) != "text-generation":
            return self._embedding_config(name, model)
        return LlamaCppConfig(
            path=model.local_path,
            name=name,
            n_slots=model.slots or e.slots,
            n_ctx_seq=model.ctx_per_slot or e.ctx_per_slot,
            n_batch=e.batch_tokens,
            n_threads=e.threads if model.threads is None else model.threads,
            max_waiting=e.max_waiting,
            prefill_chunk=e.prefill_chunk,
            prompt_cache_bytes=-1 if e.prompt_cache_bytes is None else int(e.prompt_cache_bytes),
            flash_attn=e.flash_attn,
            batch_invariant=e.batch_invariant,
            speculation=e.speculation,
            draft_max=e.draft_max,
            draft_min=e.draft_min,
            draft_path=self._draft_path(model),
            weights=e.weights,
            extra_buffers=e.extra_buffers,
            gpu_layers=e.gpu_layers if model.gpu_layers is None else model.gpu_layers,
            probe_fault=e.probe_fault,
            cache_dir=self.settings.cache_dir,
        )

    def _draft_path(self, model: ModelConfig) -> Path | None:
        """A model's draft model file (resolved by the model table, see models.py)."""
        if model.draft is None or self.settings.engine.speculation == "off":
            return None
        return Path(model.draft)

    def _embedding_config(self, name: str, model: ModelConfig) -> LlamaCppConfig:
        """An embedding model's engine: texts packed into calls of EMBED_BATCH_TOKENS tokens,
        at most EMBED_TEXTS_PER_CALL of them; no slots to keep (no KV cache)."""
        e = self.settings.engine
        return LlamaCppConfig(
            path=model.local_path,
            name=name,
            kind="embed",
            n_slots=EMBED_TEXTS_PER_CALL,
            n_ctx_seq=model.ctx_per_slot or 8192,  # the model's own window, where smaller
            n_batch=EMBED_BATCH_TOKENS,
            n_threads=e.threads if model.threads is None else model.threads,
            max_waiting=e.max_waiting,
            flash_attn=e.flash_attn,
            gpu_layers=0,
            cache_dir=self.settings.cache_dir,
        )

    def speech_config(self, name: str, model: ModelConfig) -> SpeechConfig:
        e, limits = self.settings.engine, self.settings.limits
        return SpeechConfig(
            path=str(model.local_path),
            name=name,
            kind=_SPEECH[model.task],
            n_threads=e.threads if model.threads is None else model.threads,
            n_slots=model.slots or SPEECH_SLOTS,
            max_waiting=e.max_waiting,
            max_audio_seconds=limits.max_audio_seconds,
        )

    def text2text_config(self, name: str, model: ModelConfig) -> Text2TextConfig:
        """A text-to-text model's engine: its converted directory under `cache_dir`."""
        e = self.settings.engine
        task = model.task
        assert task in ("translation", "summarization", "text-classification")
        compute = model.compute_type or "auto"
        if compute == "auto":
            compute = "float32" if task == "text-classification" else "int8"
        return Text2TextConfig(
            path=str(self.settings.cache_dir / f"{name}.ct2"),
            name=name,
            kind=task,
            n_threads=e.threads if model.threads is None else model.threads,
            max_batch=model.slots or TEXT2TEXT_BATCH,
            max_waiting=e.max_waiting,
            compute_type=compute,
        )

    def _text2text(self, name: str, model: ModelConfig) -> Backend:
        """Its engine, started once its weights are converted (under `cache_dir`, once)."""
        source, cache = model.local_path, self.settings.cache_dir

        def prepare() -> Path:
            return seq2seq.converted(source, cache, name)

        engine = Text2TextEngine(self.text2text_config(name, model))
        return LocalText2TextBackend(engine, self.settings.engine.max_waiting, prepare)

    def build(self, name: str, model: ModelConfig) -> Backend:
        """An unstarted backend for a configured model."""
        max_waiting = self.settings.engine.max_waiting
        if model.task in TEXT2TEXT_KINDS and not model.upstreams:
            log.info("loading %s from %s", name, model.path)
            return self._text2text(name, model)
        if model.task in _SPEECH and not model.upstreams:
            log.info("loading %s from %s", name, model.path)
            speech = SpeechEngine(self.speech_config(name, model))
            return LocalSpeechBackend(speech, max_waiting, _preparation(name, model.local_path))
        if model.upstreams:
            log.info("serving %s from %s", name, ", ".join(u.url for u in model.upstreams))
            return UpstreamBackend(
                name,
                model.upstreams,
                health_interval_s=model.health_interval_s,
                max_waiting=max_waiting,
            )
        config = self.llama_config(name, model)
        log.info("loading %s from %s", name, model.path)
        engine: TokenEngine = (
            ProcessEngine(config)
            if self.settings.engine.isolation == "process"
            else InThreadEngine(config)
        )
        if config.kind == "embed":
            return LocalEmbeddingBackend(engine, max_waiting)
        return LocalBackend(engine, model.template, max_waiting)

    def estimate(self, name: str, model: ModelConfig) -> int:
        """Bytes a model will hold once loaded (weights + KV cache), from its file alone;
        0 when the file cannot be read (its load will say why), or for an upstream model."""
        if model.upstreams:
            return 0
        if model.task == "automatic-speech-recognition":
            size = whisper.model_bytes(model.local_path)
            if not size and name == EMBEDDED_ASR_NAME:  # joined at its first load
                size = sum(part.stat().st_size for part in embedded_asr_parts())
            return size
        if model.task in ("text-to-speech", "voice-activity-detection"):
            return _size(model.local_path)
        if model.task in TEXT2TEXT_KINDS:  # float32 weights; int8 holds a quarter of them
            folder = model.local_path
            return _size(folder / "model.safetensors") or _size(folder / "pytorch_model.bin")
        config = self.llama_config(name, model)
        try:
            meta = read_metadata(config.path)
            weights = compute_size(config.path, meta, config.weights, config.cache_dir)
        except (ModelLoadError, OSError):
            return 0
        if config.kind == "embed":
            return weights  # an encoder keeps no KV cache
        cells = config.n_ctx_seq * config.n_slots
        total = weights + kv_cache_bytes(meta, cells)
        if config.draft_path is not None:  # loaded in the same engine
            try:
                total += config.draft_path.stat().st_size
                total += kv_cache_bytes(read_metadata(config.draft_path), cells)
            except (ModelLoadError, OSError):
                pass
        return total
