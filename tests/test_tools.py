"""backends/local/tools.py: which syntax a template gets, the grammar around a call, and the
parser that reads calls back (whole, and streamed in any split)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from wai.backends.base import Tool
from wai.backends.local.chat import CHATML, JinjaFormat, Llama2Format, Message
from wai.backends.local.tools import (
    SYNTAXES,
    ToolPlan,
    call_grammar,
    generic_messages,
    syntax_for,
)
from wai.catalog import embedded_model_path
from wai.engines.llamacpp import grammar
from wai.engines.llamacpp.gguf import load_tokenizer

# Small templates in the style of each family (what matters: the markers, and that tools and
# tool_calls reach the template).
TOOLS_LOOP = (
    "{% for t in tools %}{{ t.function.name }} {{ t.function.parameters | tojson }}\n{% endfor %}"
)
HERMES_TEMPLATE = (
    "{% if tools %}<tools>" + TOOLS_LOOP + "</tools> answer in <tool_call></tool_call>{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{% for c in m.tool_calls or [] %}<tool_call>{{ c.function | tojson }}</tool_call>{% endfor %}"
    "<|im_end|>\n{% endfor %}<|im_start|>assistant\n"
)
LLAMA3_TEMPLATE = (
    "<|start_header_id|>system<|end_header_id|>{% if tools %}" + TOOLS_LOOP + "{% endif %}"
    "{% for m in messages %}{% if m.role == 'tool' %}<|start_header_id|>ipython<|end_header_id|>"
    "{% else %}<|start_header_id|>{{ m.role }}<|end_header_id|>{% endif %}{{ m.content }}"
    "{% if 'tool_calls' in m %}<|python_tag|>{{ m.tool_calls[0].function.arguments | tojson }}"
    "{% endif %}<|eot_id|>{% endfor %}<|start_header_id|>assistant<|end_header_id|>"
)
MISTRAL_TEMPLATE = (
    "{% if tools %}[AVAILABLE_TOOLS]" + TOOLS_LOOP + "[/AVAILABLE_TOOLS]{% endif %}"
    "{% for m in messages %}{% if m.role == 'user' %}[INST]{{ m.content }}[/INST]"
    "{% elif m.tool_calls is defined %}[TOOL_CALLS]{{ m.tool_calls | tojson }}"
    "{% else %}{{ m.content }}{% endif %}{% endfor %}"
)
# renders tools, but in a syntax wai does not know
OTHER_TEMPLATE = (
    "{% if tools %}" + TOOLS_LOOP + "{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}"
)

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "days"],
}
TOOLS = (Tool("get_weather", "Weather", WEATHER), Tool("get_time", "Time", {"type": "object"}))


@pytest.mark.parametrize(
    ("template", "syntax", "native"),
    [
        (HERMES_TEMPLATE, "hermes", True),
        (LLAMA3_TEMPLATE, "llama3", True),
        (MISTRAL_TEMPLATE, "mistral", True),
        (OTHER_TEMPLATE, "generic", False),
        (CHATML, "generic", False),  # no tool support: wai's system message
    ],
)
def test_each_template_gets_its_syntax(template: str, syntax: str, native: bool) -> None:
    found, is_native = syntax_for(JinjaFormat(template))
    assert (found.name, is_native) == (syntax, native)


def test_llama2_and_broken_templates_are_generic() -> None:
    assert syntax_for(Llama2Format()) == (SYNTAXES["generic"], False)
    raising = JinjaFormat("{% if tools %}{{ raise_exception('no tools') }}{% endif %}hi")
    assert syntax_for(raising) == (SYNTAXES["generic"], False)


def test_native_templates_see_tools_and_earlier_calls() -> None:
    call = {
        "id": "abcdefghi",
        "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Oslo", "days": 2}},
    }
    messages = [
        Message("user", "weather?"),
        Message("assistant", "", (call,)),
        Message("tool", '{"t": 3}', tool_call_id="abcdefghi"),
    ]
    offered = [t.openai() for t in TOOLS]
    for template in (HERMES_TEMPLATE, LLAMA3_TEMPLATE, MISTRAL_TEMPLATE):
        text = JinjaFormat(template).render(messages, offered)
        assert "get_weather" in text and '"Oslo"' in text, template


def test_generic_messages_teach_the_syntax_and_flatten_the_history() -> None:
    call = {"function": {"name": "get_weather", "arguments": {"city": "Oslo", "days": 2}}}
    out = generic_messages(
        [
            Message("system", "Be brief."),
            Message("user", "weather?"),
            Message("assistant", "", (call,)),
            Message("tool", "3 C"),
            Message("tool", "rain"),
        ],
        TOOLS,
    )
    assert [m.role for m in out] == ["system", "user", "assistant", "user"]
    assert out[0].content.startswith("Be brief.\n\n") and '"get_weather"' in out[0].content
    assert (
        out[2].content == '<tool_call>\n{"name": "get_weather", '
        '"arguments": {"city": "Oslo", "days": 2}}\n</tool_call>'
    )
    assert out[3].content.count("<tool_response>") == 2  # one user turn for a run of results
    # the result renders with a template that knows nothing of tools
    JinjaFormat(CHATML).render(out)


def _plan(syntax: str, parallel: bool = True, allowed: tuple[Tool, ...] = TOOLS) -> ToolPlan:
    return ToolPlan(SYNTAXES[syntax], True, TOOLS, allowed, required=False, parallel=parallel)


CASES: list[tuple[str, str, str, list[tuple[str, dict[str, Any]]]]] = [
    (
        "hermes",
        'Let me check.\n<tool_call>\n{"name": "get_weather", '
        '"arguments": {"city": "Oslo", "days": 2}}\n</tool_call>\n'
        '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>',
        "Let me check.",
        [("get_weather", {"city": "Oslo", "days": 2}), ("get_time", {})],
    ),
    (  # SmolLM2's habit: a list in one block
        "generic",
        '<tool_call>[{"name": "get_time", "arguments": {"zone": "UTC"}}]</tool_call>',
        "",
        [("get_time", {"zone": "UTC"})],
    ),
    (
        "llama3",
        '{"name": "get_weather", "parameters": {"city": "Oslo", "days": 2}}; '
        '{"name": "get_time", "parameters": {}}',
        "",
        [("get_weather", {"city": "Oslo", "days": 2}), ("get_time", {})],
    ),
    ("llama3", '<|python_tag|>{"name": "get_time", "parameters": "{}"}', "", [("get_time", {})]),
    (
        "mistral",
        '[TOOL_CALLS][{"name": "get_time", "arguments": {"z": 1}}]',
        "",
        [("get_time", {"z": 1})],
    ),
    ("mistral", ' [{"name": "get_time", "arguments": {}}]', "", [("get_time", {})]),  # token hidden
    (
        "hermes",
        "No call here, just <b>text</b> and <tool_ca",
        "No call here, just <b>text</b> and <tool_ca",
        [],
    ),
    # cut off by max_tokens, or a name that is not offered: text, not a call
    (
        "hermes",
        '<tool_call>{"name": "get_weather", "argu',
        '<tool_call>{"name": "get_weather", "argu',
        [],
    ),
    (
        "hermes",
        '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>',
        '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>',
        [],
    ),
    ("llama3", '{"answer": 42}', '{"answer": 42}', []),
    ("llama3", "Sure: 42 ", "Sure: 42 ", []),
]


@pytest.mark.parametrize(("syntax", "text", "content", "calls"), CASES)
def test_parse(
    syntax: str, text: str, content: str, calls: list[tuple[str, dict[str, Any]]]
) -> None:
    got_content, got = _plan(syntax).parse(text)
    assert got_content == content
    assert [(c.name, c.arguments) for c in got] == calls
    assert all(c.id for c in got)
    if syntax == "mistral":
        assert all(len(c.id) == 9 and c.id.isalnum() for c in got)


@pytest.mark.parametrize(("syntax", "text", "content", "calls"), CASES)
def test_streaming_in_any_split_gives_the_same_answer(
    syntax: str, text: str, content: str, calls: list[tuple[str, dict[str, Any]]]
) -> None:
    for size in (1, 2, 3, 5, 8, 13, len(text)):
        stream = _plan(syntax).stream()
        sent = "".join(stream.push(text[i : i + size]) for i in range(0, len(text), size))
        rest, got = stream.finish()
        assert sent + rest == content, size
        assert [(c.name, c.arguments) for c in got] == calls
        if calls:  # nothing of the call's syntax leaked out as text
            assert "<tool_call" not in sent and "name" not in sent


def test_a_named_choice_allows_only_that_function() -> None:
    only = _plan("hermes", allowed=TOOLS[1:])
    assert only.parse('<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>')[1] == []


@pytest.fixture(scope="module")
def vocab() -> Any:
    return load_tokenizer(embedded_model_path())


@pytest.mark.parametrize(
    ("syntax", "good", "bad"),
    [
        (
            "hermes",
            '<tool_call>\n{"name": "get_weather", '
            '"arguments": {"city": "Oslo", "days": 7}}\n</tool_call>',
            '<tool_call>{"name": "get_weather", '
            '"arguments": {"city": "Oslo", "days": 8}}</tool_call>',
        ),
        (
            "llama3",
            '{"name": "get_time", "parameters": {"zone": "UTC"}}',
            '{"name": "get_times", "parameters": {}}',
        ),
        (
            "mistral",
            '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Oslo", "days": 1}}]',
            '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Oslo"}}]',
        ),
    ],
)
def test_call_grammars_hold_names_and_arguments(
    vocab: Any, syntax: str, good: str, bad: str
) -> None:
    gbnf = call_grammar(TOOLS, SYNTAXES[syntax], parallel=False)
    assert grammar.accepts(vocab, gbnf, good)
    assert not grammar.accepts(vocab, gbnf, bad)
    # every grammar starts where its trigger's group 1 does: the lazy and strict forms agree
    match = re.search(SYNTAXES[syntax].trigger.encode(), good.encode())
    assert match is not None and match.start(1) == 0


def test_parallel_calls_are_bounded(vocab: Any) -> None:
    one = '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
    gbnf = call_grammar(TOOLS, SYNTAXES["hermes"], parallel=True)
    assert grammar.accepts(vocab, gbnf, one * 8)
    assert not grammar.accepts(vocab, gbnf, one * 9)
    single = call_grammar(TOOLS, SYNTAXES["hermes"], parallel=False)
    assert not grammar.accepts(vocab, single, one * 2)
    assert json.loads(one[len("<tool_call>") : -len("</tool_call>")])["name"] == "get_time"
