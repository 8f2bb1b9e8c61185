"""A model served by llama.cpp on this machine: the templating, tokenizing and grammars in front
of a `TokenEngine` (in its own supervised process, or on a thread of this one).

`submit` turns a validated `GenerationRequest` into prompt tokens with the model's chat template
(or its raw prompt), compiles the grammar its JSON schema or tools need, and queues it; the
answer's tool calls are read back out of the text here, so the runtime and the web layer only
ever see `Delta`, `ToolCalls`, `Finished` and `Failed`, as from an upstream server.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Literal

from wai.backends.base import (
    Event,
    Generation,
    GenerationRequest,
    Message,
    TaskRequest,
)
from wai.backends.local import tools
from wai.backends.local.chat import ChatFormat, ChatTemplateError, format_for
from wai.backends.local.engine_backed import EngineBacked
from wai.backends.local.json_schema import GrammarCache, GrammarError, schema_grammar
from wai.engines.llamacpp.types import TokenEngine, TokenRequest
from wai.errors import InvalidInput

# inputs longer than this are templated and tokenized on a worker thread
OFF_LOOP_CHARS = 16_384


class LocalBackend(EngineBacked[TokenEngine]):
    def __init__(
        self,
        engine: TokenEngine,
        template: Literal["auto", "llama2", "chatml"] = "auto",
        max_waiting: int = 64,
    ) -> None:
        super().__init__(engine, max_waiting)
        self._template = template
        self._chat: ChatFormat | None = None
        self._grammars: GrammarCache | None = None

    @property
    def n_vocab(self) -> int | None:
        return self.engine.tokenizer.n_vocab

    @property
    def chat(self) -> ChatFormat:
        if self._chat is None:
            self._chat = format_for(
                self._template, self.engine.chat_template, self.engine.tokenizer
            )
        return self._chat

    async def start(self) -> None:
        await self.engine.start()
        self._chat = None  # read from the model once it is loaded
        self._grammars = GrammarCache(self.engine.tokenizer.vocab)

    async def submit(self, request: TaskRequest) -> Generation[Event]:
        if not isinstance(request, GenerationRequest):
            raise InvalidInput(f"{self.name} generates text: it embeds nothing")
        self._check_logit_bias(request.sampling.logit_bias)
        plan = tools.plan_for(self.chat, request.tools) if request.tools is not None else None
        gbnf, trigger = (
            await asyncio.to_thread(self._grammar, plan, request.json_schema)
            if plan is not None or request.json_schema is not None
            else (None, None)
        )
        if request.size() > OFF_LOOP_CHARS:
            tokens = await asyncio.to_thread(self.prompt_tokens, request, plan)
        else:
            tokens = self.prompt_tokens(request, plan)
        generation = self.engine.submit(
            TokenRequest(
                prompt_tokens=tokens,
                max_tokens=request.max_tokens,
                sampling=dataclasses.replace(request.sampling, grammar=gbnf, trigger=trigger),
                reject_if_busy=request.reject_if_busy,
                ignore_eos=request.ignore_eos,
                background=request.background,
                stop=request.stop,
                session=request.session,
                final_only=not request.stream,
            )
        )
        if plan is None:
            return generation
        # the calls taken out of the text: text that may start one is held back
        return Generation(tools.split_calls(generation, plan), generation.cancel)

    def prompt_tokens(
        self, request: GenerationRequest, plan: tools.ToolPlan | None = None
    ) -> list[int]:
        tok = self.engine.tokenizer
        if request.prompt is not None:
            ids = tok.tokenize(request.prompt, add_special=True, parse_special=True)
            # Text the vocabulary has no token for (e.g. a lone control character) leaves
            # nothing to continue from: continue from the start of a text, as for "".
            return ids or ([tok.bos_id] if tok.bos_id >= 0 else [])
        messages: Sequence[Message] = request.messages or ()
        native = tools.syntax_for(self.chat)[1]
        if (plan is not None and not plan.native) or (not native and tools.needs_rewrite(messages)):
            # a template that knows no tools: wai's system message, plain turns for the history
            messages = tools.generic_messages(messages, plan.tools if plan is not None else ())
        offered = [t.openai() for t in plan.tools] if plan is not None and plan.native else None
        try:
            return self.chat.encode(messages, tok, offered)
        except ChatTemplateError as e:
            raise InvalidInput(str(e)) from e

    def _check_logit_bias(self, logit_bias: Sequence[tuple[int, float]]) -> None:
        n_vocab = self.engine.tokenizer.n_vocab
        for token, _ in logit_bias:
            if not 0 <= token < n_vocab:
                raise InvalidInput(
                    f"'/logit_bias': token {token} is not in the model's "
                    f"vocabulary (0..{n_vocab - 1})"
                )

    def _grammar(
        self, plan: tools.ToolPlan | None, schema: dict[str, object] | None
    ) -> tuple[str | None, str | None]:
        """The grammar the output must follow (the tool calls', or JSON mode's), checked by
        llama.cpp's parser for this model's vocabulary, and its lazy trigger. Raises
        InvalidInput naming what is wrong."""
        assert self._grammars is not None, "start() first"
        if plan is not None:
            try:
                return self._grammars.get(["tools", plan.key()], plan.grammar), plan.trigger
            except GrammarError as e:
                raise InvalidInput(f"'/tools': {e}") from e
        if schema is None:
            return None, None
        try:
            return self._grammars.get(["json", schema], lambda: schema_grammar(schema)), None
        except GrammarError as e:
            raise InvalidInput(f"'/response_format': {e}") from e
