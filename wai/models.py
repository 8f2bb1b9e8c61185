"""The model table: which configured model answers each model id, without loading anything.

Every configured model (`[models.NAME]`, a GGUF file here or upstream servers) is an entry.
Each kind of model (catalog.Kind) has a default that answers every catalog id of that kind no
entry `serves`: for text generation the configured `default_model` or the embedded SmolLM2;
for text embeddings the embedded all-MiniLM-L6-v2 (written as a GGUF in `cache_dir` on first
use); for reranking the first configured reranker, else the default embedding model, which
ranks by cosine similarity; for speech recognition the first configured speech model, else the
embedded Whisper base (joined in `cache_dir` from its two packages on first use). A model
that cannot be found is recorded as failed here, with why, and its ids answer 503/3043.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from wai import hub, sources
from wai.backends.factory import task_of
from wai.catalog import (
    AUTOMATIC_SPEECH_RECOGNITION,
    EMBEDDED_ASR_NAME,
    EMBEDDED_EMBEDDING_NAME,
    EMBEDDED_NAME,
    EMBEDDED_TTS_NAME,
    EMBEDDED_TURN_NAME,
    SUMMARIZATION,
    TEXT2TEXT_KINDS,
    TEXT_CLASSIFICATION,
    TEXT_EMBEDDINGS,
    TEXT_GENERATION,
    TEXT_TO_SPEECH,
    TRANSLATION,
    VOICE_ACTIVITY_DETECTION,
    Catalog,
    Kind,
    ModelSpec,
    embedded_asr_parts,
    embedded_embedding_source,
    embedded_model_path,
    embedded_tts_path,
    embedded_turn_path,
)
from wai.settings import Limits, ModelConfig, Settings
from wai.sources import ModelSourceError
from wai.weights import bert

log = logging.getLogger("wai.models")


class ModelTable:
    def __init__(self, settings: Settings, catalog: Catalog | None = None) -> None:
        self.settings = settings
        self.catalog = catalog or Catalog()
        self.configs: dict[str, ModelConfig] = dict(settings.models)
        self.failed: dict[str, str] = {}  # models that cannot be served at all, and why
        self.pulled: dict[str, str] = {}  # ids served by their pulled GGUF -> its model name
        self.sources: hub.Sources | None = None  # the curated GGUF sources (wai pull)
        self.default = self._add_default()
        self.default_embedding = self._add_default_embedding()
        for name, config in list(self.configs.items()):
            embedded = (
                EMBEDDED_NAME,
                EMBEDDED_EMBEDDING_NAME,
                EMBEDDED_ASR_NAME,
                EMBEDDED_TTS_NAME,
                EMBEDDED_TURN_NAME,
            )
            if name in embedded and name not in settings.models:
                continue  # the packaged ones: where pip put them (or wai wrote them)
            if config.upstreams:
                continue  # served by other servers: nothing to find here
            try:
                path = sources.resolve(config.local_path, settings.model_roots)
            except ModelSourceError as e:
                log.warning("model %s cannot be served: %s", name, e)  # with its path
                self.failed[name] = str(e)
                continue
            self.configs[name] = config.model_copy(update={"path": path})
        self._resolve_drafts()
        self._add_pulled()
        self._resolve_tasks()
        # explicit routes: id -> model name
        self._routes = {mid: name for name, m in self.configs.items() for mid in m.serves}
        rerankers = [n for n, m in self.configs.items() if m.task == "reranking"]
        self.default_reranker = rerankers[0] if rerankers else self.default_embedding
        self.default_asr = self._default_packaged(
            "automatic-speech-recognition", EMBEDDED_ASR_NAME, self._embedded_asr_dir
        )
        self.default_tts = self._default_packaged(
            "text-to-speech", EMBEDDED_TTS_NAME, embedded_tts_path
        )
        self.default_turn = self._default_packaged(
            "voice-activity-detection", EMBEDDED_TURN_NAME, embedded_turn_path
        )
        # text-to-text: the first model of the task (configured, else pulled); summaries and
        # sentiment else by the embedding model (stand-ins), translation by none (refused)
        self.default_text2text: dict[Kind, str | None] = {
            kind: next((n for n, m in self.configs.items() if m.task == kind), None)
            for kind in TEXT2TEXT_KINDS
        }

    def _resolve_drafts(self) -> None:
        """Each `draft`: another local entry's file (by its name), else a path, resolved and
        held to `model_roots` as a model's own path is. A draft that cannot be used costs its
        model."""
        for name, config in list(self.configs.items()):
            if config.draft is None or name in self.failed:
                continue
            other = self.configs.get(config.draft)
            try:
                if other is not None and other.path is not None:
                    draft = other.path
                else:
                    draft = sources.resolve(Path(config.draft), self.settings.model_roots)
            except ModelSourceError as e:
                log.warning("model %s cannot be served: its draft model: %s", name, e)
                self.failed[name] = f"its draft model: {e}"
                continue
            self.configs[name] = config.model_copy(update={"draft": str(draft)})

    def _add_default(self) -> str:
        """The model that answers catalog ids no entry serves: the configured one, or the
        embedded one (failed, with why, when its package is missing and other models exist)."""
        if self.settings.default_model is not None:
            name = self.settings.default_model.stem
            self.configs.setdefault(name, ModelConfig(path=self.settings.default_model))
            return name
        try:
            self.configs.setdefault(EMBEDDED_NAME, ModelConfig(path=embedded_model_path()))
        except FileNotFoundError as e:
            if not self.configs:
                raise
            self.failed[EMBEDDED_NAME] = str(e)
        return EMBEDDED_NAME

    def _add_pulled(self) -> None:
        """Ids whose curated GGUF is in the Hugging Face cache (`wai pull`) are served by it,
        lazily, with no configuration; an entry that serves the id wins."""
        configured = {mid for m in self.configs.values() for mid in m.serves}
        try:
            table = hub.load_sources(self.settings.hub_sources)
        except (OSError, ValueError) as e:
            log.warning("hub_sources cannot be read: %s", e)
            return
        self.sources = table
        cache = sources.hf_cache_dir()
        for model_id, hub_file in table.files.items():
            if model_id in configured or (path := hub.cached(hub_file, cache)) is None:
                continue
            # at start the task is read with every other entry's (_resolve_tasks)
            name, self.configs[name] = self.pulled_config(model_id, hub_file, path, False)
            self.pulled[model_id] = name

    def pulled_config(
        self, model_id: str, hub_file: hub.HubFile, path: Path, read_task: bool = True
    ) -> tuple[str, ModelConfig]:
        """The entry a pulled file is served under: named after the file, with the id added
        to what it serves (Llama 2 ids with Meta's format). `read_task` reads its GGUF (off
        the event loop, for a file auto_pull fetched while running)."""
        spec = self.catalog.get(model_id)
        name = hub_file.name
        config = self.configs.get(name)
        if config is None:
            template = "llama2" if spec is not None and spec.family == "llama2" else "auto"
            config = ModelConfig(path=path, template=template)
            if read_task:
                config = config.model_copy(update={"task": task_of(config)})
        return name, config.model_copy(update={"serves": [*config.serves, model_id]})

    def serve_pulled(self, model_id: str, name: str, config: ModelConfig) -> None:
        """From now on the id is served by that entry (the registry knows it already)."""
        self.configs[name] = config
        self.pulled[model_id] = name
        self._routes[model_id] = name
        if config.task in TEXT2TEXT_KINDS and self.default_text2text.get(config.task) is None:
            self.default_text2text[config.task] = name  # M2M100 for indictrans2's id too

    def _resolve_tasks(self) -> None:
        """Each local model's task, once: as configured, else read from its GGUF (never again
        per request or per load)."""
        for name, config in self.configs.items():
            if config.task == "auto" and not config.upstreams and name not in self.failed:
                task = task_of(config)
                self.configs[name] = config.model_copy(update={"task": task})

    def _add_default_embedding(self) -> str:
        """The model that answers embedding ids no entry serves: the embedded one (failed,
        with why, when its package is missing or its file cannot be written)."""
        name = EMBEDDED_EMBEDDING_NAME
        if name in self.configs:
            return name
        try:
            path = bert.converted(embedded_embedding_source(), self.settings.cache_dir, name)
        except (OSError, ValueError) as e:
            self.failed[name] = str(e)
        else:
            self.configs[name] = ModelConfig(path=path, task="text-embeddings")
        return name

    def _embedded_asr_dir(self) -> Path:
        """Where the embedded Whisper base is joined from its two packages, on its first load
        (backends/local/speech.py), not here: a model table is cheap to make."""
        embedded_asr_parts()  # raises FileNotFoundError, naming the packages, if missing
        return self.settings.cache_dir / EMBEDDED_ASR_NAME

    def _default_packaged(self, kind: Kind, name: str, find: Callable[[], Path]) -> str:
        """The model that answers a kind's ids no entry serves: the first configured one of
        that kind, else the one a package ships (the Piper voice, smart-turn; failed, with why,
        when its package is missing). A pulled model answers its own id only (a Spanish voice
        pulled for aura-2-es does not become every voice id's)."""
        pulled = set(self.pulled.values())
        configured = [n for n, m in self.configs.items() if m.task == kind and n not in pulled]
        if configured:
            return configured[0]
        try:
            path = find()
        except OSError as e:
            self.failed[name] = str(e)
        else:
            self.configs[name] = ModelConfig(path=path, task=kind)
        return name

    def model_for(self, model_id: str) -> str | None:
        """The configured model that answers an id (None: an unknown id)."""
        if model_id in self._routes:
            return self._routes[model_id]
        spec = self.catalog.get(model_id)
        if spec is None or spec.kind is None or self.needs_weights(model_id):
            return None
        return self.default_for(spec.kind)

    def stand_in(self, model_id: str) -> tuple[bool, str | None]:
        """Whether a served id is answered by a stand-in (its task's default model, not weights
        mapped or pulled for it), and the command that would pull its real weights."""
        if model_id in self._routes:
            return False, None
        curated = self.sources is not None and model_id in self.sources.files
        return True, f"wai pull {model_id}" if curated else None

    def routed(self) -> dict[str, str]:
        """Ids that an entry serves (configured, or pulled) -> the model name."""
        return self._routes

    def default_for(self, kind: Kind) -> str:
        if kind == "text-embeddings":
            return self.default_embedding
        if kind == "automatic-speech-recognition":
            return self.default_asr
        if kind == "text-to-speech":
            return self.default_tts
        if kind == "voice-activity-detection":
            return self.default_turn
        if kind in TEXT2TEXT_KINDS:
            return self._text2text_default(kind)
        return self.default_reranker if kind == "reranking" else self.default

    def _text2text_default(self, kind: Kind) -> str:
        """The model answering a text-to-text kind's ids: one of that task; else, for summaries
        and sentiment, the embedding model (extractive and zero-shot stand-ins). Translation has
        no honest stand-in: `needs_weights` says so before this is asked."""
        name = self.default_text2text.get(kind)
        return name if name is not None else self.default_embedding

    def needs_weights(self, model_id: str) -> bool:
        """A translation id with no translation model here to answer it."""
        spec = self.catalog.get(model_id)
        return (
            spec is not None
            and spec.kind == "translation"
            and model_id not in self._routes
            and self.default_text2text.get("translation") is None
        )

    def kind_of(self, name: str) -> Kind:
        """What a configured model does (its resolved task)."""
        task = self.configs[name].task
        return "text-generation" if task == "auto" else task

    def served_tasks(self) -> str:
        """What this server runs, in words (for the error an id of another task gets)."""
        return (
            "Text Generation, Text Embeddings, reranking (Text Classification), Automatic Speech "
            "Recognition of recorded audio (Whisper's ids, nova-3), Text-to-Speech, turn "
            "detection, Translation, Summarization and Text Classification"
        )

    def known_ids(self) -> list[str]:
        """Every id this server resolves: catalog ids (in catalog order), then configured ids
        outside the catalog. Others are unknown (5007)."""
        ids = [spec.id for spec in self.catalog.specs]
        return ids + [mid for mid in self._routes if mid not in self.catalog]

    def spec_for(self, model_id: str) -> ModelSpec:
        """The catalog entry of a known id (a configured id outside the catalog: a bare one,
        of its model's task)."""
        spec = self.catalog.get(model_id)
        if spec is not None:
            return spec
        name = self._routes.get(model_id)
        kind = self.kind_of(name) if name is not None else "text-generation"
        tasks = {
            "text-embeddings": TEXT_EMBEDDINGS,
            "reranking": TEXT_CLASSIFICATION,
            "automatic-speech-recognition": AUTOMATIC_SPEECH_RECOGNITION,
            "text-to-speech": TEXT_TO_SPEECH,
            "voice-activity-detection": VOICE_ACTIVITY_DETECTION,
            "translation": TRANSLATION,
            "summarization": SUMMARIZATION,
            "text-classification": TEXT_CLASSIFICATION,
        }
        task = tasks.get(kind, TEXT_GENERATION)
        return ModelSpec(model_id, "custom", task=task, kind=kind)

    def eager(self, name: str) -> bool:
        """Loaded at start: asked for, the default model, or an upstream model (starting one
        only starts its health checks)."""
        config = self.configs[name]
        return config.load == "eager" or name == self.default or bool(config.upstreams)

    def configured_context(self, name: str) -> int | None:
        """The context window per sequence a local model is configured with (None: upstream)."""
        config = self.configs[name]
        if config.upstreams:
            return None
        return config.ctx_per_slot or self.settings.engine.ctx_per_slot

    def limits(self, name: str) -> Limits:
        """The server's limits with the model's own overrides."""
        overrides = self.configs[name].limits.model_dump(exclude_none=True)
        return self.settings.limits.model_copy(update=overrides)
