"""Tool calls: how each model family writes one, the grammar that keeps it valid, and the parser
that reads it back.

A family is recognised from the model's chat template:

- `hermes`: the template mentions `<tool_call>` (Hermes 2 Pro, Qwen 2.5/3). A call:
  `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, several in a row.
- `llama3`: the template mentions `<|python_tag|>` or the `ipython` role (Llama 3.1+). A call
  is the whole answer: `{"name": ..., "parameters": {...}}`, several separated by `;`.
- `mistral`: the template mentions `[TOOL_CALLS]` (Mistral Nemo, Small, v0.3). A call:
  `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`.
- `generic`: any other template, or one that ignores tools: Hermes' syntax, taught by a
  system message wai adds.

The template renders the tools itself when it supports them (`native`); otherwise wai adds the
tool list and the call syntax to the system message, and turns tool calls and results in the
history into plain turns any template can render.

The grammar covers the call syntax from its opener on. With `tool_choice` "required" (or a
named function) it applies from the first token; with "auto" it is lazy: free text until the
opener appears (the engine watches for `trigger`), then the call is held to the grammar, so a
call, once started, has a known name and arguments valid against that tool's parameters.
"""

from __future__ import annotations

import abc
import json
import re
import secrets
import string
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from wai.backends.base import Delta, Event, Finished, Tool, ToolCall, ToolCalls, ToolsRequest
from wai.backends.local import json_schema
from wai.backends.local.chat import ChatFormat, JinjaFormat, Message

MAX_PARALLEL = 8  # calls in one answer, with parallel_tool_calls

# GBNF around the call object (rule `call`); `tws` is bounded whitespace between the parts
_TWS = "tws ::= [ \\t\\n]{0,4}"


class Syntax(abc.ABC):
    """One family's call syntax. Subclasses give the opener, the grammar around `call` and
    the parser of the calls' text."""

    name = ""
    args_key = "arguments"
    # regex (bytes semantics, searched in the generated text): group 1 starts the grammar
    trigger = ""

    @abc.abstractmethod
    def root(self, parallel: bool) -> str: ...

    @abc.abstractmethod
    def call_start(self, text: str) -> int | None:
        """Where a call starts in the text, if one does."""

    @abc.abstractmethod
    def hold(self, text: str) -> int:
        """While streaming: the index from which the text may still turn out to start a
        call, so it is held back (len(text): nothing held)."""

    @abc.abstractmethod
    def calls(self, text: str) -> list[dict[str, Any]] | None:
        """The call objects in the text from `call_start` on; None when it does not parse."""

    @abc.abstractmethod
    def render(self, calls: Sequence[dict[str, Any]]) -> str:
        """Earlier calls, as the model writes them (for the history of a generic template)."""


def _repeated(one: str, separator: str, parallel: bool) -> str:
    """GBNF for one call, or (parallel) up to MAX_PARALLEL of them with `separator` between."""
    if not parallel:
        return one
    between = f'tws "{separator}" tws' if separator else "tws"
    return f"{one} ({between} {one}){{0,{MAX_PARALLEL - 1}}}"


def _partial_suffix(text: str, literal: str) -> int:
    """The index of the longest suffix of `text` that is a proper prefix of `literal`."""
    for k in range(min(len(literal) - 1, len(text)), 0, -1):
        if literal.startswith(text[-k:]):
            return len(text) - k
    return len(text)


def _decode_all(text: str, sep: str = "") -> list[Any] | None:
    """Consecutive JSON values in `text` (separated by whitespace and `sep`); None if any part
    is not JSON."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    i = 0
    while True:
        while i < len(text) and (text[i].isspace() or (sep and text[i] == sep)):
            i += 1
        if i == len(text):
            return values
        try:
            value, i = decoder.raw_decode(text, i)
        except ValueError:
            return None
        values.append(value)


class Hermes(Syntax):
    name = "hermes"
    OPEN, CLOSE = "<tool_call>", "</tool_call>"
    trigger = "(<tool_call>)"

    def root(self, parallel: bool) -> str:
        return _repeated('"<tool_call>" tws call tws "</tool_call>"', "", parallel) + " tws"

    def call_start(self, text: str) -> int | None:
        i = text.find(self.OPEN)
        return None if i < 0 else i

    def hold(self, text: str) -> int:
        return _partial_suffix(text, self.OPEN)

    def calls(self, text: str) -> list[dict[str, Any]] | None:
        out: list[dict[str, Any]] = []
        for block in text.split(self.OPEN)[1:]:
            body, closed, rest = block.partition(self.CLOSE)
            if (closed and rest.strip()) or not body.strip():
                return None
            values = _decode_all(body)
            if values is None or len(values) != 1:
                return None
            value = values[0]
            # SmolLM2 and some fine-tunes put a list of calls in one block
            out += value if isinstance(value, list) else [value]
        return out

    def render(self, calls: Sequence[dict[str, Any]]) -> str:
        return "\n".join(
            f"{self.OPEN}\n{json.dumps(c, ensure_ascii=False)}\n{self.CLOSE}" for c in calls
        )


class Llama3(Syntax):
    name = "llama3"
    args_key = "parameters"
    # the whole answer is the call: `{"name"` at its start (after an optional <|python_tag|>,
    # a special token the client's text does not show)
    trigger = r'\A\s*((?:<\|python_tag\|>)?\s*\{\s*"name"\s*:)'
    _START = re.compile(r'\s*(?:<\|python_tag\|>)?\s*\{\s*"name"\s*:')
    _ANCHOR = '{"name":'

    def root(self, parallel: bool) -> str:
        return f'("<|python_tag|>" tws)? {_repeated("call", ";", parallel)} tws'

    def call_start(self, text: str) -> int | None:
        return 0 if self._START.match(text) else None

    def hold(self, text: str) -> int:
        compact = re.sub(r"\s+", "", text)
        starts = (self._ANCHOR, "<|python_tag|>" + self._ANCHOR)
        return 0 if any(s.startswith(compact) for s in starts) else len(text)

    def calls(self, text: str) -> list[dict[str, Any]] | None:
        values = _decode_all(text.replace("<|python_tag|>", ""), sep=";")
        if not values or not all(isinstance(v, dict) for v in values):
            return None
        return values

    def render(self, calls: Sequence[dict[str, Any]]) -> str:
        return "; ".join(json.dumps(c, ensure_ascii=False) for c in calls)


class Mistral(Syntax):
    name = "mistral"
    OPEN = "[TOOL_CALLS]"
    trigger = r"(\[TOOL_CALLS\])"
    # [TOOL_CALLS] is a control token: the client's text may show only the list after it
    _BARE = re.compile(r'\s*\[\s*\{\s*"name"\s*:')
    _ANCHOR = '[{"name":'

    def root(self, parallel: bool) -> str:
        return f'"[TOOL_CALLS]" tws "[" tws {_repeated("call", ",", parallel)} tws "]" tws'

    def call_start(self, text: str) -> int | None:
        i = text.find(self.OPEN)
        if i >= 0:
            return i
        return 0 if self._BARE.match(text) else None

    def hold(self, text: str) -> int:
        if self._ANCHOR.startswith(re.sub(r"\s+", "", text)):
            return 0
        return _partial_suffix(text, self.OPEN)

    def calls(self, text: str) -> list[dict[str, Any]] | None:
        values = _decode_all(text.replace(self.OPEN, "", 1))
        if values is None or len(values) != 1 or not isinstance(values[0], list):
            return None
        return list(values[0])

    def render(self, calls: Sequence[dict[str, Any]]) -> str:
        return self.OPEN + json.dumps(list(calls), ensure_ascii=False)


class Generic(Hermes):
    """Hermes' syntax for a template that does not know tools: wai's system message teaches it."""

    name = "generic"


SYNTAXES: dict[str, Syntax] = {s.name: s for s in (Hermes(), Llama3(), Mistral(), Generic())}


def syntax_for(chat: ChatFormat) -> tuple[Syntax, bool]:
    """The call syntax of a model, from its chat template, and whether the template renders
    tools itself (native) or wai's system message must describe them."""
    if not isinstance(chat, JinjaFormat) or not chat.supports_tools:
        return SYNTAXES["generic"], False
    src = chat.source
    if "[TOOL_CALLS]" in src:
        return SYNTAXES["mistral"], True
    if "<tool_call>" in src:
        return SYNTAXES["hermes"], True
    if "<|python_tag|>" in src or ("<|start_header_id|>" in src and "ipython" in src):
        return SYNTAXES["llama3"], True
    return SYNTAXES["generic"], False


GENERIC_PROMPT = """You can call functions to answer the user. The functions are listed below \
as JSON, within <tools></tools>:
<tools>
{tools}
</tools>
To call one, answer with nothing but a JSON object naming the function and giving its \
arguments, inside <tool_call></tool_call> tags:
<tool_call>
{{"name": <function name>, "arguments": <arguments as a JSON object>}}
</tool_call>
The results come back in <tool_response></tool_response> tags. Otherwise, answer normally."""


def generic_messages(messages: Sequence[Message], tools: Sequence[Tool]) -> list[Message]:
    """The conversation for a template without tool support: the tools in the system message,
    earlier calls as the assistant's text, tool results as user turns (one per run of them)."""
    syntax = SYNTAXES["generic"]
    out: list[Message] = []
    for m in messages:
        if m.role == "tool":
            result = f"<tool_response>\n{m.content}\n</tool_response>"
            if out and out[-1].role == "user" and out[-1].content.endswith("</tool_response>"):
                out[-1] = Message("user", f"{out[-1].content}\n{result}")
            else:
                out.append(Message("user", result))
        elif m.tool_calls:
            calls = [
                {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                for c in m.tool_calls
            ]
            text = "\n".join(t for t in (m.content, syntax.render(calls)) if t)
            out.append(Message(m.role, text))
        else:
            out.append(Message(m.role, m.content))
    if tools:
        listing = "\n".join(json.dumps(t.openai(), ensure_ascii=False) for t in tools)
        prompt = GENERIC_PROMPT.format(tools=listing)
        if out and out[0].role == "system":
            out[0] = Message("system", f"{out[0].content}\n\n{prompt}")
        else:
            out.insert(0, Message("system", prompt))
    return out


def needs_rewrite(messages: Sequence[Message]) -> bool:
    return any(m.role == "tool" or m.tool_calls for m in messages)


def call_schema(tools: Sequence[Tool], syntax: Syntax) -> dict[str, Any]:
    """The JSON Schema of one call object: a known name with arguments valid for it."""
    alternatives = [
        {
            "type": "object",
            "properties": {"name": {"const": t.name}, syntax.args_key: t.parameters},
            "required": ["name", syntax.args_key],
            "additionalProperties": False,
        }
        for t in tools
    ]
    return alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}


def call_grammar(tools: Sequence[Tool], syntax: Syntax, parallel: bool) -> str:
    """The GBNF of the calls. Raises json_schema.GrammarError naming a bad keyword."""
    root = syntax.root(parallel)
    schema = call_schema(tools, syntax)
    return json_schema.wrapped_grammar(schema, "call", root + "\n" + _TWS)


def _call_id(syntax: Syntax) -> str:
    if syntax.name == "mistral":  # Mistral's templates insist on 9 alphanumerics
        return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(9))
    return "call_" + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class ToolPlan:
    """One request's tools: what the engine enforces and how the answer is read back."""

    syntax: Syntax
    native: bool
    tools: tuple[Tool, ...]  # what the model is shown
    allowed: tuple[Tool, ...]  # what it may call (tool_choice naming one: that one)
    required: bool  # the output is a call (tool_choice "required" or a named function)
    parallel: bool

    @property
    def trigger(self) -> str | None:
        """What starts the grammar (None: it applies from the first token)."""
        return None if self.required else self.syntax.trigger

    def grammar(self) -> str:
        """The grammar of the calls the answer may make. Raises json_schema.GrammarError."""
        return call_grammar(self.allowed, self.syntax, self.parallel)

    def key(self) -> list[Any]:
        """What the grammar is built from (a cache key)."""
        return [self.syntax.name, self.parallel, [t.openai() for t in self.allowed]]

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        """The answer's text and its calls. Text that starts a call but does not parse as
        one (cut off by max_tokens) stays text."""
        start = self.syntax.call_start(text)
        if start is None:
            return text, []
        found = self.syntax.calls(text[start:])
        calls = [c for c in (self._call(v) for v in found or []) if c is not None]
        if not found or len(calls) != len(found):
            return text, []
        return text[:start].rstrip(), calls

    def _call(self, value: Any) -> ToolCall | None:
        if not isinstance(value, dict):
            return None
        name = value.get("name")
        args = value.get(self.syntax.args_key, value.get("arguments", value.get("parameters")))
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                return None
        if args is None:
            args = {}
        if not isinstance(name, str) or name not in {t.name for t in self.allowed}:
            return None
        if not isinstance(args, dict):
            return None
        return ToolCall(_call_id(self.syntax), name, args)

    def stream(self) -> ToolStream:
        return ToolStream(self)


async def split_calls(events: AsyncIterable[Event], plan: ToolPlan | None) -> AsyncIterator[Event]:
    """A generation's events with its tool calls taken out of the text: text that may start a
    call is held back (and empty deltas dropped), what is left of it comes before the
    Finished, then the calls, if any, as one `ToolCalls`. Without a plan, the events as they are."""
    if plan is None:
        async for ev in events:
            yield ev
        return
    stream = plan.stream()
    async for ev in events:
        if isinstance(ev, Delta):
            text = stream.push(ev.text)
            if text:
                yield Delta(text, ev.token)
            continue
        if isinstance(ev, Finished):
            rest, calls = stream.finish()
            if rest:
                yield Delta(rest, -1)
            if calls:
                yield ToolCalls(calls)
        yield ev


class ToolStream:
    """Streams an answer's text while holding back what may be the start of a call; the calls
    come out at the end, parsed exactly as `ToolPlan.parse` parses the whole text."""

    def __init__(self, plan: ToolPlan) -> None:
        self.plan = plan
        self._text = ""
        self._sent = 0
        self._in_call = False

    def push(self, text: str) -> str:
        """The text that can go to the client now."""
        self._text += text
        if self._in_call:
            return ""
        syntax = self.plan.syntax
        start = syntax.call_start(self._text)
        if start is not None:
            self._in_call = True
            upto = len(self._text[:start].rstrip())
        else:
            # hold back a possible call opener and the whitespace before it (dropped before a
            # call)
            upto = len(self._text[: syntax.hold(self._text)].rstrip())
        out = self._text[self._sent : max(upto, self._sent)]
        self._sent = max(upto, self._sent)
        return out

    def finish(self) -> tuple[str, list[ToolCall]]:
        """The text still held back, and the calls."""
        content, calls = self.plan.parse(self._text)
        return content[self._sent :], calls


def plan_for(chat: ChatFormat, request: ToolsRequest) -> ToolPlan:
    """How this model's template takes a request's tools, and what its grammar allows."""
    syntax, native = syntax_for(chat)
    named = request.named
    return ToolPlan(
        syntax=syntax,
        native=native,
        tools=request.tools,
        allowed=tuple(t for t in request.tools if named is None or t.name == named),
        required=request.required,
        parallel=request.parallel and named is None,
    )
