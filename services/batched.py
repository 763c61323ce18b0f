"""What the jobs that work through many rows a batch per transaction have in common."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from zoneinfo import ZoneInfo

from storage.db import Sessions
from storage.uow import DEFAULT_MAIL_DOMAIN
from workflows.clock import Clock, local_date

BATCH_SIZE = 2000

# Called after each committed batch with how much it did (progress, tests).
BatchHook = Callable[[int], Awaitable[None]]


class BatchedJob:
    """Sessions, the clock and the district's zone, the batch size and the hook after a batch."""

    def __init__(
        self,
        sessions: Sessions,
        clock: Clock,
        tz: ZoneInfo,
        *,
        mail_domain: str = DEFAULT_MAIL_DOMAIN,
        batch_size: int = BATCH_SIZE,
        after_batch: BatchHook | None = None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.tz = tz
        self.mail_domain = mail_domain
        self.batch_size = batch_size
        self.after_batch = after_batch

    def today(self) -> date:
        return local_date(self.clock.now(), self.tz)
