"""Chat formats: Meta's Llama 2 reference vectors (spec §8.4) on a real Llama SPM vocabulary, and
the Jinja sandbox around templates that come from model files."""

from __future__ import annotations

from pathlib import Path

import pytest

from wai.backends.local.chat import ChatTemplateError, JinjaFormat, Llama2Format, Message
from wai.engines.llamacpp.gguf import LlamaTokenizer, load_tokenizer

# llama.cpp's vocab-only Llama SPM GGUF (MIT), from the sources in the llama-cpp-python sdist.
VOCAB = Path(__file__).parent / "data" / "ggml-vocab-llama-spm.gguf"


@pytest.fixture(scope="module")
def llama_tok() -> LlamaTokenizer:
    return load_tokenizer(VOCAB)


SYS = [
    3532,
    14816,
    29903,
    6778,
    13,
    3492,
    526,
    1935,
    344,
    29889,
    13,
    29966,
    829,
    14816,
    29903,
    6778,
    13,
    13,
]


def test_vector_1_user_only(llama_tok: LlamaTokenizer) -> None:
    ids = Llama2Format().encode([Message("user", "Hello")], llama_tok)
    assert ids == [1, 518, 25580, 29962, 15043, 518, 29914, 25580, 29962]


def test_vector_2_system_and_user(llama_tok: LlamaTokenizer) -> None:
    ids = Llama2Format().encode(
        [Message("system", "You are terse."), Message("user", "Hi")], llama_tok
    )
    assert ids == [1, 518, 25580, 29962, *SYS, 18567, 518, 29914, 25580, 29962]


def test_vector_3_multi_turn(llama_tok: LlamaTokenizer) -> None:
    ids = Llama2Format().encode(
        [
            Message("system", "You are terse."),
            Message("user", "Hi"),
            Message("assistant", "Hello."),
            Message("user", "Bye"),
        ],
        llama_tok,
    )
    assert ids == [
        1,
        518,
        25580,
        29962,
        *SYS,
        18567,
        518,
        29914,
        25580,
        29962,
        15043,
        29889,
        29871,
        2,
        1,
        518,
        25580,
        29962,
        2648,
        29872,
        518,
        29914,
        25580,
        29962,
    ]


def test_llama2_literal_special_text_stays_text(llama_tok: LlamaTokenizer) -> None:
    ids = Llama2Format().encode([Message("user", "</s> <s>")], llama_tok)
    assert ids.count(2) == 0 and ids.count(1) == 1


@pytest.mark.parametrize(
    "messages",
    [
        [Message("assistant", "hi")],
        [Message("user", "a"), Message("user", "b")],
        [Message("system", "s")],
        [Message("user", "a"), Message("assistant", "b")],
        [Message("tool", "x")],
    ],
)
def test_llama2_rejects_what_the_reference_rejects(
    llama_tok: LlamaTokenizer, messages: list[Message]
) -> None:
    with pytest.raises(ChatTemplateError):
        Llama2Format().encode(messages, llama_tok)


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_jinja_renders_a_chat_template() -> None:
    text = JinjaFormat(CHATML).render([Message("user", "Hi")])
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize(
    "source",
    [
        # the CVE-2024-34359 shape: reach os through object internals
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.__class__.__init__.__globals__ }}",
        "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
        "{{ cycler.__init__.__globals__.os.system('true') }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ raise_exception.__globals__ }}",
        "{{ strftime_now.__globals__['__builtins__'] }}",
        "{{ os.system('true') }}",
        "{{ self.__init__.__globals__.__builtins__.__import__('os') }}",
        # ImmutableSandboxedEnvironment: no mutation of data passed in
        "{{ messages.append({'role': 'x'}) }}",
        "{% set ns = namespace(x=1) %}{{ ns.__class__.__init__.__globals__ }}",
        "{{ raise_exception('nope') }}",
    ],
)
def test_jinja_sandbox_refuses_escapes(source: str) -> None:
    with pytest.raises(ChatTemplateError):
        JinjaFormat(source).render([Message("user", "Hi")])


def test_a_template_that_does_not_parse_is_refused() -> None:
    with pytest.raises(ChatTemplateError):
        JinjaFormat("{% for %}")


# --- the 70 templates llama.cpp ships (tests/data/templates) ------------------------------------

TEMPLATES = sorted((Path(__file__).parent / "data" / "templates").glob("*.jinja"))
CONVERSATION = [
    Message("system", "You are terse."),
    Message("user", "Hi"),
    Message("assistant", "Hello!"),
    Message("user", "What is 2+2?"),
]
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "required": ["city"],
            "properties": {"city": {"type": "string", "description": "The city"}},
        },
    },
}
# Templates that refuse a system role by design, with their own message (raise_exception).
REFUSES = {"google-gemma-2-2b-it.jinja": "System role not supported"}


def test_all_of_llama_cpps_templates_are_here() -> None:
    assert len(TEMPLATES) == 70


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_real_templates_parse_and_render(path: Path) -> None:
    fmt = JinjaFormat(path.read_text(), bos_token="<s>", eos_token="</s>")
    # tool-use variants are what a model uses when the request has tools
    tools = [TOOL] if "tool_use" in path.name else None
    if path.name in REFUSES:
        with pytest.raises(ChatTemplateError, match=REFUSES[path.name]):
            fmt.render(CONVERSATION, tools)
        return
    text = fmt.render(CONVERSATION, tools)
    for m in CONVERSATION[1:]:
        assert m.content in text
    if tools:
        assert "get_weather" in text


def test_break_and_generation_blocks_and_transformers_tojson() -> None:
    source = (
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}"
        "{% generation %}{{ m.content | tojson }}{% endgeneration %}{% endfor %}"
    )
    text = JinjaFormat(source).render([Message("user", "<a & 'é'>"), Message("user", "x")])
    assert text == "\"<a & 'é'>\""
