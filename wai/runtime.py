"""The running server's models: started under the registry, leased by requests, and whether
the server is ready for traffic.

Shared by the HTTP server, `wai run` and `Ai.local()`, so all of them resolve ids, apply limits
and build requests the same way. Knows nothing of HTTP: failures are exceptions that the web
layer (or the client) turns into Workers AI's answers.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from wai import hub, standins
from wai.backends.base import (
    Backend,
    EmbeddingRequest,
    EngineStats,
    Event,
    Generation,
    GenerationRequest,
    ModelLoadError,
    RerankRequest,
    SynthesisRequest,
    TaskRequest,
    Text2TextRequest,
    TranscriptionRequest,
    TurnRequest,
)
from wai.backends.factory import BackendFactory
from wai.catalog import M2M100, Catalog, ModelSpec
from wai.engines.text2text.types import Classify, Summarize, Translate
from wai.errors import (
    InvalidInput,
    ModelUnavailable,
    NeedsWeights,
    UnknownModel,
    UnservedTask,
    without_paths,
)
from wai.models import ModelTable
from wai.pulls import Pulls
from wai.registry import Registry
from wai.requests import embedding_request, generation_request, rerank_request
from wai.schemas import TaskInput
from wai.schemas.embeddings import EmbeddingInput
from wai.schemas.reranking import RerankInput
from wai.schemas.speech import TranscriptionInput
from wai.schemas.text2text import (
    INDICTRANS2_TARGETS,
    ClassificationInput,
    SummaryInput,
    Text2TextInput,
    TranslationInput,
)
from wai.schemas.tts import SpeechInput
from wai.schemas.turn import TurnInput
from wai.settings import Settings


@dataclass(frozen=True, slots=True)
class Served:
    """A model id as this server answers it: the catalog entry and the model behind it (local
    or upstream: the same contract)."""

    model_id: str
    spec: ModelSpec
    backend: Backend
    how: str = ""  # how it answers, where the model is a stand-in for another kind

    @property
    def model_name(self) -> str:
        return self.backend.name

    @property
    def label(self) -> str:
        """The answering model as `x-wai-model` names it (with how, for a stand-in)."""
        return f"{self.backend.name} ({self.how})" if self.how else self.backend.name


class InteractiveLoad:
    """Interactive requests in flight per model, and the most each model had at once in the
    last `window` seconds: the room a queued batch's items leave (wai/queue). A recent peak,
    not the instant count, so that a batch does not fill a slot an interactive client is
    about to ask for again."""

    def __init__(self, window: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._now: dict[str, int] = {}
        self._peaks: dict[str, deque[tuple[float, int]]] = {}

    def started(self, name: str) -> None:
        n = self._now[name] = self._now.get(name, 0) + 1
        self._recent(name).append((self._clock(), n))

    def ended(self, name: str) -> None:
        self._now[name] = max(0, self._now.get(name, 0) - 1)

    def recent(self, name: str) -> int:
        """The most requests in flight at once on a model in the last `window` seconds."""
        return max([self._now.get(name, 0), *(n for _, n in self._recent(name))])

    def _recent(self, name: str) -> deque[tuple[float, int]]:
        """A model's (time, in flight) marks of the window, older ones dropped."""
        marks = self._peaks.setdefault(name, deque())
        since = self._clock() - self.window
        while marks and marks[0][0] < since:
            marks.popleft()
        return marks


class Runtime:
    def __init__(self, settings: Settings, catalog: Catalog | None = None) -> None:
        self.settings = settings
        self.models = ModelTable(settings, catalog)
        self.factory = BackendFactory(settings)
        self.registry: Registry | None = None
        self.ready = False
        self.load = InteractiveLoad()
        self.pulls = Pulls(self._serve_pulled)

    async def start(self) -> None:
        models = {}
        for name, config in self.models.configs.items():
            if name in self.models.failed:
                continue
            estimate = await asyncio.to_thread(self.factory.estimate, name, config)
            models[name] = (config, self.models.eager(name), estimate)
        budget = self.settings.memory_budget
        self.registry = Registry(
            models,
            self.factory.build,
            budget=int(budget) if budget is not None else None,
            idle_unload_seconds=self.settings.idle_unload_seconds,
            load_wait_seconds=self.settings.load_wait_seconds,
            measure=lambda b: b.memory_bytes(),
        )
        await self.registry.start()
        self.ready = True

    async def close(self) -> None:
        self.ready = False
        await self.pulls.close()
        if self.registry is not None:
            await self.registry.close()

    @property
    def backends(self) -> dict[str, Backend]:
        """The models loaded (local) or started (upstream) now."""
        return self.registry.loaded() if self.registry is not None else {}

    def answering_ids(self) -> list[str]:
        """The known ids whose model is not failed (the others answer 503/3043)."""
        failed = self.failures()
        return [
            mid
            for mid in self.models.known_ids()
            if (name := self.models.model_for(mid)) is not None and name not in failed
        ]

    def context_window(self, model_id: str) -> int | None:
        """The context window per sequence of the model answering an id (loaded: as its
        engine found it; not loaded: as configured)."""
        name = self.models.model_for(model_id)
        if name is None:
            return None
        backend = self.backends.get(name)
        if backend is not None:
            return backend.n_ctx_seq
        return self.models.configured_context(name)

    def name_for(self, model_id: str) -> str:
        """The model answering an id, if it can: raises UnknownModel or ModelUnavailable
        (refused at load, or its engine given up), or, with auto_pull, WeightsDownloading
        while the id's real weights download."""
        self._auto_pull(model_id)
        if self.models.needs_weights(model_id):
            raise NeedsWeights(model_id, "translation", f"wai pull {M2M100}")
        name = self.models.model_for(model_id)
        if name is None:
            spec = self.models.catalog.get(model_id)
            if spec is not None and spec.kind is None:
                task = spec.task.name
                if task == "Automatic Speech Recognition":  # what is left of it: streams
                    task = f"streaming {task}"
                raise UnservedTask(model_id, task, self.models.served_tasks())
            raise UnknownModel(model_id)
        failure = self.failures().get(name)
        if failure is not None:
            raise ModelUnavailable(model_id, failure)
        return name

    async def submit(
        self,
        model_id: str,
        inp: TaskInput,
        stop: Sequence[str] = (),
        logit_bias: Sequence[tuple[int, float]] = (),
        *,
        background: bool = False,
        session: str = "",
    ) -> tuple[Served, Generation[Event]]:
        """Resolve, check, load (if need be) and queue a generation, or an embedding. Raises
        RequestError or EngineError. The model is leased until the generation ends: it is
        never unloaded under it. `background`: a queued batch's item (see wai/queue);
        `session`: the client's session key (see GenerationRequest.session)."""
        name = self.name_for(model_id)
        spec = self.models.spec_for(model_id)
        request = self.task_request(model_id, inp, stop, logit_bias)
        if session and isinstance(request, GenerationRequest):
            request = replace(request, session=session)
        if background:
            request = replace(request, background=True)
            backend, generation = await self._lease(model_id, name, request)
        else:
            self.load.started(name)  # from now: a request waiting for a load counts too
            try:
                backend, generation = await self._lease(model_id, name, request)
            except BaseException:
                self.load.ended(name)
                raise
            generation.add_done_callback(lambda: self.load.ended(name))
        ranks_by_cosine = isinstance(request, RerankRequest) and (
            self.models.kind_of(name) != "reranking"
        )
        how = "cosine similarity" if ranks_by_cosine else ""
        if isinstance(inp, SpeechInput) and inp.speaker is not None:
            how = "one voice for every speaker"
        if isinstance(inp, Text2TextInput):
            how = self._text2text_how(inp, name)
        return Served(model_id, spec, backend, how), generation

    def _text2text_how(self, inp: Text2TextInput, name: str) -> str:
        """How a stand-in answers a text-to-text id (empty: the id's own kind of model)."""
        if self.models.kind_of(name) == "text-embeddings":
            if isinstance(inp, SummaryInput):
                return "extractive: the most central sentences"
            return "zero-shot: similarity to label descriptions"
        if isinstance(inp, TranslationInput) and inp.shape == "indictrans2":
            return "M2M100 standing in for IndicTrans2"
        return ""

    def _auto_pull(self, model_id: str) -> None:
        """With auto_pull: an id with a curated source, served by a stand-in (no entry serves
        it, not pulled), starts its download and waits for it."""
        table = self.models.sources
        if not self.settings.auto_pull or table is None or model_id in self.models.routed():
            return
        hub_file = table.files.get(model_id)
        if hub_file is not None:
            self.pulls.require(model_id, hub_file)

    async def _serve_pulled(self, model_id: str, hub_file: hub.HubFile, path: Path) -> None:
        """A file auto_pull has fetched and checked: its id is served by it from now."""
        models = self.models
        name, config = await asyncio.to_thread(models.pulled_config, model_id, hub_file, path)
        estimate = await asyncio.to_thread(self.factory.estimate, name, config)
        if self.registry is not None:
            self.registry.add(name, config, estimate)  # first: a routed id must find its entry
        models.serve_pulled(model_id, name, config)

    def task_request(
        self,
        model_id: str,
        inp: TaskInput,
        stop: Sequence[str] = (),
        logit_bias: Sequence[tuple[int, float]] = (),
    ) -> TaskRequest:
        """The backend's request for validated inputs, with the model's limits applied:
        raises RequestError (InvalidInput past a limit, an unknown id)."""
        if isinstance(inp, EmbeddingInput):
            return embedding_request(inp)
        if isinstance(inp, RerankInput):
            return rerank_request(inp)
        if isinstance(inp, TranscriptionInput):
            return TranscriptionRequest(inp.audio, inp.options, inp.reject_if_busy)
        if isinstance(inp, SpeechInput):
            return SynthesisRequest(inp.voice, inp.language, inp.reject_if_busy)
        if isinstance(inp, TurnInput):
            return TurnRequest(inp.audio, inp.query, inp.reject_if_busy)
        if isinstance(inp, TranslationInput | SummaryInput | ClassificationInput):
            return self._text2text_request(model_id, inp)
        spec = self.models.spec_for(model_id)
        limits = self.models.limits(self.name_for(model_id))
        return generation_request(spec, limits, inp, stop, logit_bias)

    def _text2text_request(
        self, model_id: str, inp: Text2TextInput
    ) -> Text2TextRequest | EmbeddingRequest | RerankRequest:
        """The job for the id's model; for the embedding model standing in, the sentences to
        embed (a summary), or the text and the label descriptions (sentiment)."""
        busy = inp.reject_if_busy
        if self.models.kind_of(self.name_for(model_id)) == "text-embeddings":
            if isinstance(inp, SummaryInput):
                sentences = tuple(standins.sentences(inp.text))
                return EmbeddingRequest(sentences, truncate=True, reject_if_busy=busy)
            if isinstance(inp, ClassificationInput):
                texts = standins.label_texts()
                return RerankRequest(inp.text, texts, truncate=True, reject_if_busy=busy)
        if isinstance(inp, TranslationInput):
            target = inp.target
            if inp.shape == "indictrans2":
                mapped = INDICTRANS2_TARGETS.get(inp.target)
                if mapped is None:
                    raise InvalidInput(
                        f"'/target_language': {inp.target} is not among the languages of "
                        f"M2M100, which answers this id here"
                    )
                return Text2TextRequest(Translate(list(inp.texts), "en", mapped), busy)
            return Text2TextRequest(Translate(list(inp.texts), inp.source, target), busy)
        if isinstance(inp, SummaryInput):
            return Text2TextRequest(Summarize(inp.text, inp.max_length), busy)
        return Text2TextRequest(Classify(inp.text), busy)

    async def _lease(
        self, model_id: str, name: str, request: TaskRequest
    ) -> tuple[Backend, Generation[Event]]:
        """The request submitted to its model, leased (loaded first if need be) until the
        generation ends."""
        assert self.registry is not None, "Runtime.start() first"
        try:
            backend = await self.registry.acquire(name)
        except ModelLoadError as e:
            raise ModelUnavailable(model_id, str(e)) from e
        try:
            if backend.failure is not None:
                raise ModelUnavailable(model_id, backend.failure)
            generation = await backend.submit(request)
        except BaseException:
            self.registry.release(name)
            raise
        registry = self.registry
        generation.add_done_callback(lambda: registry.release(name))
        return backend, generation

    def spare(self, name: str) -> int:
        """How many of a queued batch's items may run on a model now: its slots (one while it
        is not loaded: the first item loads it) less its recent interactive peak. None on a
        local model while another local model serves interactive requests: they share this
        machine's cores (or GPU), and the interactive ones come first."""
        backend = self.backends.get(name)
        slots = backend.stats().slots_total if backend is not None else 1
        if self._is_local(name) and any(
            self.load.recent(other) for other in self.models.configs
            if other != name and self._is_local(other)
        ):  # fmt: skip
            return 0
        return max(0, slots - self.load.recent(name))

    def _is_local(self, name: str) -> bool:
        config = self.models.configs.get(name)
        return config is not None and not config.upstreams

    def stats(self) -> dict[str, EngineStats]:
        return {name: b.stats() for name, b in self.backends.items()}

    def readiness(self) -> list[str]:
        """Why this server should not get traffic now (empty: ready). Ready means started,
        every eager model loaded with its engine up, and no model's queue full: a load
        balancer sends traffic elsewhere meanwhile, while /healthz (liveness) stays 200."""
        if not self.ready or self.registry is None:
            return ["starting"]
        reasons = []
        failed = self.failures()
        loaded = self.backends
        for name, m in self.registry.report().models.items():
            backend = loaded.get(name)
            if name in failed:
                reasons.append(f"{name}: failed: {failed[name]}")
            elif backend is None:
                if m.load == "eager":
                    reasons.append(f"{name}: {m.state}")
            elif (why := backend.unready()) is not None:
                reasons.append(f"{name}: {why}")
        return reasons

    def failures(self) -> dict[str, str]:
        """Models that cannot answer, and why: not found, refused at load, or given up since.
        As public endpoints show them: file names, not the server's paths (the log has
        those)."""
        given_up = {n: b.failure for n, b in self.backends.items() if b.failure is not None}
        refused = self.registry.failures() if self.registry is not None else {}
        failed = {**self.models.failed, **refused, **given_up}
        return {name: without_paths(why) for name, why in failed.items()}
