"""The catalog routes: model search and model schema, as Workers AI answers them (spec §6.1,
§6.2), so that `client.ai.models.list()` and `client.ai.models.schema.get()` of the official
SDK, and the binding's `env.AI.models()`, work against this server.

Every id this server resolves is listed: the Workers AI catalog (each answered by the local
model configured for it, or by the default one) and configured ids outside it. Each item says
which local model answers it (property `wai_local_model`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from wai.api.errors import NO_SUCH_MODEL, CFError, bad_input
from wai.catalog import M2M100, OWN_SHAPE_KINDS, ModelSpec
from wai.errors import RequestError, UnknownModel, UnservedTask
from wai.runtime import Runtime
from wai.schemas.embeddings import EMBEDDING_OUTPUT_SCHEMA, embedding_input_schema
from wai.schemas.reranking import RERANK_OUTPUT_SCHEMA, rerank_input_schema
from wai.schemas.text_generation import OUTPUT_JSON_SCHEMA, input_json_schema

router = APIRouter()

DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 1000
SOURCE = 1  # Workers AI's own models; the only source this server has


def _envelope(result: Any, **extra: Any) -> dict[str, Any]:
    return {"result": result, "success": True, "errors": [], "messages": [], **extra}


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_input(f"'{name}': must be an integer") from None
    if not lo <= value <= hi:
        raise bad_input(f"'{name}': must be between {lo} and {hi}")
    return value


def _bool_param(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false").lower()  # present but empty: refused
    if raw not in ("true", "false", "1", "0"):
        raise bad_input(f"'{name}': must be true or false")
    return raw in ("true", "1")


def item(runtime: Runtime, spec: ModelSpec) -> dict[str, Any]:
    """One search result, shaped as Workers AI's (spec §6.1): properties are strings."""
    local = runtime.models.model_for(spec.id) or ""
    window = spec.context_window or runtime.context_window(spec.id)
    properties = []
    if window:
        properties.append({"property_id": "context_window", "value": str(window)})
    if spec.dimensions:
        properties.append({"property_id": "output_dimensions", "value": str(spec.dimensions)})
    facts = spec.facts
    if facts is not None and facts.planned_deprecation_date:
        properties.append(
            {"property_id": "planned_deprecation_date", "value": facts.planned_deprecation_date}
        )
    if spec.kind is None or runtime.models.needs_weights(spec.id):
        properties.append({"property_id": "wai_served", "value": "false"})
        if spec.kind is not None:  # translation: no stand-in, its weights to pull
            command = runtime.models.stand_in(spec.id)[1] or f"wai pull {M2M100}"
            properties.append({"property_id": "wai_pull", "value": command})
    else:
        stand_in, pull = runtime.models.stand_in(spec.id)
        weights = "stand-in" if stand_in else "own"
        properties.append({"property_id": "wai_weights", "value": weights})
        if pull is not None:
            properties.append({"property_id": "wai_pull", "value": pull})
    properties.append({"property_id": "wai_local_model", "value": local})
    description = (
        facts.description
        if facts is not None and facts.description
        else f"{spec.task.name} model {spec.id}"
    )
    return {
        "id": spec.uuid,
        "source": SOURCE,
        "name": spec.id,
        "description": f"{description} (served here by {local})" if local else description,
        "task": {
            "id": spec.task.id,
            "name": spec.task.name,
            "description": spec.task.description,
        },
        "created_at": facts.created_at if facts is not None and facts.created_at else None,
        "tags": [],
        "properties": properties,
    }


def _matches(request: Request, spec: ModelSpec) -> bool:
    q = request.query_params
    text = (q.get("search") or "").lower()
    described = spec.facts.description if spec.facts and spec.facts.description else ""
    if text and text not in spec.id.lower() and text not in described.lower():
        return False
    task = (q.get("task") or "").lower()
    if task and task not in (spec.task.name.lower(), spec.task.id):
        return False
    author = (q.get("author") or "").lower()
    return not (author and author != spec.author.lower())


async def search(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    try:
        page = _int_param(request, "page", 1, 1, 1_000_000)
        per_page = _int_param(request, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
        source = _int_param(request, "source", SOURCE, 0, 1_000_000)
        _bool_param(request, "hide_experimental")
        _bool_param(request, "include_deprecated")
    except CFError as e:
        return e.response()
    specs = [runtime.models.spec_for(mid) for mid in runtime.models.known_ids()]
    found = [s for s in specs if source == SOURCE and _matches(request, s)]
    # past the last page: an empty list (the SDK pages until one comes back empty)
    shown = found[(page - 1) * per_page : page * per_page]
    info = {"page": page, "per_page": per_page, "count": len(shown), "total_count": len(found)}
    return JSONResponse(_envelope([item(runtime, s) for s in shown], result_info=info))


async def schema(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    model = request.query_params.get("model")
    if not model:
        return bad_input("'model': required").response()
    spec = runtime.models.catalog.get(model)
    if spec is not None and spec.kind is None and spec.schema is not None:
        return JSONResponse(_envelope(spec.schema))  # Workers AI's own, for a task not run here
    try:
        runtime.name_for(model)
    except UnservedTask as e:
        return CFError.inference(400, NO_SUCH_MODEL, e.message).response()
    except UnknownModel:
        return CFError.inference(400, NO_SUCH_MODEL, f"No such model: {model}").response()
    except RequestError:
        pass  # known, but its model failed to load: the schema is still the id's
    spec = runtime.models.spec_for(model)
    kind = spec.kind
    if kind in OWN_SHAPE_KINDS and spec.schema is not None:
        return JSONResponse(_envelope(spec.schema))  # served in Workers AI's own shapes
    if kind == "text-embeddings":
        schemas = {"input": embedding_input_schema(), "output": EMBEDDING_OUTPUT_SCHEMA}
        return JSONResponse(_envelope(schemas))
    if kind == "reranking":
        schemas = {"input": rerank_input_schema(), "output": RERANK_OUTPUT_SCHEMA}
        return JSONResponse(_envelope(schemas))
    cap = runtime.settings.limits.max_tokens
    window = runtime.context_window(model)
    limit = min(cap, window - 1) if window else cap
    return JSONResponse(
        _envelope({"input": input_json_schema(limit), "output": OUTPUT_JSON_SCHEMA})
    )


router.add_api_route("/client/v4/accounts/{account_id}/ai/models/search", search, methods=["GET"])
router.add_api_route("/client/v4/accounts/{account_id}/ai/models/schema", schema, methods=["GET"])
# the Worker binding's env.AI.models(): same answer, on the binding's host
router.add_api_route("/ai-api/models/search", search, methods=["GET"])
