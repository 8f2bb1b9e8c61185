"""The loaded models and the path from validated input to a running generation.

Shared by the HTTP server, `wai run` and (later) the in-process client, so all of them resolve
ids, apply limits and build prompts the same way. Knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wai import sources
from wai.catalog import EMBEDDED_NAME, Catalog, ModelSpec, embedded_model_path
from wai.engine import grammar
from wai.engine.base import (
    Backend,
    EngineBusy,
    EngineStats,
    EngineStopped,
    Generation,
    GenerationRequest,
    Message,
    PromptTooLong,
    SamplingParams,
    TokenEngine,
    Tool,
    ToolsRequest,
    UpstreamError,
)
from wai.engine.gguf import ModelLoadError, kv_cache_bytes, read_metadata
from wai.engine.inthread import InThreadEngine
from wai.engine.llamacpp import LlamaCppConfig
from wai.engine.local import LocalBackend
from wai.engine.process import ProcessEngine
from wai.engine.upstream import UpstreamBackend
from wai.engine.weights import compute_size
from wai.errors import (
    BAD_INPUT,
    INTERNAL,
    MODEL_UNAVAILABLE,
    NO_SUCH_MODEL,
    OUT_OF_CAPACITY,
    InvalidInput,
    ModelUnavailable,
    RequestError,
    UnknownModel,
    bad_input_message,
)
from wai.registry import Registry
from wai.schemas.text_generation import ChatMessage, NamedToolChoice, TextGenerationInput
from wai.settings import Limits, LocalModel, Settings
from wai.sources import ModelSourceError

log = logging.getLogger("wai.runtime")


@dataclass(frozen=True, slots=True)
class Failure:
    """What a request failed with, in Workers AI's terms: HTTP status, code, message."""

    status: int
    code: int
    message: str
    retry_after: int | None = None


def classify(e: Exception) -> Failure:
    """The Workers AI answer for what `Runtime.submit` (or the engine) raised."""
    if isinstance(e, UnknownModel):
        return Failure(400, NO_SUCH_MODEL, f"No such model: {e.message}")
    if isinstance(e, ModelUnavailable):
        return Failure(503, MODEL_UNAVAILABLE, e.message)
    if isinstance(e, EngineStopped):
        return Failure(503, MODEL_UNAVAILABLE, str(e), retry_after=1)
    if isinstance(e, InvalidInput | PromptTooLong):
        return Failure(400, BAD_INPUT, bad_input_message(e))
    if isinstance(e, EngineBusy):
        return Failure(429, OUT_OF_CAPACITY, str(e), retry_after=1)
    if isinstance(e, UpstreamError):
        return Failure(e.status, e.code, e.message, retry_after=e.retry_after)
    if isinstance(e, RequestError):
        return Failure(400, BAD_INPUT, e.message)
    return Failure(500, INTERNAL, "Internal error")


@dataclass(frozen=True, slots=True)
class Served:
    """A model id as this server answers it: the catalog entry and the model behind it (local
    or upstream: the same contract)."""

    model_id: str
    spec: ModelSpec
    backend: Backend

    @property
    def local_name(self) -> str:
        return self.backend.name


class Runtime:
    def __init__(self, settings: Settings, catalog: Catalog | None = None) -> None:
        self.settings = settings
        self.catalog = catalog or Catalog()
        self._local: dict[str, LocalModel] = dict(settings.models)
        self.failed: dict[str, str] = {}  # local models that could not be loaded, and why
        # The default model answers every catalog id no entry in `models` serves: the
        # configured one, or the embedded one.
        if settings.default_model is not None:
            self._default = settings.default_model.stem
            self._local.setdefault(self._default, LocalModel(path=settings.default_model))
        else:
            self._default = EMBEDDED_NAME
            try:
                self._local.setdefault(EMBEDDED_NAME, LocalModel(path=embedded_model_path()))
            except FileNotFoundError as e:
                if not self._local:
                    raise
                self.failed[EMBEDDED_NAME] = str(e)
        for name, local in list(self._local.items()):
            if name == EMBEDDED_NAME and settings.default_model is None:
                continue  # the packaged one: where pip put it
            if local.upstreams:
                continue  # served by other servers: nothing to find here
            try:
                path = sources.resolve(local.local_path, settings.model_roots)
            except ModelSourceError as e:
                self.failed[name] = str(e)
                continue
            self._local[name] = local.model_copy(update={"path": path})
        # explicit routes: id -> local model name
        self._routes: dict[str, str] = {
            mid: name for name, m in self._local.items() for mid in m.serves
        }
        self.registry: Registry | None = None
        self.ready = False

    def _config(self, name: str, local: LocalModel) -> LlamaCppConfig:
        e = self.settings.engine
        return LlamaCppConfig(
            path=local.local_path,
            name=name,
            n_slots=local.slots or e.slots,
            n_ctx_seq=local.ctx_per_slot or e.ctx_per_slot,
            n_batch=e.batch_tokens,
            n_threads=e.threads if local.threads is None else local.threads,
            max_waiting=e.max_waiting,
            prefill_chunk=e.prefill_chunk,
            flash_attn=e.flash_attn,
            batch_invariant=e.batch_invariant,
            weights=e.weights,
            extra_buffers=e.extra_buffers,
            gpu_layers=e.gpu_layers if local.gpu_layers is None else local.gpu_layers,
            probe_fault=e.probe_fault,
            cache_dir=self.settings.cache_dir,
        )

    def _backend(self, name: str, local: LocalModel) -> Backend:
        max_waiting = self.settings.engine.max_waiting
        if local.upstreams:
            log.info("serving %s from %s", name, ", ".join(u.url for u in local.upstreams))
            return UpstreamBackend(
                name,
                local.upstreams,
                health_interval_s=local.health_interval_s,
                max_waiting=max_waiting,
            )
        config = self._config(name, local)
        log.info("loading %s from %s", name, local.path)
        engine: TokenEngine = (
            ProcessEngine(config)
            if self.settings.engine.isolation == "process"
            else InThreadEngine(config)
        )
        return LocalBackend(engine, local.template, max_waiting)

    def _estimate(self, name: str, local: LocalModel) -> int:
        """Bytes a model will hold once loaded (weights + KV cache), from its file alone;
        0 when the file cannot be read (its load will say why), or for an upstream model."""
        if local.upstreams:
            return 0
        config = self._config(name, local)
        try:
            meta = read_metadata(local.local_path)
            weights = compute_size(local.local_path, meta, config.weights, config.cache_dir)
        except (ModelLoadError, OSError):
            return 0
        return weights + kv_cache_bytes(meta, config.n_ctx_seq * config.n_slots)

    async def start(self) -> None:
        models = {}
        for name, local in self._local.items():
            if name in self.failed:
                continue
            # starting an upstream model only starts its health checks: always at boot
            eager = local.load == "eager" or name == self._default or bool(local.upstreams)
            models[name] = (local, eager, await asyncio.to_thread(self._estimate, name, local))
        budget = self.settings.memory_budget
        self.registry = Registry(
            models,
            self._backend,
            budget=int(budget) if budget is not None else None,
            idle_unload_seconds=self.settings.idle_unload_seconds,
            load_wait_seconds=self.settings.load_wait_seconds,
            measure=lambda b: b.memory_bytes(),
        )
        await self.registry.start()
        self.ready = True

    async def close(self) -> None:
        self.ready = False
        if self.registry is not None:
            await self.registry.close()

    @property
    def backends(self) -> dict[str, Backend]:
        """The models loaded (local) or started (upstream) now."""
        return self.registry.loaded() if self.registry is not None else {}

    def local_name_for(self, model_id: str) -> str | None:
        """Which local model answers an id, without loading anything."""
        if model_id in self._routes:
            return self._routes[model_id]
        if model_id in self.catalog:
            return self._default
        return None

    def known_ids(self) -> list[str]:
        """Every id this server resolves: catalog ids (in catalog order), then configured ids
        outside the catalog. Others are unknown (5007)."""
        ids = [spec.id for spec in self.catalog.specs]
        return ids + [mid for mid in self._routes if mid not in self.catalog]

    def answering_ids(self) -> list[str]:
        """The known ids whose local model is loaded (the others answer 503/3043)."""
        failed = self.failures()
        return [mid for mid in self.known_ids() if self.local_name_for(mid) not in failed]

    def spec_for(self, model_id: str) -> ModelSpec:
        """The catalog entry of a known id (a configured id outside the catalog: a bare one)."""
        return self.catalog.get(model_id) or ModelSpec(model_id, "custom")

    def local_context(self, model_id: str) -> int | None:
        """The context window per sequence of the local model answering an id (loaded: as
        the engine found it; not loaded: as configured)."""
        name = self.local_name_for(model_id)
        if name is None:
            return None
        backend = self.backends.get(name)
        if backend is not None:
            return backend.n_ctx_seq
        if self._local[name].upstreams:
            return None
        return self._local[name].ctx_per_slot or self.settings.engine.ctx_per_slot

    def local_models(self) -> dict[str, LocalModel]:
        return dict(self._local)

    def name_for(self, model_id: str) -> str:
        """The local model answering an id, if it can: raises UnknownModel or
        ModelUnavailable (refused at load, or its engine given up)."""
        name = self.local_name_for(model_id)
        if name is None:
            raise UnknownModel(model_id)
        failure = self.failures().get(name)
        if failure is not None:
            raise ModelUnavailable(model_id, failure)
        return name

    def generation_request(
        self,
        model_id: str,
        name: str,
        inp: TextGenerationInput,
        stop: Sequence[str] = (),
        logit_bias: Sequence[tuple[int, float]] = (),
    ) -> GenerationRequest:
        """The validated request any backend takes: the chat (a prompt becomes one user turn,
        after the model's default system prompt) or a raw prompt, sampling, limits, tools."""
        spec = self.spec_for(model_id)
        prompt = None
        messages: tuple[Message, ...] | None = None
        if inp.prompt is not None and inp.raw:
            prompt = inp.prompt
        elif inp.prompt is not None:
            system = [Message("system", spec.default_system)] if spec.default_system else []
            messages = (*system, Message("user", inp.prompt))
        else:
            messages = tuple(_message(i, m) for i, m in enumerate(inp.messages or []))
        return GenerationRequest(
            max_tokens=self.max_tokens(name, inp),
            messages=messages,
            prompt=prompt,
            sampling=SamplingParams(
                temperature=inp.temperature,
                top_p=inp.top_p,
                min_p=inp.min_p,
                top_k=inp.top_k,
                seed=inp.seed,
                repetition_penalty=inp.repetition_penalty,
                frequency_penalty=inp.frequency_penalty,
                presence_penalty=inp.presence_penalty,
                logit_bias=(*logit_bias, *inp.bias()),
            ),
            json_schema=inp.json_schema,
            tools=self.tools_request(inp),
            reject_if_busy=bool(inp.options and inp.options.reject_if_busy),
            ignore_eos=inp.ignore_eos,
            stop=tuple(stop),
        )

    @staticmethod
    def tools_request(inp: TextGenerationInput) -> ToolsRequest | None:
        """The request's tools, each `parameters` checked against what the grammar supports;
        None without tools (or with tool_choice "none": the model then answers in text, and
        sees no tools)."""
        offered = inp.functions_offered()
        choice = inp.tool_choice
        if not offered or choice == "none":
            return None
        defs = []
        for path, fn in offered:
            params = fn.parameters if fn.parameters is not None else {"type": "object"}
            try:
                grammar.check_schema(params, f"{path}/parameters")
            except grammar.GrammarError as e:
                raise InvalidInput(str(e)) from e
            defs.append(Tool(fn.name, fn.description or "", params))
        if isinstance(choice, NamedToolChoice):  # the schema checked that it is offered
            choice_name = choice.function.name
        else:
            choice_name = "required" if choice == "required" else "auto"
        return ToolsRequest(tuple(defs), choice_name, inp.parallel_tool_calls)

    def limits(self, name: str) -> Limits:
        """The server's limits with the model's own overrides."""
        overrides = self._local[name].limits.model_dump(exclude_none=True)
        return self.settings.limits.model_copy(update=overrides)

    def max_tokens(self, name: str, inp: TextGenerationInput) -> int:
        """An explicit value must respect the cap; the default (256) is lowered to it."""
        cap = self.limits(name).max_tokens
        if "max_tokens" not in inp.model_fields_set:
            return min(inp.max_tokens, cap)
        if inp.max_tokens > cap:
            raise InvalidInput(f"'/max_tokens': must be at most {cap}")
        return inp.max_tokens

    def check_limits(self, name: str, inp: TextGenerationInput) -> None:
        lim = self.limits(name)
        if inp.prompt is not None and len(inp.prompt) > lim.max_prompt_chars:
            raise InvalidInput(f"'/prompt': longer than {lim.max_prompt_chars} characters")
        messages = inp.messages or []
        if len(messages) > lim.max_messages:
            raise InvalidInput(f"'/messages': more than {lim.max_messages} messages")
        for i, m in enumerate(messages):
            if len(m.text()) > lim.max_message_chars:
                raise InvalidInput(
                    f"'/messages/{i}/content': longer than {lim.max_message_chars} characters"
                )

    async def submit(
        self,
        model_id: str,
        inp: TextGenerationInput,
        stop: Sequence[str] = (),
        logit_bias: Sequence[tuple[int, float]] = (),
    ) -> tuple[Served, Generation]:
        """Resolve, check, load (if need be), template and queue. Raises RequestError or
        EngineError. The model is leased until the generation ends: it is never unloaded under
        it."""
        name = self.name_for(model_id)
        self.check_limits(name, inp)
        request = self.generation_request(model_id, name, inp, stop, logit_bias)
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
        return Served(model_id, self.spec_for(model_id), backend), generation

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
        models = self.registry.report()["models"]
        assert isinstance(models, dict)
        for name, m in models.items():
            backend = loaded.get(name)
            if name in failed:
                reasons.append(f"{name}: failed: {failed[name]}")
            elif backend is None:
                if m["load"] == "eager":
                    reasons.append(f"{name}: {m['state']}")
            elif (why := backend.unready()) is not None:
                reasons.append(f"{name}: {why}")
        return reasons

    def failures(self) -> dict[str, str]:
        """Local models that cannot answer, and why: refused at load, or given up since."""
        given_up = {n: b.failure for n, b in self.backends.items() if b.failure is not None}
        refused = self.registry.failures() if self.registry is not None else {}
        return {**self.failed, **refused, **given_up}


def _message(i: int, m: ChatMessage) -> Message:
    """A request message as the chat layer takes it: earlier calls in OpenAI's form with their
    arguments as objects, which is what chat templates expect."""
    calls = []
    for j, fn in enumerate(m.calls()):
        args: Any = fn.arguments
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                raise InvalidInput(
                    f"'/messages/{i}/tool_calls/{j}/function/arguments': not a JSON object"
                ) from None
        if not isinstance(args, dict):
            raise InvalidInput(f"'/messages/{i}/tool_calls/{j}': arguments must be an object")
        raw = (m.tool_calls or [])[j]
        call_id = getattr(raw, "id", None) or f"call_{i}_{j}"
        calls.append(
            {"id": call_id, "type": "function", "function": {"name": fn.name, "arguments": args}}
        )
    return Message(m.role, m.text(), tuple(calls), m.tool_call_id, m.name)
