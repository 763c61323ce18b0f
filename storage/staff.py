"""Staff and roles administration (used by the CLI before anyone is in Slack)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.activity import activity_entry
from storage.session_of import Db, session_of
from workflows.clock import Clock
from workflows.errors import NotFound, ValidationError
from workflows.i18n import _
from workflows.permissions import Actor

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SLACK_ID_RE = re.compile(r"^[UW][A-Z0-9]{2,}$")


@dataclass(frozen=True)
class StaffResult:
    staff: m.Staff
    role_name: str
    created: bool
    changed: bool


async def find_role(session: AsyncSession, name: str) -> m.Role:
    wanted = name.strip().casefold().replace("-", " ").replace("_", " ")
    roles = (await session.execute(select(m.Role))).scalars().all()
    for role in roles:
        if role.name.casefold() == wanted or role.name.casefold().replace(" ", "") == wanted:
            return role
    names = ", ".join(sorted(r.name for r in roles))
    raise NotFound(
        _("There is no role called {name}. Roles: {roles}.", name=repr(name), roles=names),
        field="role",
    )


async def add_staff(
    db: Db,
    clock: Clock,
    actor: Actor,
    *,
    email: str,
    role: str,
    name: str | None = None,
    slack_user_id: str | None = None,
) -> StaffResult:
    """Create a staff member, or update the role / Slack id of an existing one (by email)."""
    session = session_of(db)
    email = email.strip().lower()
    if not EMAIL_RE.match(email):
        raise ValidationError(
            _("{email} isn't an email address.", email=repr(email)), field="email"
        )
    if slack_user_id is not None and not SLACK_ID_RE.match(slack_user_id):
        raise ValidationError(
            _("{slack_id} isn't a Slack user id (like U024BE7LH).", slack_id=repr(slack_user_id)),
            field="slack_id",
        )
    role_row = await find_role(session, role)
    staff = (
        await session.execute(select(m.Staff).where(func.lower(m.Staff.email) == email))
    ).scalar_one_or_none()
    now = clock.now()
    if staff is None:
        staff = m.Staff(
            email=email,
            name=name or email.split("@")[0].replace(".", " ").title(),
            slack_user_id=slack_user_id,
            role_id=role_row.id,
            created_at=now,
        )
        session.add(staff)
        await session.flush()
        _audit(
            session,
            actor,
            staff,
            now,
            "staff_added",
            None,
            {"role": role_row.name, "slack_user_id": slack_user_id},
        )
        return StaffResult(staff, role_row.name, created=True, changed=True)
    before = {"role_id": staff.role_id, "slack_user_id": staff.slack_user_id, "name": staff.name}
    staff.role_id = role_row.id
    if slack_user_id is not None:
        staff.slack_user_id = slack_user_id
    if name:
        staff.name = name
    after = {"role_id": staff.role_id, "slack_user_id": staff.slack_user_id, "name": staff.name}
    if before == after:
        return StaffResult(staff, role_row.name, created=False, changed=False)
    _audit(session, actor, staff, now, "staff_changed", before, after)
    return StaffResult(staff, role_row.name, created=False, changed=True)


def _audit(
    session: AsyncSession,
    actor: Actor,
    staff: m.Staff,
    now: datetime,
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    session.add(activity_entry(actor, now, "staff", staff.id, action, before=before, after=after))


async def list_staff(db: Db) -> list[m.Staff]:
    session = session_of(db)
    return list((await session.execute(select(m.Staff).order_by(m.Staff.email))).scalars())


async def list_roles(db: Db) -> list[m.Role]:
    session = session_of(db)
    return list((await session.execute(select(m.Role).order_by(m.Role.id))).scalars())
