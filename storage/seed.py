"""Rows every district starts with: the settings row and the shipped roles."""

from __future__ import annotations

from sqlalchemy import select, text

from storage import models as m
from storage.migrate import SCHEMA_LOCK_KEY
from storage.session_of import Db, session_of
from workflows.incident_status import DEFAULT_RESTRICTED
from workflows.offenders import DEFAULT_RULES
from workflows.permissions import DEFAULT_ROLES


async def ensure_defaults(db: Db) -> None:
    """Idempotent: creates what is missing and never overwrites a district's edits.

    On PostgreSQL, processes starting together take turns (the schema lock, held until the
    commit), so no two insert the same role; and none seeds while an upgrade runs.
    """
    session = session_of(db)
    if (await session.connection()).dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
    if await session.get(m.DistrictSettings, 1) is None:
        session.add(
            m.DistrictSettings(
                id=1,
                restricted_statuses=sorted(s.value for s in DEFAULT_RESTRICTED),
                offender_rules=[
                    {"flag": r.flag, "threshold": r.threshold, "window": r.window, "days": r.days}
                    for r in DEFAULT_RULES
                ],
            )
        )
    existing = set((await session.execute(select(m.Role.name))).scalars())
    for template in DEFAULT_ROLES.values():
        if template.name in existing:
            continue
        session.add(
            m.Role(
                name=template.name,
                permissions=sorted(p.value for p in template.permissions),
                allowed_statuses=sorted(template.allowed_statuses),
                is_superadmin=template.is_superadmin,
                built_in=True,
            )
        )
    if await session.get(m.Counter, "invoice") is None:
        session.add(m.Counter(name="invoice", value=0))
    await session.flush()
