"""`devicecare outbox status | failed | retry ID` on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from bot.cli import app
from bot.settings import get_settings
from storage import models as m
from storage.db import create_engine, session_factory
from storage.notices import NOTICE_KIND
from tests.conftest import _empty_postgres
from tests.monitoring_rows import failed_notice, outbox_row


@pytest.fixture
def cli_db(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BLOB_DIR", str(tmp_path / "blobs"))
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    asyncio.run(_reset(database_url))
    yield database_url
    get_settings.cache_clear()


async def _reset(url: str) -> None:
    engine = create_engine(url)
    try:
        if engine.dialect.name == "postgresql":
            await _empty_postgres(engine)
    finally:
        await engine.dispose()


async def _fill(url: str) -> dict[str, int]:
    """Two pending notices, one sent, a failed notice and a failed Slack post."""
    now = datetime.now(UTC)
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            session.add_all(
                [
                    outbox_row(NOTICE_KIND, "pending", now, age=timedelta(minutes=42)),
                    outbox_row(NOTICE_KIND, "pending", now, age=timedelta(minutes=5)),
                    outbox_row(NOTICE_KIND, "sent", now),
                ]
            )
            mail = await failed_notice(session, now, "jane.doe@example.org")
            slack = outbox_row(
                "slack.thread_message",
                "failed",
                now,
                due=timedelta(hours=3),
                payload={"channel": "C0BILLING", "text": "…"},
                attempts=8,
                last_error="SlackApiError: channel_not_found",
            )
            sent = outbox_row(NOTICE_KIND, "sent", now)
            session.add_all([slack, sent])
            await session.commit()
            return {"mail": mail.id, "slack": slack.id, "sent": sent.id}
    finally:
        await engine.dispose()


async def _state(
    url: str, message_id: int
) -> tuple[m.OutboxMessage, m.Notice | None, list[m.ActivityEntry]]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            row = await session.get(m.OutboxMessage, message_id)
            assert row is not None
            notice = await session.get(m.Notice, int(row.payload.get("notice_id") or 0))
            audit = list(
                (
                    await session.execute(
                        select(m.ActivityEntry).where(m.ActivityEntry.entity_type == "outbox")
                    )
                ).scalars()
            )
            return row, notice, audit
    finally:
        await engine.dispose()


def test_status_failed_and_retry(cli_db: str) -> None:
    runner = CliRunner()
    empty = runner.invoke(app, ["outbox", "status"])
    assert empty.exit_code == 0, empty.output
    assert "The outbox is empty." in empty.output
    assert "No failed messages." in runner.invoke(app, ["outbox", "failed"]).output

    ids = asyncio.run(_fill(cli_db))
    status = runner.invoke(app, ["outbox", "status"], env={"COLUMNS": "200"})
    assert status.exit_code == 0, status.output
    line = next(row for row in status.output.splitlines() if NOTICE_KIND in row)
    cells = [cell.strip() for cell in line.split("│")[1:-1]]
    assert cells[:5] == [NOTICE_KIND, "2", "2", "1", "42 min"]
    assert "2 failed: see `devicecare outbox failed`." in status.output

    failed = runner.invoke(app, ["outbox", "failed"], env={"COLUMNS": "200"})
    assert failed.exit_code == 0, failed.output
    assert "j…@example.org" in failed.output and "jane.doe" not in failed.output
    assert "Slack C0BILLING" in failed.output
    assert "SMTPConnectError: connection refused" in failed.output
    assert "channel_not_found" in failed.output
    # Newest failure first: the notice gave up five minutes ago, the Slack post three hours ago.
    assert failed.output.index(f" {ids['mail']} ") < failed.output.index(f" {ids['slack']} ")

    retried = runner.invoke(app, ["outbox", "retry", str(ids["mail"])])
    assert retried.exit_code == 0, retried.output
    assert f"Outbox message #{ids['mail']} (email.notice) is queued again" in retried.output
    row, notice, audit = asyncio.run(_state(cli_db, ids["mail"]))
    assert (row.status, row.attempts, row.last_error) == ("pending", 0, None)
    assert notice is not None and notice.status == "queued"
    assert len(audit) == 1 and audit[0].action == "retried" and audit[0].entity_id == ids["mail"]
    assert audit[0].before == {
        "status": "failed",
        "attempts": 8,
        "last_error": "SMTPConnectError: connection refused",
    }
    assert audit[0].actor_label == "Command line"

    # Refusals: a row that isn't failed (any more), an unknown id; nothing changes.
    again = runner.invoke(app, ["outbox", "retry", str(ids["mail"])])
    assert again.exit_code == 1
    assert f"Outbox message #{ids['mail']} is pending, not failed" in again.output
    sent = runner.invoke(app, ["outbox", "retry", str(ids["sent"])])
    assert sent.exit_code == 1 and "is sent, not failed" in sent.output
    unknown = runner.invoke(app, ["outbox", "retry", "999999"])
    assert unknown.exit_code == 1 and "There is no outbox message #999999." in unknown.output
    assert len(asyncio.run(_state(cli_db, ids["mail"]))[2]) == 1
    nobody = runner.invoke(app, ["outbox", "retry", str(ids["slack"]), "--as", "who@x.org"])
    assert nobody.exit_code == 1 and "No active staff member" in nobody.output
    assert asyncio.run(_state(cli_db, ids["slack"]))[0].status == "failed"
