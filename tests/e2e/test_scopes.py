"""Tokens scoped to accounts and permissions, on a real server: a token for acc1 is refused on
acc2 on every route (REST, the OpenAI routes under the account, the catalog, usage), its
default account answers where a route names none, a read-only token cannot run inference, a
token given as its SHA-256 works, and each account's allocation is its own whatever URL is
used."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import LLAMA2, Server, start_server, stop_server

TEAM1, TEAM2, READER = "team1-secret-0123456789", "team2-secret-0123456789", "reader-0123456789"
BODY = {"prompt": "Say hi", "max_tokens": 2, "temperature": 0}
CHAT = {"model": LLAMA2, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def _config(tmp: Path, extra: str = "") -> Path:
    hashed = "sha256:" + hashlib.sha256(TEAM1.encode()).hexdigest()
    config = tmp / "wai.toml"
    config.write_text(
        f"""{extra}
[access.team1]
token = "{hashed}"
accounts = ["acc1"]
[access.team2]
token = "{TEAM2}"
accounts = ["acc2"]
[access.reader]
token = "{READER}"
accounts = ["acc1"]
permissions = ["catalog"]
"""
    )
    return config


@pytest.fixture(scope="module")
def scoped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("scopes")
    srv = start_server(
        tmp, "--config", str(_config(tmp)), env={"WAI_USAGE_DB": str(tmp / "usage.db")}
    )
    yield srv
    stop_server(srv)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _denied(r: requests.Response) -> bool:
    """403 with Cloudflare's 10000, or on an OpenAI route OpenAI's shape of it."""
    body: Any = r.json()
    code = body["error"]["code"] if "error" in body else body["errors"][0]["code"]
    return r.status_code == 403 and str(code) in ("10000", "invalid_api_key")


def test_a_token_for_one_account_is_refused_on_another_on_every_route(scoped: Server) -> None:
    base = f"{scoped.url}/client/v4/accounts"
    team1 = _auth(TEAM1)  # configured as its SHA-256 only
    assert requests.post(scoped.run_url(account="acc1"), headers=team1, json=BODY, timeout=60).ok
    refused = [
        requests.post(scoped.run_url(account="acc2"), headers=team1, json=BODY, timeout=60),
        requests.post(f"{base}/acc2/ai/v1/chat/completions", headers=team1, json=CHAT, timeout=60),
        requests.get(f"{base}/acc2/ai/models/search", headers=team1, timeout=60),
        requests.get(
            f"{scoped.url}/wai/v1/usage", headers=team1, params={"account": "acc2"}, timeout=60
        ),
    ]
    assert all(_denied(r) for r in refused), [(r.status_code, r.text[:120]) for r in refused]


def test_routes_without_an_account_use_the_tokens_default_account(scoped: Server) -> None:
    team2 = _auth(TEAM2)
    chat = requests.post(f"{scoped.url}/v1/chat/completions", headers=team2, json=CHAT, timeout=60)
    assert chat.status_code == 200, chat.text
    binding = requests.post(
        f"{scoped.url}/run?version=3",
        headers={**team2, "cf-consn-model-id": f"workers-ai:{LLAMA2}"},
        json={"inputs": BODY},
        timeout=60,
    )
    assert binding.status_code == 200, binding.text
    rows = requests.get(f"{scoped.url}/wai/v1/usage", headers=team2, timeout=10).json()["usage"]
    assert rows and {r["account"] for r in rows} == {"acc2"}  # its own, not team1's acc1


def test_a_read_only_token_reads_the_catalog_and_runs_nothing(scoped: Server) -> None:
    reader = _auth(READER)
    search = requests.get(
        f"{scoped.url}/client/v4/accounts/acc1/ai/models/search", headers=reader, timeout=10
    )
    assert search.status_code == 200
    for r in (
        requests.post(scoped.run_url(account="acc1"), headers=reader, json=BODY, timeout=60),
        requests.post(f"{scoped.url}/v1/chat/completions", headers=reader, json=CHAT, timeout=60),
        requests.get(f"{scoped.url}/wai/v1/usage", headers=reader, timeout=10),
    ):
        assert _denied(r), r.text
    unknown = requests.post(scoped.run_url(account="acc1"), headers=_auth("nope"), json=BODY)
    assert unknown.status_code == 401


def test_an_accounts_allocation_holds_whatever_url_is_used(tmp_path: Path) -> None:
    config = _config(tmp_path, "daily_neurons = 3")
    srv = start_server(
        tmp_path, "--config", str(config), "--token", "plain-token-0123456789",
        env={"WAI_USAGE_DB": str(tmp_path / "usage.db")},
    )  # fmt: skip
    body = {**BODY, "max_tokens": 4, "ignore_eos": True}
    try:
        team1 = _auth(TEAM1)
        assert requests.post(srv.run_url(account="acc1"), headers=team1, json=body).ok
        again = requests.post(f"{srv.url}/v1/chat/completions", headers=team1, json=CHAT)
        assert again.status_code == 429  # acc1's allocation, reached through /v1 as well
        team2 = _auth(TEAM2)
        assert requests.post(srv.run_url(account="acc2"), headers=team2, json=body).ok
        # a plain token's allocation is its own, whatever account the URL names
        plain = _auth("plain-token-0123456789")
        assert requests.post(srv.run_url(account="x1"), headers=plain, json=body).ok
        other = requests.post(srv.run_url(account="x2"), headers=plain, json=body)
        assert other.status_code == 429 and other.json()["errors"][0]["code"] == 3036
    finally:
        stop_server(srv)
