"""Workers AI text-generation input and output (spec §2), as pydantic types.

The input is validated strictly (no "5" for 5, no "true" for true), like the JSON-Schema
validator behind Workers AI. Unknown keys are ignored, as the llama-2 schema allows; keys that
are part of the schema but not built here are refused by name rather than silently dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from wai.errors import InvalidInput


def integral(body: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """JSON Schema's "integer" admits 25.0 (JavaScript cannot tell it from 25): so do we."""
    out = dict(body)
    for name in fields:
        value = out.get(name)
        if isinstance(value, float) and value.is_integer():
            out[name] = int(value)
    return out


INT_FIELDS = ("max_tokens", "top_k", "seed", "n")

# Fields of the Workers AI schema that wai does not implement.
UNSUPPORTED_FIELDS = ("lora", "functions")

MAX_TOOLS = 128
MAX_LOGIT_BIAS = 300  # entries, as OpenAI caps it
# OpenAI's logit_bias, which both APIs take: {token id: bias -100..100}
TokenId = Annotated[str, Field(pattern=r"^(0|[1-9][0-9]{0,8})$")]
BiasValue = Annotated[float, Field(ge=-100, le=100)]
LogitBias = Annotated[dict[TokenId, BiasValue], Field(max_length=MAX_LOGIT_BIAS)]


def bias_pairs(logit_bias: dict[str, float] | None) -> list[tuple[int, float]]:
    """logit_bias as (token id, bias) pairs; ids are checked against the vocabulary later."""
    return [(int(k), float(v)) for k, v in (logit_bias or {}).items()]


TOOL_NAME = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]


class JsonObjectFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["json_object"]


class JsonSchemaFormat(BaseModel):
    """The schema itself (Workers AI's form) or OpenAI's wrapper `{name, strict, schema}`."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["json_schema"]
    json_schema: dict[str, Any] = Field(
        description="a JSON Schema; only keywords a grammar can enforce (see the README)"
    )


# JSON mode (spec §2.4)
ResponseFormat = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")
]


AnyFormat = TextFormat | JsonObjectFormat | JsonSchemaFormat


def output_schema(fmt: AnyFormat | None) -> dict[str, Any] | None:
    """The JSON Schema the output must satisfy; None: free text."""
    if fmt is None or isinstance(fmt, TextFormat):
        return None
    if isinstance(fmt, JsonObjectFormat):
        return {"type": "object"}
    wrapped = fmt.json_schema.get("schema")
    if isinstance(wrapped, dict) and set(fmt.json_schema) <= {
        "name",
        "strict",
        "schema",
        "description",
    }:
        return wrapped
    return fmt.json_schema


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


# --- tools (function calling) ------------------------------------------------------------------


class FunctionDef(BaseModel):
    """A function the model may call; also Workers AI's legacy tool form."""

    model_config = ConfigDict(extra="forbid")
    name: TOOL_NAME
    description: Annotated[str, Field(max_length=8192)] | None = None
    parameters: dict[str, Any] | None = Field(
        None, description="a JSON Schema for the arguments (keywords as in JSON mode)"
    )
    strict: bool | None = None  # OpenAI's: wai's calls always follow the schema


class FunctionTool(BaseModel):
    """OpenAI's tool form (also Workers AI's newer one)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["function"]
    function: FunctionDef


class ChoiceFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: TOOL_NAME


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function"]
    function: ChoiceFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class CalledFunction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: TOOL_NAME
    arguments: str | dict[str, Any]  # OpenAI sends a JSON string, Workers AI an object


class MessageToolCall(BaseModel):
    """An earlier call, in an assistant message: OpenAI's form."""

    model_config = ConfigDict(extra="ignore")
    id: Annotated[str, Field(max_length=256)] | None = None
    type: Literal["function"] = "function"
    function: CalledFunction


class LegacyToolCall(CalledFunction):
    """An earlier call in Workers AI's form: {name, arguments}."""


class ChatMessage(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        # as the validator below has it: content, or (an assistant's turn) tool_calls
        json_schema_extra={
            "anyOf": [
                {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}},
                {
                    "required": ["tool_calls"],
                    "properties": {"tool_calls": {"type": "array", "minItems": 1}},
                },
            ]
        },
    )
    role: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(max_length=256)] | None = None
    tool_calls: (
        Annotated[list[MessageToolCall | LegacyToolCall], Field(max_length=MAX_TOOLS)] | None
    ) = None
    tool_call_id: Annotated[str, Field(max_length=256)] | None = None
    # null only in an assistant message that carries tool_calls (validated after them)
    content: str | list[TextPart] | None = Field(None, validate_default=True)

    @field_validator("content")
    @classmethod
    def _content_or_calls(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and not info.data.get("tool_calls"):
            raise ValueError("Field required (null only in a message with tool_calls)")
        return value

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)

    def calls(self) -> list[CalledFunction]:
        return [c.function if isinstance(c, MessageToolCall) else c for c in self.tool_calls or []]


class RunOptions(BaseModel):
    """The optional top-level `options` object (spec §1.3)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    reject_if_busy: bool = Field(False, alias="rejectIfBusy")


class TextGenerationInput(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt: Annotated[str, Field(min_length=1)] | None = None
    messages: Annotated[list[ChatMessage], Field(min_length=1)] | None = None
    raw: bool = False
    stream: bool = False
    max_tokens: Annotated[int, Field(ge=1)] = 256
    temperature: Annotated[float, Field(ge=0, le=5)] = 0.6
    top_p: Annotated[float, Field(ge=0.001, le=1)] | None = None
    # not in Workers AI's schema; llama.cpp's: drop tokens below min_p times the top probability
    min_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=1, le=50)] | None = None
    seed: Annotated[int, Field(ge=1, le=9_999_999_999)] | None = None
    repetition_penalty: Annotated[float, Field(ge=0, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    # Newer Workers AI schemas (and the cloudflare SDK) carry this: generate past end-of-text.
    ignore_eos: bool = False
    options: RunOptions | None = None
    # Part of Workers AI's schema, not built here: refused by name unless absent or null.
    lora: None = Field(None, description="not supported by this server")
    # JSON mode: the output is grammar-constrained to the schema (see backends/local/json_schema.py)
    response_format: ResponseFormat | None = None
    # function calling (spec §2.4): Workers AI's legacy form or OpenAI's
    tools: Annotated[list[FunctionTool | FunctionDef], Field(max_length=MAX_TOOLS)] | None = None
    # OpenAI's, accepted here too: none, auto (the default), required, or a named function
    tool_choice: ToolChoice | None = None
    # several calls in one answer (at most tools.MAX_PARALLEL); off unless asked for, as in
    # llama.cpp's server: small models otherwise tend to repeat a call until max_tokens
    parallel_tool_calls: bool = False
    functions: None = Field(None, description="not supported by this server")
    # not in Workers AI's schema; OpenAI's: {token id: bias -100..100}
    logit_bias: LogitBias | None = None
    n: Annotated[int, Field(ge=1, le=1, description="one answer per request")] | None = None

    @property
    def json_schema(self) -> dict[str, Any] | None:
        """The schema JSON mode asks for, or None."""
        return output_schema(self.response_format)

    def functions_offered(self) -> list[tuple[str, FunctionDef]]:
        """The tools as (JSON pointer of the definition, definition)."""
        return [
            (f"/tools/{i}/function", t.function)
            if isinstance(t, FunctionTool)
            else (f"/tools/{i}", t)
            for i, t in enumerate(self.tools or [])
        ]

    def bias(self) -> list[tuple[int, float]]:
        return bias_pairs(self.logit_bias)

    @model_validator(mode="after")
    def _tools_fit(self) -> TextGenerationInput:
        names = [fn.name for _, fn in self.functions_offered()]
        if len(set(names)) != len(names):
            raise ValueError("'/tools': two tools have the same name")
        choice = self.tool_choice
        if choice not in (None, "none", "auto") and not names:
            raise ValueError("'/tool_choice': needs 'tools'")
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise ValueError(f"'/tool_choice': no tool is named '{choice.function.name}'")
        if names and self.response_format is not None and self.json_schema is not None:
            raise ValueError("'/response_format': JSON mode cannot be combined with 'tools'")
        if names and self.raw:
            raise ValueError("'/tools': tools need the chat template ('raw' must be false)")
        return self

    @model_validator(mode="after")
    def _one_of_prompt_or_messages(self) -> TextGenerationInput:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError(
                "oneOf at '/' not met: exactly one of 'prompt' or 'messages' is required"
            )
        return self


def parse_text_generation(body: Any) -> TextGenerationInput:
    """Validate a decoded JSON body; raises InvalidInput naming the offending field."""
    if not isinstance(body, dict):
        raise InvalidInput(f"Type mismatch of '/', '{_json_type(body)}' not in 'object'")
    for name in ("prompt", "messages"):
        if name in body and body[name] is None:
            raise InvalidInput(
                f"Type mismatch of '/{name}', 'null' not in "
                f"'{'string' if name == 'prompt' else 'array'}'"
            )
    for name in UNSUPPORTED_FIELDS:
        if body.get(name) is not None:
            raise InvalidInput(f"'/{name}' is not supported by this server yet")
    try:
        return TextGenerationInput.model_validate(integral(body, INT_FIELDS), strict=True)
    except ValidationError as e:
        err = e.errors()[0]
        pointer = "/" + "/".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "value_error" and not err["loc"]:
            raise InvalidInput(msg) from None
        raise InvalidInput(f"'{pointer}': {msg}") from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}.get(
        type(value), "object"
    )


def tighten_input_schema(schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """TextGenerationInput's JSON schema as Workers AI states it: exactly one of prompt and
    messages, each non-null when present, and this server's max_tokens cap."""
    props = schema["properties"]
    props["max_tokens"]["maximum"] = max_tokens
    props["max_tokens"]["default"] = min(256, max_tokens)
    schema["oneOf"] = [{"required": ["prompt"]}, {"required": ["messages"]}]
    for prop in ("prompt", "messages"):
        props[prop] = next(alt for alt in props[prop]["anyOf"] if alt != {"type": "null"})
    return schema


def input_json_schema(max_tokens: int) -> dict[str, Any]:
    """The input schema a model's catalog entry gives (`/ai/models/schema`), self-contained."""
    schema = tighten_input_schema(TextGenerationInput.model_json_schema(), max_tokens)
    schema["description"] = "A prompt, or chat messages, and the sampling parameters"
    return schema


_USAGE = {
    "type": "object",
    "description": "Usage statistics for the inference request",
    "properties": {
        "prompt_tokens": {"type": "number", "description": "Total number of tokens in input"},
        "completion_tokens": {"type": "number", "description": "Total number of tokens in output"},
        "total_tokens": {
            "type": "number",
            "description": "Total number of input and output tokens",
        },
    },
}

# What a text-generation model answers: the result object, or (stream: true) its event stream.
OUTPUT_JSON_SCHEMA: dict[str, Any] = {
    "description": "The generated text and usage, or (stream: true) their event stream",
    "oneOf": [
        {
            "type": "object",
            "contentType": "application/json",
            "properties": {
                "response": {"type": "string", "description": "The generated text response"},
                "usage": _USAGE,
            },
        },
        {"type": "string", "contentType": "text/event-stream", "format": "binary"},
    ],
}
