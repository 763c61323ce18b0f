"""`QueuedWritersPool`: the writers' connection pool, with writers waiting their turn in a fair
queue instead of against the pool's timeout.

In a burst (bench/slack_burst.py) writes acked to the person before they run queue for the
few writer connections. SQLAlchemy's pool lets each wait `pool_timeout` (30 s), and its
asyncio queue is not first come, first served: a writer it wakes can find the connection
already taken by one that arrived later, and goes to the back again. Some writers waited
past 30 s and failed after their acks. Here a checkout first takes a turn from a first come,
first served semaphore with as many turns as the pool lends connections, so the pool itself
always has one ready; the wait for a turn has a much longer deadline of its own.

A task that already holds a writer connection and opens another (a unit of work inside a unit
of work) does not queue for a turn: it would wait behind writers that may be waiting for its
own first connection. It takes one of the connections kept back for this, under the pool's
timeout as before. SQLite has no such connection (one writer at a time: the inner write
would wait for the outer's write lock anyway).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from sqlalchemy import exc
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.util import await_

DEFAULT_TURN_WAIT_SECONDS = 600.0


class WriteQueueTimeout(exc.TimeoutError):
    """A write waited longer than the deadline for its turn at the database."""


class QueuedWritersPool(AsyncAdaptedQueuePool):
    """Lends `pool_size + max_overflow - reserved` connections in turn, first come first
    served, and the `reserved` rest to tasks that already hold one."""

    turn_wait_seconds: float = DEFAULT_TURN_WAIT_SECONDS
    reserved: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._turns: asyncio.Semaphore | None = None
        self._holders: dict[ConnectionPoolEntry, asyncio.Task[Any]] = {}
        self._held_by: Counter[asyncio.Task[Any]] = Counter()

    def configure(self, *, turn_wait_seconds: float, reserved: int) -> None:
        if not 0 <= reserved < self.size() + max(self._max_overflow, 0):
            raise ValueError("the pool must keep at least one connection for queued writers")
        self.turn_wait_seconds = turn_wait_seconds
        self.reserved = reserved
        self._turns = None

    @property
    def writers(self) -> int:
        """How many connections queued writers take turns at."""
        return self.size() + max(self._max_overflow, 0) - self.reserved

    @property
    def turns(self) -> asyncio.Semaphore:
        # Made on first use, so it belongs to the event loop that uses the pool.
        if self._turns is None:
            self._turns = asyncio.Semaphore(self.writers)
        return self._turns

    def _do_get(self) -> ConnectionPoolEntry:
        task = asyncio.current_task()
        if task is None or self._held_by[task]:
            return super()._do_get()
        self._take_turn()
        try:
            record = super()._do_get()
        except BaseException:
            self.turns.release()
            raise
        self._holders[record] = task
        self._held_by[task] += 1
        return record

    def _take_turn(self) -> None:
        try:
            await_(asyncio.wait_for(self.turns.acquire(), self.turn_wait_seconds))
        except TimeoutError:
            raise WriteQueueTimeout(
                f"the database was busy: this change waited {self.turn_wait_seconds:g} s for "
                "its turn behind other changes and was not made"
            ) from None

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        task = self._holders.pop(record, None)
        try:
            super()._do_return_conn(record)
        finally:
            if task is not None:
                self._held_by[task] -= 1
                if not self._held_by[task]:
                    del self._held_by[task]
                self.turns.release()

    def recreate(self) -> QueuedWritersPool:
        pool = super().recreate()
        assert isinstance(pool, QueuedWritersPool)
        pool.configure(turn_wait_seconds=self.turn_wait_seconds, reserved=self.reserved)
        return pool
