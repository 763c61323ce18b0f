"""The queries' way in: a unit of work (what the service layers hold) or its session.

Query functions take either, so the layers above call them with the store they have and
never reach for the SQLAlchemy session behind it; storage itself may pass a session."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession


class UnitOfWork(Protocol):
    """A store over one session (`storage.uow.SqlUnitOfWork`)."""

    @property
    def session(self) -> AsyncSession: ...


Db = AsyncSession | UnitOfWork


def session_of(db: Db) -> AsyncSession:
    return db if isinstance(db, AsyncSession) else db.session
