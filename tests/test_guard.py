"""api/guard.py: the per-token buckets and the Host check, without a server."""

from __future__ import annotations

import pytest

from wai.api.guard import TokenBuckets, _host


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_over_time() -> None:
    clock = Clock()
    b = TokenBuckets(rpm=2, clock=clock)
    assert b.take("k") == 0 and b.take("k") == 0
    assert b.take("k") == pytest.approx(30.0)
    assert b.take("other") == 0
    clock.now = 30.0
    assert b.take("k") == 0


def test_idle_buckets_are_forgotten() -> None:
    clock = Clock()
    b = TokenBuckets(rpm=60, clock=clock)
    for i in range(5000):
        b.take(f"token-{i}")
    assert len(b) == 5000
    clock.now = 0.5  # half a request refilled: all still remembered
    b.take("token-0")
    assert len(b) == 5000
    clock.now = 1.2  # full again, the same as no bucket; token-0 was used at 0.5 s
    b.take("fresh")
    assert len(b) == 2


def test_the_number_of_buckets_is_bounded() -> None:
    clock = Clock()
    b = TokenBuckets(rpm=60, clock=clock, max_keys=100)
    for i in range(1000):
        b.take(f"token-{i}")
    assert len(b) == 100
    # the most recent keys are the ones kept: the last one is still limited
    for _ in range(59):
        b.take("token-999")
    assert b.take("token-999") > 0


def test_a_limited_key_stays_limited_while_others_come_and_go() -> None:
    clock = Clock()
    b = TokenBuckets(rpm=1, clock=clock)
    assert b.take("k") == 0
    for i in range(100):
        clock.now += 0.1
        b.take(f"other-{i}")
    assert b.take("k") > 0


@pytest.mark.parametrize(
    ("header", "host"),
    [
        (b"localhost:8787", "localhost"),
        (b"[::1]:8787", "[::1]"),
        (b"127.0.0.1", "127.0.0.1"),
        (b"Evil.Example:80", "evil.example"),
        (b"::1", "::1"),
    ],
)
def test_host_is_read_without_port(header: bytes, host: str) -> None:
    assert _host({"headers": [(b"host", header)]}) == host
