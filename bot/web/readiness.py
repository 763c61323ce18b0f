"""What /readyz answers: ready, degraded (with the reasons) or not ready.

- **not_ready** (HTTP 503): the database can't be reached, or a process this configuration
  needs (worker, mail, scheduler) has not written a heartbeat within HEARTBEAT_STALE.
- **degraded** (HTTP 200): running, but families aren't being reached: mail is failing, or
  the outbox is stuck (a message due for longer than OUTBOX_STUCK is still waiting).
- **ok** (HTTP 200).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from bot.settings import Settings
from storage.monitoring import MAIL_WINDOW, Snapshot

HEARTBEAT_STALE = timedelta(seconds=90)  # six missed heartbeats
OUTBOX_STUCK = timedelta(minutes=10)
MAIL_FAILING_ROWS = 3  # notices failing in MAIL_WINDOW before mail counts as failing

Status = Literal["ok", "degraded", "not_ready"]


@dataclass(frozen=True)
class Readiness:
    status: Status
    reasons: list[str] = field(default_factory=list)
    checks: dict[str, str] = field(default_factory=dict)

    @property
    def http_status(self) -> int:
        return 503 if self.status == "not_ready" else 200

    def as_json(self) -> dict[str, object]:
        return {"status": self.status, "reasons": self.reasons, "checks": self.checks}


def required_processes(settings: Settings) -> list[str]:
    """The processes this configuration needs running (besides the web process itself)."""
    needed = []
    if settings.smtp_enabled or settings.slack_enabled or settings.stripe_enabled:
        needed.append("worker")
    if settings.imap_enabled:
        needed.append("mail")
    needed.append("scheduler")  # the billing run and reminders always need it
    return needed


def delivered(kind: str, settings: Settings) -> bool:
    """Whether a worker with this configuration delivers outbox rows of `kind`; rows of a
    channel that is off wait for it to be configured, and aren't stuck."""
    prefix = kind.split(".", 1)[0]
    if prefix == "email":
        return settings.smtp_enabled
    if prefix == "stripe":
        return settings.stripe_enabled
    return settings.slack_enabled


def unreachable(error: BaseException) -> Readiness:
    reason = f"database unreachable: {type(error).__name__}"
    return Readiness("not_ready", [reason], {"database": reason})


def assess(snapshot: Snapshot, settings: Settings) -> Readiness:
    now = snapshot.now
    checks = {"database": "ok"}
    down: list[str] = []
    for process in required_processes(settings):
        fact = snapshot.facts.get(process)
        if fact is None:
            checks[process] = "no heartbeat yet"
            down.append(f"{process}: no heartbeat yet (is `devicecare {process}` running?)")
        elif now - fact.last_seen > HEARTBEAT_STALE:
            checks[process] = f"last heartbeat {_ago(now, fact.last_seen)} ago"
            down.append(f"{process}: last heartbeat {_ago(now, fact.last_seen)} ago")
        else:
            checks[process] = "ok"
    degraded: list[str] = []
    mail = snapshot.mail
    if settings.smtp_enabled:
        if mail.failing >= MAIL_FAILING_ROWS and mail.failing > mail.sent:
            hours = int(MAIL_WINDOW.total_seconds() // 3600)
            reason = (
                f"mail failing: {mail.failing} notices failed in the last {hours} h,"
                f" {mail.sent} sent (see `devicecare outbox failed`)"
            )
            checks["mail"] = reason
            degraded.append(reason)
        else:
            checks["mail"] = "ok"
    stuck = _stuck(snapshot, settings, now)
    checks["outbox"] = stuck or "ok"
    if stuck:
        degraded.append(stuck)
    if down:
        return Readiness("not_ready", down + degraded, checks)
    return Readiness("degraded" if degraded else "ok", degraded, checks)


def _stuck(snapshot: Snapshot, settings: Settings, now: datetime) -> str | None:
    overdue = [
        (row.oldest_due, row.kind)
        for row in snapshot.outbox.values()
        if row.oldest_due is not None
        and delivered(row.kind, settings)
        and now - row.oldest_due > OUTBOX_STUCK
    ]
    if not overdue:
        return None
    due, kind = min(overdue)
    return (
        f"outbox stuck: {kind} messages due {_ago(now, due)} ago are still waiting"
        " (see `devicecare outbox status`)"
    )


def _ago(now: datetime, then: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
