"""The API's per-key token bucket: a burst at once, then the average rate; counted per instance."""

from __future__ import annotations

import pytest

from bot.channels.http.ratelimit import RateLimiter


def test_a_key_gets_its_burst_then_waits_for_the_next_token() -> None:
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.check("key", now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.check("key", now=100.0) == pytest.approx(0.5)  # one token per 1/rate s
    assert limiter.check("key", now=100.25) == pytest.approx(0.25)  # refused: not counted
    assert limiter.check("key", now=100.5) == 0.0
    assert limiter.check("key", now=100.5) > 0


def test_an_idle_key_refills_up_to_its_burst_only() -> None:
    limiter = RateLimiter(rate=1.0, burst=2)
    limiter.check("key", now=0.0)
    limiter.check("key", now=0.0)
    # An hour idle is worth ``burst`` requests, not 3 600.
    assert [limiter.check("key", now=3600.0) for _ in range(3)][-1] == pytest.approx(1.0)


def test_keys_do_not_share_an_allowance() -> None:
    limiter = RateLimiter(rate=1.0, burst=1)
    assert limiter.check("chu-a", now=0.0) == 0.0
    assert limiter.check("chu-a", now=0.0) > 0
    assert limiter.check("chu-b", now=0.0) == 0.0


def test_each_instance_counts_on_its_own() -> None:
    """Documented (ratelimit's docstring, docs/integration.md): two instances behind a load
    balancer each allow a key its whole burst."""
    first, second = RateLimiter(rate=1.0, burst=2), RateLimiter(rate=1.0, burst=2)
    allowed = [
        limiter.check("key", now=0.0) == 0.0 for limiter in (first, second, first, second, first)
    ]
    assert allowed == [True, True, True, True, False]
