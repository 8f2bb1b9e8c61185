"""The catalog routes through the official `cloudflare` SDK, requests and the JSON schema they
publish: discovery the Workers AI way."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cloudflare
import jsonschema  # type: ignore[import-untyped]
import pytest
import requests

from tests.conftest import LLAMA2, TOKEN, Server
from wai.catalog import EMBEDDED_NAME, Catalog

CATALOG = Catalog().specs  # wai's own entries, then the rest of Workers AI's catalog


@pytest.fixture
def cf(server: Server) -> Iterator[cloudflare.Cloudflare]:
    with cloudflare.Cloudflare(
        api_token=TOKEN, base_url=f"{server.url}/client/v4", max_retries=0
    ) as client:
        yield client


def _props(item: dict[str, Any]) -> dict[str, Any]:
    return {p["property_id"]: p["value"] for p in item["properties"]}


def test_the_sdk_lists_every_model_across_pages(cf: cloudflare.Cloudflare) -> None:
    items: list[Any] = list(cf.ai.models.list(account_id="acc", per_page=7))
    names = [it["name"] for it in items]
    assert names == [spec.id for spec in CATALOG]  # all of them, once, in catalog order
    int8 = items[0]
    assert int8["id"] == "9c95c39d-45b3-4163-9631-22f0c0dc3b14"
    assert int8["task"]["name"] == "Text Generation"
    props = _props(int8)
    assert props["context_window"] == "8192"
    assert props["wai_local_model"] == EMBEDDED_NAME
    # answered by the stand-in, and its real weights a `wai pull` away
    assert props["wai_weights"] == "stand-in"
    assert props["wai_pull"] == "wai pull @cf/meta/llama-2-7b-chat-int8"
    assert all(isinstance(v, str) for it in items for v in _props(it).values())


def test_search_filters_and_pages(server: Server) -> None:
    url = f"{server.url}/client/v4/accounts/acc/ai/models/search"

    def get(**params: Any) -> dict[str, Any]:
        r = requests.get(url, headers=server.auth, params=params, timeout=10)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert body["success"] is True and body["errors"] == []
        return body

    mistral = get(search="MISTRAL-7b")["result"]
    assert mistral and all("mistral-7b" in it["name"] for it in mistral)
    assert {it["name"] for it in get(author="thebloke")["result"]} == {
        s.id for s in CATALOG if s.id.split("/")[1] == "thebloke"
    }
    text_generation = [s for s in CATALOG if s.task.name == "Text Generation"]
    assert len(get(task="text generation", per_page=1000)["result"]) == len(text_generation)
    embeddings = get(task="Text Embeddings")["result"]
    assert len(embeddings) == 7
    images = get(task="Text-to-Image", per_page=100)["result"]
    assert images and all(_props(it)["wai_served"] == "false" for it in images)
    by_task = {s.task.name for s in CATALOG}
    assert sum(get(task=t, per_page=1000)["result_info"]["total_count"] for t in by_task) == len(
        CATALOG
    )
    page2 = get(per_page=5, page=2)
    assert [it["name"] for it in page2["result"]] == [s.id for s in CATALOG[5:10]]
    assert page2["result_info"] == {
        "page": 2,
        "per_page": 5,
        "count": 5,
        "total_count": len(CATALOG),
    }
    assert get(page=1000)["result"] == []  # past the end: empty, not an error
    bad_params = ({"per_page": "x"}, {"page": "0"}, {"per_page": "100000"}, {"page": ""})
    for bad in (*bad_params, {"hide_experimental": ""}):  # empty: neither a number nor a bool
        r = requests.get(url, headers=server.auth, params=bad, timeout=10)
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == 5006, bad


def test_the_catalog_needs_a_token(server: Server) -> None:
    r = requests.get(f"{server.url}/client/v4/accounts/acc/ai/models/search", timeout=10)
    assert r.status_code == 400 and r.json()["success"] is False  # as for every route


def test_the_sdk_gets_a_schema_that_validates_what_the_server_takes(
    cf: cloudflare.Cloudflare, server: Server
) -> None:
    schema = cf.ai.models.schema.get(account_id="acc", model=LLAMA2).to_dict()
    inp = schema["input"]
    assert (inp["type"], inp["additionalProperties"]) == ("object", True) and inp["description"]
    jsonschema.Draft202012Validator.check_schema(inp)
    good = {"prompt": "Tell me a story", "max_tokens": 8, "temperature": 0}
    jsonschema.validate(good, inp)
    for bad in ({}, {"prompt": "a", "messages": [{"role": "user", "content": "b"}]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, inp)
    # the per-model range: max_tokens fits the local model's context window
    cap = inp["properties"]["max_tokens"]["maximum"]
    r = requests.post(
        server.run_url(LLAMA2),
        headers=server.auth,
        json={"prompt": "Hi", "max_tokens": cap + 1},
        timeout=30,
    )
    assert r.status_code == 400
    assert {"application/json", "text/event-stream"} == {
        alt["contentType"] for alt in schema["output"]["oneOf"]
    }
    with pytest.raises(cloudflare.BadRequestError) as info:
        cf.ai.models.schema.get(account_id="acc", model="@cf/nope/nothing")
    assert "5007" in str(info.value)


def test_the_binding_lists_models_on_its_own_path(server: Server) -> None:
    r = requests.get(f"{server.url}/ai-api/models/search?per_page=2", headers=server.auth)
    assert r.status_code == 200 and len(r.json()["result"]) == 2
