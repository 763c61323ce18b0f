"""A short-lived cache whose concurrent misses share one lookup (bot.slack.shared_lookup)."""

from __future__ import annotations

import asyncio
import time

from bot.slack.shared_lookup import SharedLookup


async def test_requests_that_miss_together_share_one_lookup() -> None:
    cache: SharedLookup[str, frozenset[str]] = SharedLookup(5.0)
    lookups: list[str] = []
    release = asyncio.Event()

    async def lookup() -> frozenset[str]:
        lookups.append("looked up")
        await release.wait()
        return frozenset({"closed"})

    waiting = [asyncio.ensure_future(cache.cached("district", lookup)) for _ in range(5)]
    await asyncio.sleep(0)
    waiting[0].cancel()  # one request giving up doesn't cancel the others' lookup
    release.set()
    assert await asyncio.gather(*waiting[1:]) == [frozenset({"closed"})] * 4
    assert lookups == ["looked up"]
    # Kept: the next request reads nothing.
    assert await cache.cached("district", lookup) == frozenset({"closed"})
    assert lookups == ["looked up"]


async def test_a_value_not_kept_is_looked_up_again() -> None:
    cache: SharedLookup[str, str | None] = SharedLookup(5.0, keep=lambda v: v is not None)
    lookups: list[str] = []

    async def lookup() -> str | None:
        lookups.append("looked up")
        return None

    assert await cache.cached("U2", lookup) is None
    assert await cache.cached("U2", lookup) is None
    assert len(lookups) == 2


async def test_an_entry_lapses_after_its_ttl_and_can_be_forgotten() -> None:
    cache: SharedLookup[str, int] = SharedLookup(0.05)
    cache.put("a", 1)
    assert cache.get("a") == 1
    time.sleep(0.06)
    assert cache.get("a") is None
    cache.put("b", 2)
    cache.forget("b")
    assert cache.get("b") is None


async def test_status_changes_in_flight_read_the_restricted_statuses_once() -> None:
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager
    from types import SimpleNamespace
    from typing import Any, cast

    from bot.runtime import Runtime
    from bot.slack.incidents import RestrictedStatuses

    reads: list[str] = []
    release = asyncio.Event()

    class Settings:
        async def get(self) -> Any:
            reads.append("settings")
            await release.wait()
            return SimpleNamespace(restricted_statuses=["ready_for_pickup"])

    class FakeRuntime:
        @asynccontextmanager
        async def reads(self) -> AsyncIterator[Any]:
            yield SimpleNamespace(settings=Settings())

    restricted = RestrictedStatuses()
    runtime = cast(Runtime, FakeRuntime())
    waiting = [asyncio.ensure_future(restricted(runtime)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == [frozenset({"ready_for_pickup"})] * 5
    assert reads == ["settings"]
