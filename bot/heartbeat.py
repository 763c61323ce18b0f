"""Each long-running process writes a heartbeat to the database every HEARTBEAT_SECONDS.

Code anywhere in the process notes what happened (`note_success`, `note_error`, `count`); the
next heartbeat writes it to `service_facts`, where the web process finds it for /readyz and
/metrics. Counters are process-wide and go with whichever part's heartbeat runs first, so a
`serve` process running every part counts each event once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from storage.service_facts import Beat, record_beat
from storage.uow import UnitOfWorkFactory
from workflows.clock import Clock

log = logging.getLogger("devicecare.heartbeat")

HEARTBEAT_SECONDS = 15.0
INSTANCE = f"{socket.gethostname()}:{os.getpid()}"
SLACK_ERRORS = "slack_api_errors"  # counter keys: "slack_api_errors|chat.postMessage|error"


@dataclass
class _Pending:
    success_at: datetime | None = None
    error: str | None = None
    error_at: datetime | None = None


_pending: dict[str, _Pending] = {}
_counters: Counter[str] = Counter()


def note_success(process: str, at: datetime) -> None:
    """`process` did its job at `at` (the mail reader polled the mailbox)."""
    _pending.setdefault(process, _Pending()).success_at = at


def note_error(process: str, error: str, at: datetime) -> None:
    """`process` failed at `at`; only the first line is kept (a database error's next lines
    hold the statement and its parameters)."""
    first = error.strip().splitlines()[0] if error.strip() else "error"
    pending = _pending.setdefault(process, _Pending())
    pending.error, pending.error_at = first, at


def count(key: str, amount: int = 1) -> None:
    """Add to a running total kept in the database (e.g. "slack_api_errors|method|error")."""
    _counters[key] += amount


def slack_error_key(method: str, error: str) -> str:
    return f"{SLACK_ERRORS}|{method}|{error}"


def discard_pending() -> None:
    """Forget what no heartbeat has written yet (a fresh start for a test)."""
    _pending.clear()
    _counters.clear()


def _take(process: str, now: datetime) -> Beat:
    pending = _pending.pop(process, _Pending())
    counters = dict(_counters)
    _counters.clear()
    return Beat(
        process,
        INSTANCE,
        now,
        success_at=pending.success_at,
        error=pending.error,
        error_at=pending.error_at,
        counters=counters,
    )


def _give_back(beat: Beat) -> None:
    """A heartbeat that couldn't be written keeps its news for the next one."""
    pending = _pending.setdefault(beat.process, _Pending())
    if pending.success_at is None:
        pending.success_at = beat.success_at
    if pending.error is None and beat.error is not None:
        pending.error, pending.error_at = beat.error, beat.error_at
    _counters.update(beat.counters)


async def beat_once(stores: UnitOfWorkFactory, clock: Clock, process: str) -> bool:
    """Write one heartbeat for `process`; False (and the news kept) if the database refused."""
    beat = _take(process, clock.now())
    try:
        async with stores() as uow:
            await record_beat(uow, beat)
    except Exception:  # noqa: BLE001 - a database blip must not stop the process
        _give_back(beat)
        log.warning("couldn't write the %s heartbeat", process, exc_info=True)
        return False
    return True


async def run_heartbeat(
    stores: UnitOfWorkFactory,
    clock: Clock,
    process: str,
    stop: asyncio.Event,
    every: float = HEARTBEAT_SECONDS,
) -> None:
    """Beat now and then every `every` seconds until `stop`; a last beat on the way out
    writes the counters still held."""
    while not stop.is_set():
        await beat_once(stores, clock, process)
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
        except TimeoutError:
            continue
    await beat_once(stores, clock, process)


def start_heartbeats(
    stores: UnitOfWorkFactory,
    clock: Clock,
    processes: Iterable[str],
    stop: asyncio.Event,
) -> list[asyncio.Task[None]]:
    return [
        asyncio.create_task(run_heartbeat(stores, clock, name, stop), name=f"{name} heartbeat")
        for name in processes
    ]
