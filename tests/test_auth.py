"""api/auth.py: the token check."""

from __future__ import annotations

import pytest

from wai.api.auth import check_authorization
from wai.api.errors import CFError


def test_token_check() -> None:
    tokens = [b"alpha", b"beta"]
    check_authorization("Bearer beta", tokens)
    for header, code in [(None, 9106), ("Bearer gamma", 10000), ("Token beta", 6003)]:
        with pytest.raises(CFError) as info:
            check_authorization(header, tokens)
        assert info.value.code == code
