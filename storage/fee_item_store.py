"""`SqlFeeItemStore`: the fee schedule in the same session (and transaction) as a SqlUnitOfWork."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.uow import SqlUnitOfWork
from workflows.errors import ConflictError
from workflows.i18n import _


class SqlFeeItemStore:
    """Implements `workflows.fee_items.FeeItemStore`."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._for_update = session.get_bind().dialect.name != "sqlite"

    @classmethod
    def beside(cls, store: SqlUnitOfWork) -> SqlFeeItemStore:
        return cls(store.session)

    async def find_fee_item(self, code: str, *, lock: bool = False) -> m.FeeItem | None:
        stmt = select(m.FeeItem).where(m.FeeItem.code == code)
        if lock and self._for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add_fee_item(
        self,
        *,
        code: str,
        name: str,
        kind: str,
        price_cents: int,
        device_model: str | None,
        incident_flag: str | None,
        active: bool,
    ) -> m.FeeItem:
        item = m.FeeItem(
            code=code,
            name=name,
            kind=kind,
            price_cents=price_cents,
            device_model=device_model,
            incident_flag=incident_flag,
            active=active,
        )
        self.session.add(item)
        try:
            await self.session.flush()
        except IntegrityError as exc:
            # Two people added the same code at once; the caller's transaction rolls back.
            raise ConflictError(
                _(
                    "Fee item {code} was added by someone else a moment ago; look at it and "
                    "try again.",
                    code=code,
                ),
                field="code",
            ) from exc
        return item

    async def all_fee_items(self) -> list[m.FeeItem]:
        stmt = select(m.FeeItem).order_by(m.FeeItem.name, m.FeeItem.id)
        return list((await self.session.execute(stmt)).scalars())
