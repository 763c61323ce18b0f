"""Billing pause windows (winter break, summer): adding, listing and removing them.

On a paused day the billing run sends nothing, and paused days don't count towards any overdue
threshold (`workflows.billing.PauseCalendar`). Windows never overlap, so each day belongs to at
most one and removing a window gives back exactly its days. Only Manage Settings may change or
see them; every change is in the activity log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from workflows.billing import validate_pause
from workflows.errors import NotFound, ValidationError
from workflows.i18n import _, ngettext
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context, NewPause, PauseRecord

ENTITY = "billing_pause"


@dataclass(frozen=True)
class PauseView:
    """A pause window as the Slack replies and the command line show it."""

    id: int
    starts_on: date
    ends_on: date
    reason: str

    @property
    def days(self) -> int:
        return (self.ends_on - self.starts_on).days + 1

    def covers(self, day: date) -> bool:
        return self.starts_on <= day <= self.ends_on

    def describe(self) -> str:
        """'#3 2026-12-21 to 2027-01-01 (12 days): Winter break'"""
        days = ngettext("{n} day", "{n} days", self.days)
        return _(
            "#{id} {start} to {end} ({days}): {reason}",
            id=self.id,
            start=self.starts_on.isoformat(),
            end=self.ends_on.isoformat(),
            days=days,
            reason=self.reason,
        )


def view_of(record: PauseRecord) -> PauseView:
    return PauseView(record.id, record.starts_on, record.ends_on, record.reason)


def _logged(view: PauseView) -> dict[str, str]:
    return {
        "starts_on": view.starts_on.isoformat(),
        "ends_on": view.ends_on.isoformat(),
        "reason": view.reason,
    }


async def add_pause(
    ctx: Context, actor: Actor, starts_on: date, ends_on: date, reason: str
) -> PauseView:
    """Pause billing on every day from `starts_on` to `ends_on` (both included)."""
    require(actor, Permission.MANAGE_SETTINGS)
    window = validate_pause(starts_on, ends_on, reason)
    clashes = await ctx.store.pauses.overlapping(window.starts_on, window.ends_on, lock=True)
    if clashes:
        other = view_of(clashes[0])
        raise ValidationError(
            _(
                "That overlaps the pause {other}. Remove it first or choose days outside it.",
                other=other.describe(),
            ),
            field="starts_on",
        )
    record = await ctx.store.pauses.add(
        NewPause(
            starts_on=window.starts_on,
            ends_on=window.ends_on,
            reason=window.reason,
            created_by_id=actor.staff_id,
        )
    )
    view = view_of(record)
    await ctx.store.activity.log(actor, ENTITY, view.id, "billing_pause_added", after=_logged(view))
    return view


async def remove_pause(ctx: Context, actor: Actor, pause_id: int) -> PauseView:
    """Remove a pause window; its days count again from the next run on."""
    require(actor, Permission.MANAGE_SETTINGS)
    record = await ctx.store.pauses.get(pause_id, lock=True)
    if record is None:
        raise NotFound(
            _("There is no billing pause #{pause_id}.", pause_id=pause_id), field="pause_id"
        )
    view = view_of(record)
    await ctx.store.pauses.remove(view.id)
    await ctx.store.activity.log(
        actor, ENTITY, view.id, "billing_pause_removed", before=_logged(view)
    )
    return view


async def list_pauses(
    ctx: Context, actor: Actor, *, include_past: bool = False
) -> Sequence[PauseView]:
    """The pause windows, earliest first: current and coming ones, or all of them."""
    require(actor, Permission.MANAGE_SETTINGS)
    since = None if include_past else ctx.today()
    return [view_of(r) for r in await ctx.store.pauses.windows(ending_on_or_after=since)]
