"""What the sync runner (bot/sync/runner.py) asks of each source: read it, compare what it
said with the store, and apply the difference inside the runner's unit of work."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from storage.uow import SqlUnitOfWork
from workflows.sync import SourceName, SyncPlan


class Snapshot(Protocol):
    """What one read returned: records of the source's own kind, whether the listing was full
    (so what is missing from it has left the source) and where an incremental read resumes."""

    @property
    def complete(self) -> bool: ...

    @property
    def cursor(self) -> str | None: ...


class SyncJob(Protocol):
    source: SourceName

    async def read(self, cursor: str | None) -> Any:
        """Everything the source lists (or what changed since `cursor`), as a Snapshot.
        Talks to the source only; raises bot.sync.http.SourceUnavailable when it can't."""
        ...

    async def compare(self, uow: SqlUnitOfWork, snapshot: Any, now: datetime) -> SyncPlan:
        """What applying would change, with counts, the first rows and the removals. Writes
        nothing."""
        ...

    async def apply(self, uow: SqlUnitOfWork, snapshot: Any, plan: SyncPlan, now: datetime) -> None:
        """Write the difference in the caller's transaction; the caller commits or rolls back."""
        ...
