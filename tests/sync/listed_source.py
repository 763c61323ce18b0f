"""A DeviceSource for tests: it lists what the test puts in it, and can be down or slow."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.sync.http import SourceUnavailable
from workflows.sync import DeviceSnapshot, SourceCoverage, SourceDevice, SourceName

APPLECARE = "AppleCare+ for Schools"


@dataclass
class ListedSource:
    name: SourceName = "google"
    devices: list[SourceDevice] = field(default_factory=list)
    complete: bool = True
    cursor: str | None = None
    down: str | None = None  # the error a read raises, as a source that stays down
    gate: asyncio.Event | None = None  # a read waits for it (a slow source)
    reads: list[str | None] = field(default_factory=list)

    async def fetch(self, cursor: str | None = None) -> DeviceSnapshot:
        self.reads.append(cursor)
        if self.gate is not None:
            await self.gate.wait()
        if self.down is not None:
            raise SourceUnavailable(self.down)
        return DeviceSnapshot(self.name, list(self.devices), self.complete, self.cursor)


def chromebook(n: int, **facts: Any) -> SourceDevice:
    values: dict[str, Any] = {
        "external_id": f"dev-{n}",
        "serial": f"5CD{n:07d}",
        "model": "HP Chromebook 11 G9",
        "status": "in_service",
    }
    return SourceDevice(**(values | facts))


def ipad(n: int, *, end: date = date(2027, 8, 31), **facts: Any) -> SourceDevice:
    values: dict[str, Any] = {
        "external_id": f"DMP{n:07d}",
        "serial": f"DMP{n:07d}",
        "model": "iPad (9th generation)",
        "part_number": "MK2K3LL/A",
        "status": "in_service",
        "coverages": (SourceCoverage("Apple", APPLECARE, date(2024, 9, 1), end),),
    }
    return SourceDevice(**(values | facts))


@dataclass
class Writes:
    statements: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.statements)


@contextmanager
def counting_writes(engine: AsyncEngine) -> Iterator[Writes]:
    """Every INSERT, UPDATE or DELETE the engine sends while the block runs."""
    writes = Writes()

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
        if verb in ("INSERT", "UPDATE", "DELETE"):
            writes.statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        yield writes
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
