"""The outbox worker: delivers queued side effects (email, Slack posts) with retries.

A handler is either a plain `async def handler(payload)` or an object with some of these
methods (all optional except one way to deliver):

- `async deliver(uow, payload)`: deliver inside the worker's transaction, so whatever the
  handler writes (a notice marked sent) commits together with the outbox row;
- `async start_batch(uow, payloads)` / `async end_batch()`: around each claimed batch, with
  the payloads of the handler's rows (to load them in one go, to reuse one connection);
- `async on_failure(uow, payload, error, gave_up)`: after a failed attempt, in the same
  transaction as the row's new state; `gave_up` is True when the row will not be retried;
- `async before_commit(uow)`: just before the worker commits, to write what the handler
  kept back (the sender writes its notices' new states with one statement per commit);
- `async close()`: when the worker stops.

A handler raises `GiveUp` for a failure that retrying can't fix: the row fails at once.

Settled rows are committed in small groups (`commit_every`, `commit_seconds`), each together
with whatever the handler wrote for them. A stop (the task cancelled on SIGTERM) lets the row in
flight finish, commits what was settled and hands the batch's untouched rows straight back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from bot.heartbeat import note_error, note_success
from storage.outbox import (
    HEARTBEAT,
    LEASE,
    Claimed,
    claim_batch,
    renew_lease,
    settle_failed,
    settle_sent,
    write_settled,
)
from storage.uow import SqlUnitOfWork, UnitOfWorkFactory
from workflows.clock import Clock

log = logging.getLogger("devicecare.worker")
T = TypeVar("T")

# Stop working through a batch when less than this is left of its lease: past the lease another
# worker may claim the same rows, so a late delivery could be a second one.
LEASE_MARGIN = LEASE / 5
# Delivered rows are committed in groups: at most this many, and at least this often. A crash
# (not a stop: SIGTERM commits first) can repeat at most one group's deliveries.
COMMIT_EVERY = 50
COMMIT_SECONDS = 1.0


class GiveUp(Exception):
    """A delivery failure that retrying can't fix (no address left, mailbox refused)."""


class StoreHandler(Protocol):
    async def deliver(self, uow: SqlUnitOfWork, payload: dict[str, Any]) -> None: ...


Handler = Callable[[dict[str, Any]], Awaitable[None]] | StoreHandler


async def _run_to_end(step: Awaitable[T]) -> T:
    """Run `step` to its end even if the caller is cancelled meanwhile (then re-raise the
    cancellation): a message half-sent or a commit half-done must not be cut off by a stop."""
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            # Said once, with where the step is, so a stop that waits long can be traced.
            where = " <- ".join(
                f"{frame.f_code.co_name} ({frame.f_code.co_filename.rsplit('/', 1)[-1]}:"
                f"{frame.f_lineno})"
                for frame in _innermost_frames(task)
            )
            log.info("outbox: stopping after the step in flight: %s", where or "starting")
            await task
        raise


def _innermost_frames(task: asyncio.Future[Any]) -> list[Any]:
    """The frames a task's coroutine is suspended in, innermost first (as far as they go)."""
    frames: list[Any] = []
    coro: Any = task.get_coro() if isinstance(task, asyncio.Task) else None
    while coro is not None and len(frames) < 12:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames[::-1]


def _error_text(exc: Exception) -> str:
    return str(exc) if isinstance(exc, GiveUp) else f"{type(exc).__name__}: {exc}"


class _Batch:
    """One claimed batch in flight: the worker's unit of work, the settled rows not written yet,
    and the handlers to tell before a commit (`before_commit`) and after the batch
    (`end_batch`)."""

    def __init__(self, uow: SqlUnitOfWork) -> None:
        self.uow = uow
        self.unwritten: list[Claimed] = []
        self.started: list[Any] = []
        self.writers: list[Any] = []

    async def commit(self) -> None:
        """Write the settled rows and what the handlers kept back, then commit them together."""
        rows, self.unwritten = self.unwritten, []
        await write_settled(self.uow, rows)
        for handler in self.writers:
            await handler.before_commit(self.uow)
        await self.uow.commit()


class _Heartbeat:
    """Renews the lease of a batch's unsettled rows on its own connection while the worker
    delivers, so one slow message can't let the lease lapse, and a crashed worker's rows (no
    heartbeat any more) return to the queue within one lease."""

    def __init__(
        self,
        stores: UnitOfWorkFactory,
        clock: Clock,
        rows: list[Claimed],
        every: float,
    ) -> None:
        self.stores = stores
        self.clock = clock
        self.pending = {row.id: row for row in rows}
        self.lost: set[int] = set()
        self.every = every
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def settled(self, row: Claimed) -> None:
        self.pending.pop(row.id, None)

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=self.every)
                return
            except TimeoutError:
                pass
            rows = list(self.pending.values())
            if not rows:
                continue
            try:
                async with self.stores() as uow:
                    held = await renew_lease(uow, rows, self.clock.now())
            except Exception:  # noqa: BLE001 - the worker's margin check still guards the lease
                log.warning("outbox: renewing the lease failed", exc_info=True)
                continue
            for row in rows:
                if row.id not in held and row.id in self.pending:
                    self.lost.add(row.id)

    async def stop(self) -> None:
        """Let a renewal in progress finish (never cut a commit off), then end."""
        self._stop.set()
        if self._task is not None:
            await asyncio.shield(self._task)


class OutboxWorker:
    """Runs the handlers registered for each kind; kinds without a handler wait in the queue."""

    def __init__(
        self,
        stores: UnitOfWorkFactory,
        clock: Clock,
        handlers: Mapping[str, Handler],
        *,
        idle_seconds: float = 2.0,
        batch_size: int = 50,
        commit_every: int = COMMIT_EVERY,
        commit_seconds: float = COMMIT_SECONDS,
        lease_margin: timedelta = LEASE_MARGIN,
        heartbeat_seconds: float = HEARTBEAT.total_seconds(),
    ) -> None:
        self.stores = stores
        self.clock = clock
        self.handlers = dict(handlers)
        self.idle_seconds = idle_seconds
        self.batch_size = batch_size
        self.commit_every = max(1, commit_every)
        self.commit_seconds = commit_seconds
        self.lease_margin = lease_margin
        self.heartbeat_seconds = heartbeat_seconds

    def _distinct_handlers(self) -> list[Handler]:
        seen: dict[int, Handler] = {}
        for handler in self.handlers.values():
            seen.setdefault(id(handler), handler)
        return list(seen.values())

    async def run_once(self) -> int:
        """Deliver one batch; returns how many rows were handled."""
        if not self.handlers:
            return 0
        heartbeat: _Heartbeat | None = None
        try:
            async with self.stores() as uow:
                rows = await claim_batch(
                    uow,
                    self.clock.now(),
                    kinds=frozenset(self.handlers),
                    limit=self.batch_size,
                )
                if not rows:
                    return 0
                heartbeat = _Heartbeat(self.stores, self.clock, rows, self.heartbeat_seconds)
                heartbeat.start()
                await self._work(uow, rows, heartbeat)
                return len(rows)
        finally:
            # After the unit of work is closed: on SQLite a renewal waits for the worker's write
            # lock, which is released by then.
            if heartbeat is not None:
                await heartbeat.stop()

    async def _work(self, uow: SqlUnitOfWork, rows: list[Claimed], heartbeat: _Heartbeat) -> None:
        batch = _Batch(uow)
        settled = 0  # rows delivered or failed, in order
        last_commit = time.monotonic()
        try:
            await self._start_batch(batch, rows)
            for row in rows:
                if self.clock.now() >= row.next_attempt_at - self.lease_margin:
                    log.warning("outbox: lease nearly over; leaving the rest of the batch")
                    break
                if row.id in heartbeat.lost:
                    # Another worker holds it now; settling it here would deliver twice.
                    settled += 1
                    continue
                try:
                    await _run_to_end(self._deliver(batch, row))
                finally:
                    settled += 1
                    heartbeat.settled(row)
                    batch.unwritten.append(row)
                if (
                    len(batch.unwritten) >= self.commit_every
                    or time.monotonic() - last_commit >= self.commit_seconds
                ):
                    await _run_to_end(batch.commit())
                    last_commit = time.monotonic()
            if batch.unwritten:
                await _run_to_end(batch.commit())
        except asyncio.CancelledError:
            # Stopping (SIGTERM): the row in flight was finished; record what was settled,
            # so it isn't delivered again, and hand the untouched rows back at once.
            for row in rows[settled:]:
                row.attempts -= 1
                row.next_attempt_at = self.clock.now()
                batch.unwritten.append(row)
            await _run_to_end(batch.commit())
            raise
        finally:
            for handler in batch.started:
                try:
                    await handler.end_batch()
                except Exception:  # noqa: BLE001 - the batch itself is settled already
                    log.warning("outbox: ending a batch failed", exc_info=True)

    async def _start_batch(self, batch: _Batch, rows: list[Claimed]) -> None:
        by_handler: dict[int, tuple[Handler, list[dict[str, Any]]]] = {}
        for row in rows:
            handler = self.handlers[row.kind]
            by_handler.setdefault(id(handler), (handler, []))[1].append(dict(row.payload))
        for handler, payloads in by_handler.values():
            if hasattr(handler, "end_batch"):
                batch.started.append(handler)
            if hasattr(handler, "before_commit"):
                batch.writers.append(handler)
            start = getattr(handler, "start_batch", None)
            if start is not None:
                await start(batch.uow, payloads)

    async def _deliver(self, batch: _Batch, row: Claimed) -> None:
        uow = batch.uow
        handler = self.handlers[row.kind]
        payload = dict(row.payload)
        try:
            deliver = getattr(handler, "deliver", None)
            if deliver is not None:
                await deliver(uow, payload)
            else:
                # A plain handler opens its own transaction (Slack posts do); ours must not hold
                # SQLite's write lock meanwhile, so what is settled so far is committed first.
                if batch.unwritten or uow.in_transaction():
                    await _run_to_end(batch.commit())
                await handler(payload)  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the row
            error = _error_text(exc)
            log.warning(
                "outbox %s #%s failed (attempt %s): %s", row.kind, row.id, row.attempts, error
            )
            settle_failed(row, self.clock.now(), error)
            if isinstance(exc, GiveUp):
                row.status = "failed"
            on_failure = getattr(handler, "on_failure", None)
            if on_failure is not None:
                await on_failure(uow, payload, row.last_error or error, row.status == "failed")
        else:
            settle_sent(row, self.clock.now())

    async def close(self) -> None:
        for handler in self._distinct_handlers():
            close = getattr(handler, "close", None)
            if close is not None:
                try:
                    await close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    log.warning("outbox: closing a handler failed", exc_info=True)

    async def run_forever(self) -> None:
        if not self.handlers:
            log.info("outbox worker: no delivery channel is configured; idle")
        try:
            while True:
                try:
                    handled = await self.run_once()
                except Exception as exc:  # noqa: BLE001 - a database blip must not kill the worker
                    log.exception("outbox worker: batch failed; retrying")
                    note_error("worker", f"{type(exc).__name__}: {exc}", self.clock.now())
                    handled = 0
                else:
                    note_success("worker", self.clock.now())
                if not handled:
                    await asyncio.sleep(self.idle_seconds)
        finally:
            await self.close()
