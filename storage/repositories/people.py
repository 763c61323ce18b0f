"""Students, staff, their roles and the Actor a staff member acts as (by email or Slack)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.repositories.activity import SqlActivityRepository
from storage.repositories.base import SqlRepository
from workflows.clock import Clock
from workflows.permissions import Actor, Permission

# A permission name left in the store by an older release is ignored, not fatal.
KNOWN_PERMISSIONS = frozenset(p.value for p in Permission)


class SqlPeopleRepository(SqlRepository):
    def __init__(
        self, session: AsyncSession, clock: Clock, activity: SqlActivityRepository
    ) -> None:
        super().__init__(session, clock)
        self.activity = activity  # a Slack link or name change is kept in the log

    async def student(self, student_id: int) -> m.Student | None:
        return await self.session.get(m.Student, student_id)

    async def staff_name(self, staff_id: int) -> str | None:
        staff = await self.session.get(m.Staff, staff_id)
        return None if staff is None else staff.display_name

    async def staff_slack_id(self, staff_id: int) -> str | None:
        """The Slack user a staff member is linked to, for mentions."""
        stmt = select(m.Staff.slack_user_id).where(m.Staff.id == staff_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def role(self, name: str) -> m.Role | None:
        return await self._find(m.Role, func.lower(m.Role.name) == name.strip().lower())

    async def _staff_by_email(self, email: str) -> m.Staff | None:
        return await self._find(m.Staff, func.lower(m.Staff.email) == email.strip().lower())

    async def _staff_by_slack_id(self, slack_user_id: str) -> m.Staff | None:
        return await self._find(m.Staff, m.Staff.slack_user_id == slack_user_id)

    async def actor_for_staff(self, staff: m.Staff) -> Actor:
        role = staff.role
        return Actor(
            staff_id=staff.id,
            name=staff.display_name,
            role=role.name,
            permissions=frozenset(
                Permission(p) for p in role.permissions if p in KNOWN_PERMISSIONS
            ),
            allowed_statuses=frozenset(role.allowed_statuses),
            is_superadmin=role.is_superadmin,
        )

    async def actor_by_email(self, email: str) -> Actor | None:
        staff = await self._staff_by_email(email)
        if staff is None or not staff.active:
            return None
        return await self.actor_for_staff(staff)

    async def actor_by_slack_id(self, slack_user_id: str) -> Actor | None:
        found = await self.slack_contact(slack_user_id)
        return None if found is None else found[0]

    async def slack_contact(self, slack_user_id: str) -> tuple[Actor, datetime | None] | None:
        """The active staff member behind a Slack user, and when their Slack name was checked."""
        staff = await self._staff_by_slack_id(slack_user_id)
        if staff is None or not staff.active:
            return None
        return await self.actor_for_staff(staff), staff.slack_name_at

    async def set_slack_name(self, slack_user_id: str, slack_name: str) -> bool:
        """Slack told us the person's profile name (first contact, a check, or `user_change`).

        Returns whether a staff member's shown name changed; the change is kept in the log."""
        staff = await self._staff_by_slack_id(slack_user_id)
        if staff is None:
            return False
        staff.slack_name_at = self._now()
        slack_name = slack_name.strip()[:200]
        if not slack_name or slack_name == staff.slack_name:
            return False
        before = staff.display_name
        staff.slack_name = slack_name
        if staff.display_name == before:
            return False  # the same name as on file: nothing a person would notice
        await self.activity.log(
            await self.actor_for_staff(staff),
            "staff",
            staff.id,
            "slack_name_changed",
            before={"name": before},
            after={"name": slack_name},
        )
        return True

    async def link_slack_user(
        self, email: str, slack_user_id: str, slack_name: str | None = None
    ) -> Actor | None:
        """First contact from Slack: find the staff member by email and remember their id
        (and their Slack profile name, so they are shown by it from the start)."""
        staff = await self._staff_by_email(email)
        if staff is None or not staff.active:
            return None
        if staff.slack_user_id is not None and staff.slack_user_id != slack_user_id:
            return None  # that email belongs to someone already linked to another Slack user
        if staff.slack_user_id is None:
            staff.slack_user_id = slack_user_id
            after: dict[str, Any] = {"slack_user_id": slack_user_id}
            if slack_name and slack_name.strip():
                # The name comes with the link, so the log has one entry for first contact.
                staff.slack_name = after["name"] = slack_name.strip()[:200]
                staff.slack_name_at = self._now()
            actor = await self.actor_for_staff(staff)
            await self.activity.log(actor, "staff", staff.id, "slack_linked", after=after)
        elif slack_name:
            await self.set_slack_name(slack_user_id, slack_name)
        return await self.actor_for_staff(staff)
