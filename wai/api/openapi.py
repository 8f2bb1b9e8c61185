"""The OpenAPI document, made accurate: request bodies and every error response of each route.

Routes read their bodies themselves (JSON whatever the Content-Type, with Cloudflare-shaped
errors), so FastAPI cannot see their schemas; they are added here from the same pydantic types
that validate requests, with this server's limits (e.g. the `max_tokens` cap) filled in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from wai.api.errors import is_openai_path
from wai.api.models import MAX_PER_PAGE
from wai.schemas.embeddings import EMBEDDING_OUTPUT_SCHEMA, EmbeddingInput
from wai.schemas.openai import ChatCompletionRequest, CompletionRequest, EmbeddingsRequest
from wai.schemas.reranking import RERANK_OUTPUT_SCHEMA, RerankApiRequest, RerankerInput
from wai.schemas.text_generation import TextGenerationInput, tighten_input_schema
from wai.settings import Settings

CF_ERROR = {
    "type": "object",
    "required": ["errors", "success", "result", "messages"],
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "integer"},
                    "message": {"type": "string"},
                    "error_chain": {"type": "array"},
                },
            },
        },
        "success": {"type": "boolean", "enum": [False]},
        "result": {"type": ["object", "null"]},
        "messages": {"type": "array"},
    },
}
OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
BINDING_ERROR = {
    "type": "object",
    "properties": {
        "internalCode": {"type": "integer"},
        "name": {"type": "string"},
        "message": {"type": "string"},
        "description": {"type": "string"},
    },
}


def binding_request(inputs: dict[str, Any]) -> dict[str, Any]:
    """What workerd's AI binding sends: the model inputs, and the binding options (of which the
    server reads rejectIfBusy; the others steer the binding or the gateway, not inference)."""
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": inputs,
            "options": {"type": "object", "properties": {"rejectIfBusy": {"type": "boolean"}}},
        },
    }


USAGE = {
    "type": "object",
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
    },
}
OUTPUT = {
    "type": "object",
    "required": ["response"],
    "properties": {
        # any JSON value: the generated text, or in JSON mode the value itself
        "response": {"description": "the generated text; in JSON mode, the JSON value"},
        "usage": USAGE,
    },
}
# each server-sent event: a `data:` line (JSON text, or [DONE])
SSE = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "required": ["data"],
            "properties": {"data": {"type": "string"}},
        }
    }
}

# status -> why, per family of routes
CF_ERRORS = {
    400: "bad input, unknown model, or bad auth header",
    401: "invalid token",
    403: "outside the token's scope (its accounts, its permissions)",
    404: "no route (e.g. an empty path segment)",
    405: "wrong method",
    408: "client went away",
    413: "body too large",
    429: "busy or rate limited",
    431: "headers too large",
    503: "the model's weights failed to load",
}


# The model search's query (spec §6.1), with this server's bounds (see api/models.py).
SEARCH_PARAMS: dict[str, dict[str, Any]] = {
    "search": {"type": "string"},
    "task": {"type": "string"},
    "author": {"type": "string"},
    "page": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
    "per_page": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
    "source": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
    "hide_experimental": {"type": "boolean"},
    "include_deprecated": {"type": "boolean"},
}


def _query(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _errors(schema: dict[str, Any], statuses: dict[int, str]) -> dict[str, Any]:
    return {
        str(code): {"description": why, "content": _json(schema)} for code, why in statuses.items()
    }


def _body(
    model: type[BaseModel], components: dict[str, Any], tweak: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    for prop, extra in tweak.items():
        target = schema["properties"][prop]
        for alt in target.get("anyOf", [target]):
            if alt.get("type") in ("integer", "number"):
                alt.update(extra)
    components[model.__name__] = schema
    return {"required": True, "content": _json({"$ref": f"#/components/schemas/{model.__name__}"})}


def integer_pattern(n: int) -> str:
    """A regex for the decimal integers 0..n-1 (no leading zeros): JSON object keys cannot
    carry a numeric range any other way."""
    top = str(max(n - 1, 0))
    if len(top) == 1:
        return f"^[0-{top}]$"
    alts = ["0", f"[1-9][0-9]{{0,{len(top) - 2}}}"]
    for i, ch in enumerate(top):
        lo, hi = (1 if i == 0 else 0), int(ch) - 1
        if hi >= lo:
            alts.append(top[:i] + f"[{lo}-{hi}]" + "[0-9]" * (len(top) - i - 1))
    alts.append(top)
    return "^(" + "|".join(alts) + ")$"


@dataclass(frozen=True, slots=True)
class ModelIds:
    """The ids this server answers (others get 5007), and which of them embed or rerank."""

    all: list[str]
    embeddings: list[str]
    rerankers: list[str] = field(default_factory=list)
    # speech ids, each with its official schema {"input", "output"} (None: none known)
    speech: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    @property
    def text(self) -> list[str]:
        other = {*self.embeddings, *self.rerankers, *self.speech}
        return [i for i in self.all if i not in other]


def install(
    app: FastAPI,
    settings: Settings,
    model_ids: ModelIds,
    vocab_size: Callable[[], int | None] = lambda: None,
) -> None:
    """Replace app.openapi with the accurate document (built once, on first request).
    `vocab_size`: the smallest vocabulary of the loaded models (token ids in logit_bias must
    be below it). An embedding id's REST route is documented as a path of its own, since its
    body differs from a text-generation id's."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        bodies = _request_bodies(components, settings.limits.max_tokens, model_ids, vocab_size())
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
        for path, item in doc["paths"].items():
            for method, op in item.items():
                _document(path, method, op, bodies, components, model_ids)
        for model_id in model_ids.embeddings:
            path = f"/client/v4/accounts/{{account_id}}/ai/run/{model_id}"
            doc["paths"][path] = {"post": _task_run(model_id, bodies["embedding"], EMBEDDING)}
        for model_id in model_ids.rerankers:
            path = f"/client/v4/accounts/{{account_id}}/ai/run/{model_id}"
            doc["paths"][path] = {"post": _task_run(model_id, bodies["rerank"], RERANKING)}
        for model_id, official in model_ids.speech.items():
            path = f"/client/v4/accounts/{{account_id}}/ai/run/{model_id}"
            doc["paths"][path] = {"post": _speech_run(model_id, official)}
        app.openapi_schema = doc
        return doc

    app.openapi = build  # type: ignore[method-assign]


def _request_bodies(
    components: dict[str, Any], max_tokens: int, model_ids: ModelIds, n_vocab: int | None
) -> dict[str, dict[str, Any]]:
    """The request bodies of the inference routes (their schemas, with this server's limits,
    model ids and vocabulary, added to `components`), by route kind."""
    cap = {"max_tokens": {"maximum": max_tokens}}
    run = _body(TextGenerationInput, components, cap)
    tighten_input_schema(components["TextGenerationInput"], max_tokens)
    bodies = {
        "run": run,
        "chat": _body(
            ChatCompletionRequest, components, {**cap, "max_completion_tokens": cap["max_tokens"]}
        ),
        "completion": _body(CompletionRequest, components, cap),
        "embedding": _body(EmbeddingInput, components, {}),
        "rerank": _body(RerankerInput, components, {}),
        "rerank_api": _body(RerankApiRequest, components, {}),
        "embeddings": _body(EmbeddingsRequest, components, {}),
    }
    for name in ("ChatCompletionRequest", "CompletionRequest"):
        components[name]["properties"]["model"]["enum"] = model_ids.text
    components["EmbeddingsRequest"]["properties"]["model"]["enum"] = model_ids.embeddings
    rerank_model = components["RerankApiRequest"]["properties"]["model"]
    rerank_model["enum"] = [*model_ids.rerankers, *model_ids.embeddings]
    if n_vocab:
        for name in ("ChatCompletionRequest", "CompletionRequest", "TextGenerationInput"):
            props = components[name]["properties"]
            bias = next(a for a in props["logit_bias"]["anyOf"] if a.get("type") == "object")
            bias["propertyNames"] = {"pattern": integer_pattern(n_vocab)}
            bias.pop("patternProperties", None)
            bias["additionalProperties"] = {"type": "number", "minimum": -100, "maximum": 100}
    return bodies


def _document(
    path: str,
    method: str,
    op: dict[str, Any],
    bodies: dict[str, dict[str, Any]],
    components: dict[str, Any],
    model_ids: ModelIds,
) -> None:
    """One operation as wai answers it: its parameters, body and responses."""
    op.pop("requestBody", None)
    responses = op.setdefault("responses", {})
    responses.pop("422", None)
    _parameters(path, op.setdefault("parameters", []), model_ids)
    if "/ai/run/" in path:
        op["description"] = (
            'With `?queueRequest=true` the same route is the batch queue: `{"requests": '
            '[<inputs>, …]}` queues a batch, `{"request_id"}` polls it (not described by '
            "this document's body schema: one path and method has one operation)."
        )
        op["requestBody"] = bodies["run"]
        responses["200"] = {
            "description": "the output, or its stream",
            "content": {**_json({"type": "object"}), **SSE},
        }
        responses.update(_errors(CF_ERROR, CF_ERRORS))
    elif path in ("/run", "/ai-gateway/run"):
        _binding(op, components, model_ids.text)
    elif path.endswith("/rerank"):
        op["requestBody"] = bodies["rerank_api"]
        responses["200"] = {"description": "the scores", "content": _json({"type": "object"})}
        responses.update(_errors(OPENAI_ERROR, {**CF_ERRORS, 404: "no such model"}))
    elif path.endswith("/embeddings"):
        op["requestBody"] = bodies["embeddings"]
        responses["200"] = {"description": "the vectors", "content": _json({"type": "object"})}
        responses.update(_errors(OPENAI_ERROR, {**CF_ERRORS, 404: "no such model"}))
    elif path.endswith(("/audio/transcriptions", "/audio/translations", "/audio/speech")):
        _audio(path, op)
    elif path.endswith(("/chat/completions", "/completions")):
        op["requestBody"] = bodies["chat" if "chat" in path else "completion"]
        responses["200"] = {
            "description": "the completion, or its chunks",
            "content": {**_json({"type": "object"}), **SSE},
        }
        responses.update(_errors(OPENAI_ERROR, {**CF_ERRORS, 404: "no such model"}))
    else:
        responses.update(
            _errors(
                OPENAI_ERROR if is_openai_path(path) else CF_ERROR,
                {k: CF_ERRORS[k] for k in (400, 401, 403, 404, 431)},
            )
        )
    if method == "get" and path in ("/healthz", "/readyz"):
        op["security"] = []
        responses["503"] = {
            "description": "no model can be served yet"
            if path == "/healthz"
            else "not ready for traffic: starting, an eager model not loaded or "
            "its engine restarting, or a queue full (the reasons say which)",
            "content": _json({"type": "object"}),
        }


def _parameters(path: str, params: list[dict[str, Any]], model_ids: ModelIds) -> None:
    for param in params:
        if param["name"] == "model" and param["in"] == "path":  # embedding ids: own paths
            param["schema"] = {"type": "string", "enum": model_ids.text}
    # routes whose handler does not read {account_id} still take it
    if "{account_id}" in path and not any(p["name"] == "account_id" for p in params):
        params.append(
            {
                "name": "account_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "minLength": 1},
            }
        )
    if path.endswith("/ai/models/schema"):
        params.append(_query("model", {"type": "string", "enum": model_ids.all}, True))
    elif path.endswith("/models/search"):
        params.extend(_query(name, schema) for name, schema in SEARCH_PARAMS.items())


def _binding(op: dict[str, Any], components: dict[str, Any], model_ids: list[str]) -> None:
    """The Worker binding's protocol: version in the query, model in a header."""
    components["BindingRequest"] = binding_request(
        {"$ref": "#/components/schemas/TextGenerationInput"}
    )
    op["requestBody"] = {
        "required": True,
        "content": _json({"$ref": "#/components/schemas/BindingRequest"}),
    }
    op["parameters"] = [
        {
            "name": "version",
            "in": "query",
            "required": True,
            "schema": {"type": "string", "enum": ["3"]},
        },
        # the model ids; the server also takes them behind a "<prefix>:"
        # (as workerd sends them) and answers other ids with 5007
        {
            "name": "cf-consn-model-id",
            "in": "header",
            "required": True,
            "description": "model id, optionally as <prefix>:<model id>",
            "schema": {"type": "string", "enum": model_ids},
        },
    ]
    responses = op["responses"]
    responses["200"] = {
        "description": "the bare output, or its stream",
        "content": {**_json(OUTPUT), **SSE},
    }
    responses.update(_errors(BINDING_ERROR, {**CF_ERRORS, 400: "bad input"}))
    responses.update(_errors(CF_ERROR, {k: CF_ERRORS[k] for k in (401, 404, 431)}))


@dataclass(frozen=True, slots=True)
class _Task:
    name: str  # in the summary
    slug: str  # in the operation id
    output: dict[str, Any]
    what: str  # the 200 response's description


EMBEDDING = _Task("Text Embeddings", "embeddings", EMBEDDING_OUTPUT_SCHEMA, "the vectors")
RERANKING = _Task("Reranking", "rerank", RERANK_OUTPUT_SCHEMA, "the contexts' scores")


def _task_run(model_id: str, body: dict[str, Any], task: _Task) -> dict[str, Any]:
    """The REST route of one embedding or reranking id (the same route as every id, with its
    own body)."""
    account = {
        "name": "account_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
    }
    envelope = {"type": "object", "properties": {"result": task.output}}
    return {
        "summary": f"{task.name}: {model_id}",
        "operationId": f"run_{task.slug}_{model_id.strip('@').replace('/', '_')}",
        "parameters": [account],
        "requestBody": body,
        "responses": {
            "200": {
                "description": f"{task.what}, in the Cloudflare envelope",
                "content": _json(envelope),
            },
            **_errors(CF_ERROR, CF_ERRORS),
        },
    }


def _speech_run(model_id: str, official: dict[str, Any] | None) -> dict[str, Any]:
    """The REST route of one speech id: its body and answer as Workers AI's own schema gives
    them (the audio itself may also be the body of a speech recognition or turn id)."""
    schema = official or {"input": {"type": "object"}, "output": {"type": "object"}}
    body = {
        "required": True,
        "content": {
            "application/json": {"schema": schema["input"]},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    task = _Task("Speech", "speech", schema["output"], "the model's output")
    op = _task_run(model_id, body, task)
    if schema["output"].get("format") == "binary":  # Deepgram's voices: the audio itself
        op["responses"]["200"] = {"description": "the audio", "content": AUDIO}
    return op


# what a voice answers, by the encoding and container asked for
AUDIO = {
    mime: {"schema": {"type": "string", "format": "binary"}}
    for mime in (
        "audio/mpeg", "audio/wav", "audio/flac", "audio/ogg", "audio/aac", "audio/basic",
        "audio/alaw", "audio/l16",
    )
}  # fmt: skip


def _audio(path: str, op: dict[str, Any]) -> None:
    """OpenAI's audio routes: multipart audio in (transcriptions), JSON in and audio out
    (speech)."""
    text = {"type": "string", "minLength": 1}
    if path.endswith("/speech"):
        formats = ["mp3", "opus", "aac", "flac", "wav", "pcm"]
        body = {
            "type": "object",
            "properties": {
                "model": text, "input": text, "voice": {"type": "string"},
                "response_format": {"type": "string", "enum": formats},
                "speed": {"type": "number", "minimum": 0.25, "maximum": 4},
            },
            "required": ["model", "input", "voice"],
        }  # fmt: skip
        op["requestBody"] = {"required": True, "content": _json(body)}
        op["responses"]["200"] = {"description": "the audio", "content": AUDIO}
    else:
        form = {
            "type": "object",
            "properties": {
                "file": {"type": "string", "format": "binary"}, "model": text,
                "language": {"type": "string"}, "prompt": {"type": "string"},
                "temperature": {"type": "number", "minimum": 0, "maximum": 1},
                "response_format": {
                    "type": "string", "enum": ["json", "text", "srt", "vtt", "verbose_json"]
                },
            },
            "required": ["file", "model"],
        }  # fmt: skip
        op["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": form}}}
        plain = {"text/plain": {"schema": {"type": "string"}}}
        op["responses"]["200"] = {
            "description": "the transcript (JSON, or text, SRT, WebVTT)",
            "content": {**_json({"type": "object"}), **plain},
        }
    op["responses"].update(_errors(OPENAI_ERROR, {**CF_ERRORS, 500: "the model failed"}))
