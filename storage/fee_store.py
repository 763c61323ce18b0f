"""`SqlFeeStore`: annual fees in the same session (and so the same transaction) as a
SqlUnitOfWork."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.bulk_fee_queries import fee_counts
from storage.uow import SqlUnitOfWork
from workflows.clock import Clock
from workflows.errors import ConflictError, ValidationError
from workflows.fees import FeeCounts, FeeDefinition, FeeRecord
from workflows.i18n import _


class SqlFeeStore:
    """Implements `workflows.fees.FeeStore`."""

    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.clock = clock
        self._for_update = session.get_bind().dialect.name != "sqlite"

    @classmethod
    def beside(cls, store: SqlUnitOfWork) -> SqlFeeStore:
        return cls(store.session, store.clock)

    async def get_fee(self, fee_id: int, *, lock: bool = False) -> m.AnnualFee | None:
        stmt = select(m.AnnualFee).where(m.AnnualFee.id == fee_id)
        if lock and self._for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def find_fee(
        self, code: str, school_year: str, *, lock: bool = False
    ) -> m.AnnualFee | None:
        stmt = select(m.AnnualFee).where(
            m.AnnualFee.code == code, m.AnnualFee.school_year == school_year
        )
        if lock and self._for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def fees_for_year(self, school_year: str) -> list[m.AnnualFee]:
        stmt = (
            select(m.AnnualFee)
            .where(m.AnnualFee.school_year == school_year)
            .order_by(m.AnnualFee.code)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def add_fee(self, definition: FeeDefinition, created_by_id: int | None) -> m.AnnualFee:
        d = definition
        known = await self.building_names(d.building_ids)
        missing = [b for b in d.building_ids if b not in known]
        if missing:
            raise ValidationError(
                _("There is no building #{id}.", id=missing[0]), field="buildings"
            )
        fee = m.AnnualFee(
            code=d.code,
            name=d.name,
            school_year=d.school_year,
            amount_cents=d.amount_cents,
            grades=list(d.grades),
            building_ids=list(d.building_ids),
            due_date=d.due_date,
            active=True,
            created_by_id=created_by_id,
            created_at=self.clock.now(),
        )
        self.session.add(fee)
        try:
            await self.session.flush()
        except IntegrityError as exc:
            # Two people defined the same code for the same year at once (PostgreSQL: the
            # second insert waits for the first to commit, then fails); the caller rolls back.
            if not _same_code(exc):
                raise
            raise ConflictError(
                _(
                    "{code} ({year}) was defined by someone else a moment ago; "
                    "look at it and try again.",
                    code=d.code,
                    year=d.school_year,
                ),
                field="code",
            ) from exc
        return fee

    async def counts(self, fee: FeeRecord) -> FeeCounts:
        return await fee_counts(self.session, fee.id, fee.grades, fee.building_ids)

    # --- buildings, for the forms and the command line ---------------------------------------

    async def buildings(self) -> list[m.Building]:
        stmt = select(m.Building).order_by(m.Building.name)
        return list((await self.session.execute(stmt)).scalars())

    async def building_names(self, ids: Sequence[int]) -> dict[int, str]:
        if not ids:
            return {}
        stmt = select(m.Building.id, m.Building.name).where(m.Building.id.in_(list(ids)))
        return {i: name for i, name in (await self.session.execute(stmt)).all()}

    async def building_ids_named(self, names: Sequence[str]) -> tuple[int, ...]:
        """Buildings by name or SIS id (any case); an unknown one is refused by name."""
        found: list[int] = []
        for name in names:
            wanted = name.strip().lower()
            stmt = select(m.Building.id).where(
                (func.lower(m.Building.name) == wanted) | (func.lower(m.Building.sis_id) == wanted)
            )
            ids = list((await self.session.execute(stmt)).scalars())
            if len(ids) != 1:
                text = (
                    _("There is no building called “{name}”.", name=name.strip())
                    if not ids
                    else _("There is more than one building called “{name}”.", name=name.strip())
                )
                raise ValidationError(text, field="buildings")
            found.append(ids[0])
        return tuple(found)


def _same_code(exc: IntegrityError) -> bool:
    """The unique (code, school year) key refused the row: PostgreSQL names the constraint,
    SQLite the columns."""
    text = str(exc.orig)
    return "uq_annual_fees_code" in text or "annual_fees.code" in text
