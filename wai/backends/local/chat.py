"""Chat messages -> prompt token ids.

Two ways:
- `Llama2Format`: Meta's reference algorithm (llama/generation.py), built at the token level so
  BOS/EOS are real ids, never the literal text "<s>" (which SentencePiece would split).
- `JinjaFormat`: the model's own template from its GGUF metadata, rendered in Jinja's
  ImmutableSandboxedEnvironment. A template shipped in a model file is untrusted input; an
  unsandboxed render is remote code execution (CVE-2024-34359).
"""

from __future__ import annotations

import abc
import functools
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from wai.backends.base import Message
from wai.engines.llamacpp.types import Tokenizer

__all__ = ["ChatFormat", "ChatTemplateError", "Message", "format_for"]


class ChatTemplateError(ValueError):
    """The conversation cannot be rendered with this model's template."""


class ChatFormat(abc.ABC):
    name: str

    @abc.abstractmethod
    def encode(
        self, messages: Sequence[Message], tok: Tokenizer, tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        """Prompt token ids for a conversation, ready for the assistant's turn; `tools`
        (OpenAI-style function definitions) for a template that renders them."""


# --- Llama 2 --------------------------------------------------------------------------------

B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"


class Llama2Format(ChatFormat):
    name = "llama2"

    def encode(
        self, messages: Sequence[Message], tok: Tokenizer, tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        dialog = list(messages)
        if dialog and dialog[0].role == "system":
            if len(dialog) < 2 or dialog[1].role != "user":
                raise ChatTemplateError("a system message must be followed by a user message")
            merged = B_SYS + dialog[0].content + E_SYS + dialog[1].content
            dialog = [Message("user", merged), *dialog[2:]]
        for i, m in enumerate(dialog):
            expected = "user" if i % 2 == 0 else "assistant"
            if m.role != expected:
                raise ChatTemplateError(
                    f"messages[{i}] has role '{m.role}': after an optional system message, "
                    "roles must alternate user/assistant and end with user"
                )
        if not dialog or dialog[-1].role != "user":
            raise ChatTemplateError("the last message must have role 'user'")

        ids: list[int] = []
        for user, answer in zip(dialog[:-1:2], dialog[1::2], strict=True):
            text = f"{B_INST} {user.content.strip()} {E_INST} {answer.content.strip()} "
            ids += [tok.bos_id, *self._plain(text, tok), tok.eos_id]
        last = f"{B_INST} {dialog[-1].content.strip()} {E_INST}"
        return [*ids, tok.bos_id, *self._plain(last, tok)]

    @staticmethod
    def _plain(text: str, tok: Tokenizer) -> list[int]:
        # add_special=False: BOS/EOS are placed by the algorithm. parse_special=False: a user
        # typing "</s>" gets the characters, not an end-of-sequence token.
        return tok.tokenize(text, add_special=False, parse_special=False)


# --- Jinja templates from the model ---------------------------------------------------------


# The environment transformers renders chat templates in (apply_chat_template), which is what
# model authors test against: trim/lstrip blocks, the loopcontrols extension ({% break %}), a
# {% generation %} block (transformers uses it to mark assistant tokens; here it renders its
# body), a `tojson` that leaves non-ASCII text and HTML characters alone, and the globals
# raise_exception and strftime_now. Unlike plain Jinja it stays immutable and sandboxed.


def _raise_exception(message: str) -> NoReturn:
    raise ChatTemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


class GenerationBlock(jinja2.ext.Extension):
    """{% generation %}…{% endgeneration %}: renders its body, nothing else."""

    tags = {"generation"}  # noqa: RUF012 (jinja2 declares it a class-level set)

    def parse(self, parser: Parser) -> list[nodes.Node]:
        next(parser.stream)
        body: list[nodes.Node] = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return body


class _Sandbox(ImmutableSandboxedEnvironment):
    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        # Jinja's default hands back an Undefined that prints as "": reaching for an unsafe
        # attribute (__class__, __globals__, ...) is an attack, not a typo, so refuse it.
        raise SecurityError(
            f"access to attribute {attribute!r} of a {type(obj).__name__!r} object is unsafe"
        )


def template_environment() -> ImmutableSandboxedEnvironment:
    env = _Sandbox(
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.Undefined,
        extensions=[jinja2.ext.loopcontrols, GenerationBlock],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


class JinjaFormat(ChatFormat):
    name = "jinja"

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        self.source = source
        try:
            self._template = template_environment().from_string(source)
        except TemplateError as e:
            raise ChatTemplateError(f"the model's chat template does not parse: {e}") from e
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, messages: Sequence[Message], tools: list[dict[str, Any]] | None = None) -> str:
        """The prompt text. `tools` (OpenAI-style function definitions), when there are any,
        reach the template as `tools` (else None, as transformers passes it), and as JSON text
        in `functions` for templates that read that name (firefunction-v2; "" when none, as
        llama.cpp passes it), plus `datetime`, which firefunction-v2 reads too."""
        context: dict[str, Any] = {
            "messages": [m.as_dict() for m in messages],
            "add_generation_prompt": True,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "tools": tools or None,
            "functions": json.dumps(tools, indent=2) if tools else "",
            # firefunction-v2 prints it; llama.cpp passes it in this format
            "datetime": datetime.now(UTC).strftime("%b %d %Y %H:%M:%S GMT"),
        }
        try:
            return self._template.render(context)
        except ChatTemplateError:
            raise
        except SecurityError as e:
            raise ChatTemplateError(f"the model's chat template was refused: {e}") from e
        except Exception as e:  # a broken template is the model's fault, not a server crash
            raise ChatTemplateError(f"the model's chat template failed: {e}") from e

    @functools.cached_property
    def supports_tools(self) -> bool:
        """Whether the template renders tool definitions (llama.cpp's test: a probe tool's
        name shows up in the prompt)."""
        probe = {"type": "function", "function": {"name": "wai_probe_tool_5e1f", "parameters": {}}}
        try:
            return "wai_probe_tool_5e1f" in self.render([Message("user", "hi")], [probe])
        except ChatTemplateError:
            return False

    def encode(
        self, messages: Sequence[Message], tok: Tokenizer, tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        text = self.render(messages, tools)
        # Templates that print bos_token themselves must not get a second one from tokenize.
        starts_with_bos = bool(self.bos_token) and text.startswith(self.bos_token)
        return tok.tokenize(text, add_special=not starts_with_bos, parse_special=True)


# ChatML, for models that ship no template at all.
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class RefusedFormat(ChatFormat):
    """A model whose template cannot be used: chat requests get the reason; raw prompts work."""

    name = "refused"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def encode(
        self, messages: Sequence[Message], tok: Tokenizer, tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        raise ChatTemplateError(self.reason)


NO_TEMPLATE = (
    'this model has no chat template (a base model?): send a raw prompt ("raw": true), or '
    "set `template` for it in the configuration"
)


def format_for(kind: str, metadata_template: str | None, tok: Tokenizer) -> ChatFormat:
    """The chat format a local model uses: 'llama2', 'chatml', or 'auto' (the GGUF's template;
    a GGUF without one refuses chat: guessing a format for a base model only produces noise)."""
    if kind == "llama2":
        return Llama2Format()
    if kind == "auto" and not metadata_template:
        return RefusedFormat(NO_TEMPLATE)
    source = metadata_template if kind == "auto" and metadata_template else CHATML
    bos = tok.token_text(tok.bos_id) if tok.bos_id >= 0 else ""
    eos = tok.token_text(tok.eos_id) if tok.eos_id >= 0 else ""
    try:
        return JinjaFormat(source, bos_token=bos, eos_token=eos)
    except ChatTemplateError as e:
        return RefusedFormat(str(e))
