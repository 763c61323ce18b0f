"""The sliding-window limiter on its own, with a clock the test moves."""

from __future__ import annotations

import pytest

from bot.web.rate_limit import SlidingWindowLimiter


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_allows_the_limit_then_refuses_until_the_oldest_request_leaves_the_window() -> None:
    ticks = Ticks()
    limiter = SlidingWindowLimiter(3, now=ticks)
    assert [limiter.check("1.2.3.4").allowed for _ in range(3)] == [True, True, True]
    ticks.now += 20
    refused = limiter.check("1.2.3.4")
    assert not refused.allowed and refused.retry_after_seconds == 40
    ticks.now += 39.5
    assert limiter.check("1.2.3.4").retry_after_seconds == 1  # never says 0 while refusing
    ticks.now += 0.5
    assert limiter.check("1.2.3.4").allowed  # the first three are a minute old now


def test_refused_requests_do_not_extend_the_wait() -> None:
    ticks = Ticks()
    limiter = SlidingWindowLimiter(1, now=ticks)
    assert limiter.check("a").allowed
    for _ in range(10):
        ticks.now += 5
        assert not limiter.check("a").allowed
    ticks.now += 10
    assert limiter.check("a").allowed


def test_clients_are_counted_apart_and_the_oldest_forgotten_past_the_limit() -> None:
    ticks = Ticks()
    limiter = SlidingWindowLimiter(1, max_clients=2, now=ticks)
    assert limiter.check("a").allowed
    assert limiter.check("b").allowed
    assert not limiter.check("a").allowed
    assert limiter.check("c").allowed  # "b" was seen least recently and is forgotten
    assert len(limiter) == 2
    assert limiter.check("b").allowed


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        SlidingWindowLimiter(0)
