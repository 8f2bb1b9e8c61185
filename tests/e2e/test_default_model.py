"""The default model keeps answering the catalog when models are configured (settings say so),
and /v1/models lists exactly the ids that answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.conftest import LLAMA2, TOKEN, Server, start_server, stop_server
from wai.catalog import EMBEDDED_NAME, embedded_model_path

CUSTOM = "@cf/acme/custom-model"


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("configured")
    config = tmp / "wai.toml"
    config.write_text(
        f"[engine]\nslots = 1\nctx_per_slot = 512\nbatch_tokens = 256\n"
        f'[models.custom]\npath = "{embedded_model_path()}"\n'
        f'serves = ["{CUSTOM}", "@cf/mistral/mistral-7b-instruct-v0.1"]\n'
    )
    server = start_server(tmp, "--config", str(config), "--token", TOKEN)
    yield server
    stop_server(server)


def _run(server: Server, model: str) -> requests.Response:
    return requests.post(
        server.run_url(model),
        headers=server.auth,
        timeout=60,
        json={"prompt": "Hi", "max_tokens": 2},
    )


def test_unmapped_catalog_ids_go_to_the_embedded_model(configured: Server) -> None:
    r = _run(configured, LLAMA2)
    assert r.status_code == 200 and r.headers["x-wai-model"] == EMBEDDED_NAME


def test_mapped_ids_go_to_their_model(configured: Server) -> None:
    for mid in (CUSTOM, "@cf/mistral/mistral-7b-instruct-v0.1"):
        r = _run(configured, mid)
        assert r.status_code == 200 and r.headers["x-wai-model"] == "custom"


def test_models_lists_catalog_and_custom_ids_once(configured: Server) -> None:
    data = requests.get(f"{configured.url}/v1/models", headers=configured.auth, timeout=10).json()[
        "data"
    ]
    owners = {m["id"]: m["owned_by"] for m in data}
    assert len(owners) == len(data)
    assert owners[LLAMA2] == EMBEDDED_NAME and owners[CUSTOM] == "custom"
    assert owners["@cf/mistral/mistral-7b-instruct-v0.1"] == "custom"
    assert "@cf/acme/none" not in owners
    assert _run(configured, "@cf/acme/none").json()["errors"][0]["code"] == 5007
