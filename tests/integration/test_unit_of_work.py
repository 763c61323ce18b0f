"""The unit of work keeps only what is committed (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import date

import pytest

from storage.uow import UnitOfWorkFactory
from workflows.ports import NewPause


async def _add_pause(stores: UnitOfWorkFactory, reason: str, *, commit: bool) -> None:
    async with stores() as uow:  # commits only when asked
        await uow.pauses.add(
            NewPause(
                starts_on=date(2026, 12, 21),
                ends_on=date(2027, 1, 1),
                reason=reason,
                created_by_id=None,
            )
        )
        if commit:
            await uow.commit()


async def _reasons(stores: UnitOfWorkFactory) -> list[str]:
    async with stores() as uow:  # a read: nothing to commit
        return [p.reason for p in await uow.pauses.windows()]


async def test_only_a_committed_change_is_kept(stores: UnitOfWorkFactory) -> None:
    await _add_pause(stores, "left without a commit", commit=False)
    await _add_pause(stores, "winter break", commit=True)
    assert await _reasons(stores) == ["winter break"]


async def test_an_exception_rolls_the_change_back(stores: UnitOfWorkFactory) -> None:
    with pytest.raises(RuntimeError):
        async with stores() as uow:  # fails before its commit
            await uow.pauses.add(
                NewPause(
                    starts_on=date(2026, 3, 16),
                    ends_on=date(2026, 3, 20),
                    reason="x",
                    created_by_id=None,
                )
            )
            raise RuntimeError("something failed before the commit")
    assert await _reasons(stores) == []


async def test_rows_read_stay_readable_after_the_block(stores: UnitOfWorkFactory) -> None:
    await _add_pause(stores, "spring break", commit=True)
    async with stores() as uow:  # a read: nothing to commit
        [pause] = await uow.pauses.windows()
    assert pause.reason == "spring break"  # read without a commit: not expired by the exit
