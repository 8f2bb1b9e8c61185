"""Chat formats: Meta's Llama 2 reference vectors (spec §8.4) on a real Llama SPM vocabulary, and
the Jinja sandbox around templates that come from model files."""

from __future__ import annotations

from pathlib import Path

import pytest

from wai.chat import ChatTemplateError, JinjaFormat, Llama2Format, Message
from wai.engine.gguf import LlamaTokenizer, load_tokenizer

# llama.cpp's vocab-only Llama SPM GGUF (MIT), from the sources in the llama-cpp-python sdist.
VOCAB = Path(__file__).parent / "data" / "ggml-vocab-llama-spm.gguf"


@pytest.fixture(scope="module")
def llama_tok() -> LlamaTokenizer:
    return load_tokenizer(VOCAB)


SYS = [3532, 14816, 29903, 6778, 13, 3492, 526, 1935, 344, 29889, 13, 29966, 829, 14816, 29903,
       6778, 13, 13]


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
        [Message("system", "You are terse."), Message("user", "Hi"),
         Message("assistant", "Hello."), Message("user", "Bye")],
        llama_tok,
    )
    assert ids == [1, 518, 25580, 29962, *SYS, 18567, 518, 29914, 25580, 29962, 15043, 29889,
                   29871, 2, 1, 518, 25580, 29962, 2648, 29872, 518, 29914, 25580, 29962]


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
        # ImmutableSandboxedEnvironment: no mutation of data passed in
        "{{ messages.append({'role': 'x'}) }}",
        "{{ raise_exception('nope') }}",
    ],
)
def test_jinja_sandbox_refuses_escapes(source: str) -> None:
    with pytest.raises(ChatTemplateError):
        JinjaFormat(source).render([Message("user", "Hi")])


def test_a_template_that_does_not_parse_is_refused() -> None:
    with pytest.raises(ChatTemplateError):
        JinjaFormat("{% for %}")
