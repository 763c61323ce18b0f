"""Activity log rows: one way to fill an entry, for the unit of work's activity repository and
for code that writes in a session of its own."""

from __future__ import annotations

from datetime import datetime
from typing import Unpack

from storage import models as m
from workflows.permissions import Actor
from workflows.ports import ActivityChange


def activity_entry(
    actor: Actor,
    at: datetime,
    entity_type: str,
    entity_id: int | None,
    action: str,
    **change: Unpack[ActivityChange],
) -> m.ActivityEntry:
    """One entry: who (the actor's staff id and name), when, what and the change."""
    return m.ActivityEntry(
        at=at,
        actor_staff_id=actor.staff_id,
        actor_label=actor.name,
        entity_type=entity_type,
        entity_id=entity_id,
        action=action,
        before=change.get("before"),
        after=change.get("after"),
        comment=change.get("comment"),
    )
