"""Values kept a few seconds by key, where requests that miss together share one lookup: when
an entry lapses mid-burst, one query runs, not one per request in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Far above what a district has (hundreds of staff, one runtime): never grow unbounded.
MOST_ENTRIES = 10_000


def _always(_value: object) -> bool:
    return True


class SharedLookup(Generic[K, V]):
    """`lookup()`'s value for a key, kept for `ttl` seconds when `keep(value)` says so."""

    def __init__(self, ttl: float, *, keep: Callable[[V], bool] = _always) -> None:
        self.ttl = ttl
        self.keep = keep
        self._entries: dict[K, tuple[float, V]] = {}
        self._pending: dict[K, asyncio.Future[V]] = {}

    def get(self, key: K) -> V | None:
        """The value kept for `key`, or None once it lapsed (or was never kept)."""
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: K, value: V) -> None:
        if len(self._entries) > MOST_ENTRIES:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl, value)

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    async def resolve(self, key: K, lookup: Callable[[], Awaitable[V]]) -> V:
        """`lookup()`'s value, kept for `ttl`; requests that call this for the same key while
        a lookup runs wait for that one."""
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._looked_up(key, lookup))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        # Shielded: one request giving up doesn't cancel the lookup the others wait for.
        return await asyncio.shield(pending)

    async def cached(self, key: K, lookup: Callable[[], Awaitable[V]]) -> V:
        """The kept value, or `resolve`'s."""
        found = self.get(key)
        return found if found is not None else await self.resolve(key, lookup)

    async def _looked_up(self, key: K, lookup: Callable[[], Awaitable[V]]) -> V:
        value = await lookup()
        if self.keep(value):
            self.put(key, value)
        return value
