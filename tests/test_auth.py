"""api/auth.py: the token check, hashed tokens, identities and scopes."""

from __future__ import annotations

import hashlib

import pytest

from wai.api.auth import Identity, Tokens, check_scope, digest, open_identity
from wai.api.errors import CFError
from wai.settings import AccessEntry


def _scope(path: str, method: str = "POST") -> dict[str, object]:
    return {"type": "http", "path": path, "method": method, "headers": []}


def test_token_check() -> None:
    tokens = Tokens(["alpha", "beta"], {})
    assert (
        tokens.identify("Bearer beta").token == "sha256:" + hashlib.sha256(b"beta").hexdigest()[:12]
    )
    for header, code in [(None, 9106), ("Bearer gamma", 10000), ("Token beta", 6003)]:
        with pytest.raises(CFError) as info:
            tokens.identify(header)
        assert info.value.code == code


def test_the_scheme_is_read_in_any_case_and_names_one_identity() -> None:
    tokens = Tokens(["alpha"], {})
    keys = {tokens.identify(f"{s} alpha").key for s in ("Bearer", "bearer", "BEARER", "bEARER")}
    assert len(keys) == 1
    opened = {open_identity(f"{s} alpha").key for s in ("Bearer", "bearer", "BeArEr")}
    assert len(opened) == 1 and open_identity(None).key == "open:-"


def test_a_hashed_token_is_the_same_token() -> None:
    hashed = "sha256:" + hashlib.sha256(b"secret-value").hexdigest()
    assert digest(hashed) == digest("secret-value")
    tokens = Tokens([], {"team": AccessEntry(token=hashed, accounts=["acc1"])})
    identity = tokens.identify("Bearer secret-value")
    assert identity.accounts == ("acc1",) and identity.key == "access:team"
    with pytest.raises(CFError):
        tokens.identify(f"Bearer {hashed}")  # the digest itself is no token


def test_scopes_refuse_other_accounts_and_missing_permissions() -> None:
    reader = Identity("t", "access:r", ("acc1",), frozenset({"catalog"}))
    check_scope(reader, _scope("/client/v4/accounts/acc1/ai/models/search", "GET"))
    for path, method in [
        ("/client/v4/accounts/acc2/ai/models/search", "GET"),  # another account
        ("/client/v4/accounts/acc1/ai/run/@cf/meta/llama-2-7b-chat-int8", "POST"),  # inference
        ("/v1/chat/completions", "POST"),
        ("/wai/v1/usage", "GET"),
    ]:
        with pytest.raises(CFError) as info:
            check_scope(reader, _scope(path, method))
        assert (info.value.code, info.value.status) == (10000, 403)


def test_accounts_and_allocation_keys() -> None:
    scoped = Identity("t", "access:a", ("acc1", "acc2"))
    assert scoped.account_for("/client/v4/accounts/acc2/ai/run/x") == "acc2"
    assert scoped.account_for("/v1/chat/completions") == "acc1"  # its default account
    assert scoped.allocation("/run") == {"account": "acc1"}
    plain = Identity("sha256:abc", "sha256:abc", own_allocation=True)
    assert plain.account_for("/client/v4/accounts/any/ai/run/x") == "any"
    assert plain.allocation("/client/v4/accounts/any/ai/run/x") == {"token": "sha256:abc"}
    assert Identity("-", "open:-").allocation("/v1/completions") == {"account": "default"}
