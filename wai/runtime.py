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

from wai import sources, tools
from wai.catalog import EMBEDDED_NAME, Catalog, ModelSpec, embedded_model_path
from wai.chat import ChatFormat, ChatTemplateError, Message, format_for
from wai.engine import grammar
from wai.engine.base import (
    Backend,
    EngineBusy,
    EngineStats,
    EngineStopped,
    Generation,
    GenerationRequest,
    PromptTooLong,
    SamplingParams,
)
from wai.engine.gguf import ModelLoadError, kv_cache_bytes, read_metadata
from wai.engine.inthread import InThreadBackend
from wai.engine.llamacpp import LlamaCppConfig
from wai.engine.process import ProcessBackend
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
    if isinstance(e, RequestError):
        return Failure(400, BAD_INPUT, e.message)
    return Failure(500, INTERNAL, "Internal error")


@dataclass(frozen=True, slots=True)
class Served:
    """A model id as this server answers it: the catalog entry and the local model behind it."""

    model_id: str
    spec: ModelSpec
    backend: Backend
    chat: ChatFormat
    tools: tools.ToolPlan | None = None  # the request's tools, when it offers any

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
            try:
                path = sources.resolve(local.path, settings.model_roots)
            except ModelSourceError as e:
                self.failed[name] = str(e)
                continue
            self._local[name] = local.model_copy(update={"path": path})
        # explicit routes: id -> local model name
        self._routes: dict[str, str] = {
            mid: name for name, m in self._local.items() for mid in m.serves
        }
        self._formats: dict[str, tuple[Backend, ChatFormat]] = {}
        self.registry: Registry | None = None
        self._grammars_checked: set[tuple[str, int]] = set()
        self.ready = False

    def _config(self, name: str, local: LocalModel) -> LlamaCppConfig:
        e = self.settings.engine
        return LlamaCppConfig(
            path=local.path,
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
        config = self._config(name, local)
        log.info("loading %s from %s", name, local.path)
        if self.settings.engine.isolation == "process":
            return ProcessBackend(config)
        return InThreadBackend(config)

    def _estimate(self, name: str, local: LocalModel) -> int:
        """Bytes a model will hold once loaded (weights + KV cache), from its file alone;
        0 when the file cannot be read (its load will say why)."""
        config = self._config(name, local)
        try:
            meta = read_metadata(local.path)
            weights = compute_size(local.path, meta, config.weights, config.cache_dir)
        except (ModelLoadError, OSError):
            return 0
        return weights + kv_cache_bytes(meta, config.n_ctx_seq * config.n_slots)

    async def start(self) -> None:
        models = {}
        for name, local in self._local.items():
            if name in self.failed:
                continue
            eager = local.load == "eager" or name == self._default
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
        """The local models loaded now."""
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

    def _chat_format(self, name: str, backend: Backend) -> ChatFormat:
        cached = self._formats.get(name)
        if cached is None or cached[0] is not backend:  # first load, or loaded again
            fmt = format_for(self._local[name].template, backend.chat_template, backend.tokenizer)
            self._formats[name] = cached = (backend, fmt)
        return cached[1]

    def prompt_tokens(self, served: Served, inp: TextGenerationInput) -> list[int]:
        tok = served.backend.tokenizer
        if inp.prompt is not None and inp.raw:
            ids = tok.tokenize(inp.prompt, add_special=True, parse_special=True)
            # Text the vocabulary has no token for (e.g. a lone control character) leaves
            # nothing to continue from: continue from the start of a text, as for "".
            return ids or ([tok.bos_id] if tok.bos_id >= 0 else [])
        if inp.prompt is not None:
            messages = [Message("user", inp.prompt)]
            if served.spec.default_system:
                messages.insert(0, Message("system", served.spec.default_system))
        else:
            messages = [_message(i, m) for i, m in enumerate(inp.messages or [])]
        plan = served.tools
        native = tools.syntax_for(served.chat)[1]
        if (plan is not None and not plan.native) or (not native and tools.needs_rewrite(messages)):
            # a template that knows no tools: wai's system message, plain turns for the history
            messages = tools.generic_messages(messages, plan.tools if plan is not None else ())
        offered = [t.openai() for t in plan.tools] if plan is not None and plan.native else None
        try:
            return served.chat.encode(messages, tok, offered)
        except ChatTemplateError as e:
            raise InvalidInput(str(e)) from e

    def _checked(self, served: Served, gbnf: str) -> str:
        """A grammar, checked by llama.cpp's parser for this model's vocabulary (once per
        grammar and model). Raises GrammarError."""
        key = (served.local_name, hash(gbnf))
        if key not in self._grammars_checked:
            grammar.check_grammar(served.backend.tokenizer.vocab, gbnf)
            self._grammars_checked.add(key)
        return gbnf

    def _grammar(
        self, served: Served, schema: dict[str, Any] | None
    ) -> tuple[str | None, str | None]:
        """The grammar the output must follow (JSON mode's, or the tool calls'), and its lazy
        trigger. Raises InvalidInput naming what is wrong."""
        if served.tools is not None:
            try:
                gbnf, trigger = served.tools.grammar()
                return self._checked(served, gbnf), trigger
            except grammar.GrammarError as e:
                raise InvalidInput(f"'/tools': {e}") from e
        if schema is None:
            return None, None
        try:
            return self._checked(served, grammar.schema_grammar(schema)), None
        except grammar.GrammarError as e:
            raise InvalidInput(f"'/response_format': {e}") from e

    @staticmethod
    def tool_plan(chat: ChatFormat, inp: TextGenerationInput) -> tools.ToolPlan | None:
        """The request's tools as the engine will enforce them; None without tools (or with
        tool_choice "none": the model then answers in text, and sees no tools)."""
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
            defs.append(tools.Tool(fn.name, fn.description or "", params))
        named = choice.function.name if isinstance(choice, NamedToolChoice) else None
        syntax, native = tools.syntax_for(chat)
        return tools.ToolPlan(
            syntax=syntax,
            native=native,
            tools=tuple(defs),
            allowed=tuple(d for d in defs if named is None or d.name == named),
            required=choice == "required" or named is not None,
            parallel=inp.parallel_tool_calls and named is None,
        )

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

    @staticmethod
    def check_logit_bias(served: Served, logit_bias: Sequence[tuple[int, float]]) -> None:
        n_vocab = served.backend.tokenizer.n_vocab
        for token, _ in logit_bias:
            if not 0 <= token < n_vocab:
                raise InvalidInput(
                    f"'/logit_bias': token {token} is not in the model's "
                    f"vocabulary (0..{n_vocab - 1})"
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
        assert self.registry is not None, "Runtime.start() first"
        try:
            backend = await self.registry.acquire(name)
        except ModelLoadError as e:
            raise ModelUnavailable(model_id, str(e)) from e
        try:
            if backend.failure is not None:
                raise ModelUnavailable(model_id, backend.failure)
            chat = self._chat_format(name, backend)
            plan = self.tool_plan(chat, inp)
            served = Served(model_id, self.spec_for(model_id), backend, chat, plan)
            logit_bias = [*logit_bias, *inp.bias()]
            self.check_logit_bias(served, logit_bias)
            schema = inp.json_schema
            # compiling a schema (and a large input) happens on a worker thread
            gbnf, trigger = (
                await asyncio.to_thread(self._grammar, served, schema)
                if schema is not None or plan is not None
                else (None, None)
            )
            if _size(inp) > OFF_LOOP_CHARS:  # templating and tokenizing a large input
                tokens = await asyncio.to_thread(self.prompt_tokens, served, inp)
            else:
                tokens = self.prompt_tokens(served, inp)
            request = GenerationRequest(
                prompt_tokens=tokens,
                max_tokens=self.max_tokens(name, inp),
                sampling=SamplingParams(
                    temperature=inp.temperature,
                    top_p=inp.top_p,
                    min_p=inp.min_p,
                    top_k=inp.top_k,
                    seed=inp.seed,
                    repetition_penalty=inp.repetition_penalty,
                    frequency_penalty=inp.frequency_penalty,
                    presence_penalty=inp.presence_penalty,
                    logit_bias=tuple(logit_bias),
                    grammar=gbnf,
                    trigger=trigger,
                ),
                reject_if_busy=bool(inp.options and inp.options.reject_if_busy),
                ignore_eos=inp.ignore_eos,
                stop=tuple(stop),
            )
            generation = backend.submit(request)
        except BaseException:
            self.registry.release(name)
            raise
        registry = self.registry
        generation.add_done_callback(lambda: registry.release(name))
        return served, generation

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
            else:
                if backend.info.get("state", "up") != "up":
                    reasons.append(f"{name}: engine {backend.info.get('state')}")
                waiting = backend.stats().waiting
                if waiting >= self.settings.engine.max_waiting:
                    reasons.append(f"{name}: queue full ({waiting} waiting)")
        return reasons

    def failures(self) -> dict[str, str]:
        """Local models that cannot answer, and why: refused at load, or given up since."""
        given_up = {n: b.failure for n, b in self.backends.items() if b.failure is not None}
        refused = self.registry.failures() if self.registry is not None else {}
        return {**self.failed, **refused, **given_up}


OFF_LOOP_CHARS = 16_384  # inputs longer than this are templated and tokenized on a worker thread


def _size(inp: TextGenerationInput) -> int:
    if inp.prompt is not None:
        return len(inp.prompt)
    return sum(len(m.text()) for m in inp.messages or [])


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
