"""OpenAI chat/completions requests, and their translation into Workers AI input.

Parameters wai cannot honour are refused by name (`n` > 1, `logprobs`, `functions`, …) rather than
ignored, so a client never believes it got something it did not; unknown ones are refused as
OpenAI itself refuses them ("Unrecognized request argument supplied: …"). Only bookkeeping that
changes nothing about the output is accepted and ignored: `user`, `metadata`, `store`,
`service_tier`, `prompt_cache_key`, `safety_identifier`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wai.errors import InvalidInput
from wai.schemas.embeddings import EmbeddingInput, Texts, parse_embeddings
from wai.schemas.reranking import RerankApiRequest, check_lengths
from wai.schemas.text_generation import (
    MAX_TOOLS,
    AnyFormat,
    ChatMessage,
    FunctionTool,
    LogitBias,
    ResponseFormat,
    RunOptions,
    TextFormat,
    TextGenerationInput,
    ToolChoice,
    bias_pairs,
    integral,
)

MAX_STOPS = 4
MAX_STOP_CHARS = 256


class InvalidOpenAIRequest(ValueError):
    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(min_length=1, max_length=256)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    min_p: Annotated[float, Field(ge=0, le=1)] | None = None  # llama-server's and vLLM's
    top_k: Annotated[int, Field(ge=1, le=50)] | None = None
    seed: int | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    repetition_penalty: Annotated[float, Field(ge=0, le=2)] | None = None
    ignore_eos: bool | None = None  # Workers AI's and vLLM's extension: generate to max_tokens
    stop: (
        Annotated[str, Field(max_length=MAX_STOP_CHARS)]
        | Annotated[
            list[Annotated[str, Field(max_length=MAX_STOP_CHARS)]], Field(max_length=MAX_STOPS)
        ]
        | None
    ) = None
    n: Annotated[int, Field(ge=1, le=1)] | None = None
    logit_bias: LogitBias | None = None
    options: RunOptions | None = None
    # accepted and ignored: bookkeeping, no effect on the output
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None

    def bias(self) -> list[tuple[int, float]]:
        return bias_pairs(self.logit_bias)

    def stops(self) -> list[str]:
        """The stop strings (their count and lengths are bounded by the schema above)."""
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def sampling(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in (
            "temperature",
            "top_p",
            "min_p",
            "top_k",
            "frequency_penalty",
            "presence_penalty",
            "repetition_penalty",
            "ignore_eos",
        ):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.top_p is not None:  # Workers AI's floor is 0.001
            out["top_p"] = max(self.top_p, 0.001)
        if self.seed is not None:
            # OpenAI seeds are any integer; Workers AI's are 1..9,999,999,999
            out["seed"] = self.seed % 9_999_999_999 + 1
        if self.options is not None:
            out["options"] = {"rejectIfBusy": self.options.reject_if_busy}
        return out


# The fields below document what is accepted; other values are refused by name before
# validation (see _refuse_unsupported).
class ChatCompletionRequest(_Common):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: Literal[False] | None = None
    top_logprobs: None = None
    tools: Annotated[list[FunctionTool], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: Annotated[list[Any], Field(max_length=0)] | None = None
    function_call: None = None
    response_format: ResponseFormat | None = None
    modalities: list[Literal["text"]] | None = None


class CompletionRequest(_Common):
    prompt: (
        Annotated[str, Field(min_length=1)]
        | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=1)]
    )
    logprobs: None = None
    echo: Literal[False] | None = None
    suffix: None = None
    best_of: Annotated[int, Field(ge=1, le=1)] | None = None
    response_format: ResponseFormat | None = None


def _refuse_unsupported(body: dict[str, Any], chat: bool) -> None:
    """Parameters OpenAI defines but wai cannot honour: a 400 that names them."""
    if body.get("n") not in (None, 1):
        raise InvalidOpenAIRequest("n > 1 is not supported: one choice per request", "n")

    def given(name: str) -> bool:  # present with a value other than null/false
        return body.get(name) is not None and body.get(name) is not False

    unsupported: list[tuple[str, bool]] = [("logprobs", given("logprobs"))]
    if chat:
        unsupported += [
            ("top_logprobs", body.get("top_logprobs") is not None),
            ("functions", bool(body.get("functions"))),
            ("function_call", body.get("function_call") is not None),
            (
                "modalities",
                isinstance(body.get("modalities"), list)
                and any(m != "text" for m in body["modalities"]),
            ),
            ("audio", body.get("audio") is not None),
            ("prediction", body.get("prediction") is not None),
            ("reasoning_effort", body.get("reasoning_effort") is not None),
            ("web_search_options", body.get("web_search_options") is not None),
            ("verbosity", body.get("verbosity") is not None),
        ]
    else:
        unsupported += [
            ("echo", given("echo")),
            ("suffix", given("suffix")),
            ("best_of", body.get("best_of") not in (None, 1)),
        ]
    for param, used in unsupported:
        if used:
            raise InvalidOpenAIRequest(f"'{param}' is not supported by this server", param)
    stop = body.get("stop")
    if isinstance(stop, list) and len(stop) > MAX_STOPS:
        raise InvalidOpenAIRequest(f"at most {MAX_STOPS} stop sequences", "stop")


def _validate(model: type[_Common], body: Any) -> Any:
    if not isinstance(body, dict):
        raise InvalidOpenAIRequest("the request body must be a JSON object", None)
    _refuse_unsupported(body, chat=model is ChatCompletionRequest)
    try:
        fields = ("max_tokens", "max_completion_tokens", "top_k", "seed", "n", "best_of")
        return model.model_validate(integral(body, fields), strict=True)
    except ValidationError as e:
        err = e.errors()[0]
        loc = list(err["loc"])
        if loc[:1] == ["response_format"] and len(loc) > 2:
            del loc[1]  # pydantic names the union member (its `type`) here: not a parameter
        param = ".".join(str(p) for p in loc) or None
        if err["type"] == "extra_forbidden":
            raise InvalidOpenAIRequest(
                f"Unrecognized request argument supplied: {param}", param
            ) from None
        raise InvalidOpenAIRequest(f"{param}: {err['msg']}", param) from None


def parse_chat(body: Any) -> tuple[ChatCompletionRequest, TextGenerationInput, list[str]]:
    req: ChatCompletionRequest = _validate(ChatCompletionRequest, body)
    messages = [m.model_dump(exclude_none=True) for m in req.messages]
    max_tokens = req.max_completion_tokens or req.max_tokens
    tools: dict[str, Any] = {}
    if req.tools:
        tools["tools"] = [t.model_dump(exclude_none=True) for t in req.tools]
    if req.tool_choice is not None:
        choice = req.tool_choice
        tools["tool_choice"] = choice if isinstance(choice, str) else choice.model_dump()
    if req.parallel_tool_calls is not None:
        tools["parallel_tool_calls"] = req.parallel_tool_calls
    inp = _to_input(
        {
            "messages": messages,
            "stream": req.stream,
            **_max(max_tokens),
            **req.sampling(),
            **_json(req.response_format),
            **tools,
        }
    )
    return req, inp, req.stops()


def parse_completion(body: Any) -> tuple[CompletionRequest, TextGenerationInput, list[str]]:
    req: CompletionRequest = _validate(CompletionRequest, body)
    prompt = req.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise InvalidOpenAIRequest("exactly one prompt per request", "prompt")
        prompt = prompt[0]
    inp = _to_input(
        {
            "prompt": prompt,
            "raw": True,
            "stream": req.stream,
            **_max(req.max_tokens),
            **req.sampling(),
            **_json(req.response_format),
        }
    )
    return req, inp, req.stops()


def _json(fmt: AnyFormat | None) -> dict[str, Any]:
    if fmt is None or isinstance(fmt, TextFormat):
        return {}
    return {"response_format": fmt.model_dump(exclude_none=True)}


def _max(max_tokens: int | None) -> dict[str, int]:
    return {} if max_tokens is None else {"max_tokens": max_tokens}


def _to_input(data: dict[str, Any]) -> TextGenerationInput:
    try:
        return TextGenerationInput.model_validate(data, strict=True)
    except ValidationError as e:
        err = e.errors()[0]
        if err["type"] == "value_error" and not err["loc"]:  # a check across fields
            message = err["msg"].removeprefix("Value error, ")
            named = re.match(r"'/(\w+)", message)
            raise InvalidOpenAIRequest(message, named.group(1) if named else None) from None
        param = ".".join(str(p) for p in err["loc"]) or None
        raise InvalidOpenAIRequest(f"{param}: {err['msg']}", param) from None


class EmbeddingsRequest(BaseModel):
    """OpenAI's `POST /embeddings`: strings only (token arrays are refused by name)."""

    model_config = ConfigDict(extra="forbid")
    model: Annotated[str, Field(min_length=1, max_length=256)]
    input: Texts
    encoding_format: Literal["float", "base64"] = "float"
    # the model's own size only (see parse_embeddings_request)
    dimensions: Annotated[int, Field(ge=1, le=65536)] | None = None
    user: str | None = None  # accepted and ignored


def parse_embeddings_request(body: Any) -> tuple[EmbeddingsRequest, EmbeddingInput]:
    if not isinstance(body, dict):
        raise InvalidOpenAIRequest("the request body must be a JSON object", None)
    raw = body.get("input")
    if isinstance(raw, list) and raw and not all(isinstance(x, str) for x in raw):
        raise InvalidOpenAIRequest("input: token arrays are not supported; send text", "input")
    try:
        req = EmbeddingsRequest.model_validate(body, strict=True)
    except ValidationError as e:
        raise _named(e, full_path=False) from None
    try:
        inp = parse_embeddings({"text": req.input})
    except InvalidInput as e:
        raise InvalidOpenAIRequest(e.message.replace("'/text", "'input"), "input") from None
    return req, inp


def _named(e: ValidationError, *, full_path: bool) -> InvalidOpenAIRequest:
    """A validation error as OpenAI words it, naming the parameter (and, with `full_path`,
    where inside it)."""
    err = e.errors()[0]
    param = str(err["loc"][0]) if err["loc"] else None
    if err["type"] == "extra_forbidden":
        return InvalidOpenAIRequest(f"Unrecognized request argument supplied: {param}", param)
    where = "/".join(str(p) for p in err["loc"]) if full_path else param
    return InvalidOpenAIRequest(f"{where}: {err['msg']}", param)


def parse_rerank_request(body: Any) -> RerankApiRequest:
    """`POST /v1/rerank`'s body; errors name the parameter, as OpenAI's do."""
    if not isinstance(body, dict):
        raise InvalidOpenAIRequest("the request body must be a JSON object", None)
    try:
        req = RerankApiRequest.model_validate(integral(body, ("top_n",)), strict=True)
    except ValidationError as e:
        raise _named(e, full_path=True) from None
    try:
        check_lengths(req.query, req.texts())
    except InvalidInput as e:
        raise InvalidOpenAIRequest(
            e.message.replace("'/contexts", "'documents"), "documents"
        ) from None
    return req
