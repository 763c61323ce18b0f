"""What every repository holds: the unit of work's session, its clock and its lock style."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from workflows.clock import Clock

R = TypeVar("R")


def uses_for_update(session: AsyncSession) -> bool:
    """PostgreSQL locks rows with FOR UPDATE; SQLite holds the database lock from BEGIN
    IMMEDIATE instead."""
    return session.bind is not None and session.bind.dialect.name != "sqlite"


def locking(session: AsyncSession, stmt: Select[Any]) -> Select[Any]:
    """`stmt` as a read that locks its rows for this transaction and returns them as they
    are once the lock is held.

    SQLite takes the database write lock at BEGIN IMMEDIATE; FOR UPDATE is PostgreSQL's
    way. Either way the rows must be read again after the lock: an object this session
    loaded earlier (say by number, before locking) would otherwise keep its old values, and
    a balance checked against them lets a racing payment through twice and loses an update.
    """
    if uses_for_update(session):
        stmt = stmt.with_for_update()
    return stmt.execution_options(populate_existing=True)


def columns(new: Any, **extra: Any) -> dict[str, Any]:
    """A parameter object's fields as a row's column values, `extra` added (or put instead).

    Shallow, unlike `dataclasses.asdict`: a field holding objects keeps them as they are."""
    return {field.name: getattr(new, field.name) for field in fields(new)} | extra


class SqlRepository:
    """A repository's session, clock and lock style (shared with its unit of work)."""

    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.clock = clock
        self._for_update = uses_for_update(session)

    def _now(self) -> datetime:
        return self.clock.now()

    def locking(self, stmt: Select[Any]) -> Select[Any]:
        return locking(self.session, stmt)

    async def _get(self, model: type[Any], ident: int, lock: bool) -> Any:
        stmt = select(model).where(model.id == ident)
        if lock:
            stmt = self.locking(stmt)
        return (await self.session.execute(stmt)).unique().scalar_one_or_none()

    async def _find(self, model: type[R], *where: ColumnElement[bool]) -> R | None:
        """The one `model` row matching `where`, or None."""
        stmt = select(model).where(*where)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def _list(self, stmt: Select[R]) -> list[R]:
        """Every row the statement selects."""
        return list((await self.session.execute(stmt)).scalars())

    async def _int(self, stmt: Select[Any]) -> int:
        """The number the statement answers (a count or a sum)."""
        return int((await self.session.execute(stmt)).scalar_one())

    async def _added(self, row: R) -> R:
        """`row` added to the session and flushed, so it has its id."""
        self.session.add(row)
        await self.session.flush()
        return row
