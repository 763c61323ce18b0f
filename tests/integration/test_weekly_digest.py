"""The weekly digest on a small fixed district (tests/report_incident_district.py plus a few
payments), on SQLite and PostgreSQL: its figures, one outbox row per week however often the job
runs, and the post in the digest channel of the Slack stand-in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot.jobs.scheduler import WEEKLY_DIGEST_JOB, build_scheduler, queue_weekly_digest
from bot.jobs.worker import OutboxWorker
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from bot.slack.app import slack_outbox_handlers
from bot.slack.client import build_web_client, close_web_client
from storage import models as m
from storage.uow import UnitOfWorkFactory
from storage.weekly_digest import (
    DIGEST_KIND,
    NewOffender,
    WeeklyDigest,
    digest_key,
    previous_week,
    weekly_digest,
)
from tests.report_incident_district import TZ, ReportDistrict, build_report_district
from tests.slack.fake_api import BOT_TOKEN, FakeSlack
from workflows.clock import FixedClock
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.permissions import Actor
from workflows.ports import Context
from workflows.refunds import RefundPayment, refund_payment

WEEK = date(2026, 2, 16)  # Monday; the digest goes out on Monday the 23rd
DIGEST_DAY = date(2026, 2, 23)
DIGEST_AT = datetime(2026, 2, 23, 13, 0, tzinfo=UTC)  # 07:00 in Chicago
CHANNEL = "C_DIGEST"

# Worked out by hand from the district's docstring and the payments added below.
EXPECTED = WeeklyDigest(
    week_start=WEEK,
    as_of=DIGEST_DAY,
    # Opened: #3 (Feb 16) and #5 (Feb 20). Closed: #3 (Feb 18) and #5 (Feb 20).
    incidents_opened=2,
    incidents_closed=2,
    # $25.00 on Feb 17 and $10.00 on Feb 22; $5.00 refunded at 23:30 on Sunday Feb 22 (the
    # $5.00 payments of Sunday Feb 15 and Monday Feb 23 fall outside the week).
    payments_cents=3_500,
    refunds_cents=500,
    # As of Feb 23: #2's invoice ($25.00, less $5.00 + $10.00 + $5.00 paid; due Feb 20) and
    # #6's ($10.00 after insurance, due Feb 1).
    overdue_count=2,
    overdue_cents=1_500,
    # Ana trips Physical Damage and Screen with #3; Ben trips Screen with #5.
    offender_count=2,
    offenders=(
        NewOffender("Ana Rivera", ("physical_damage", "screen")),
        NewOffender("Ben Cole", ("screen",)),
    ),
)


def at(day: date, hour: int = 16, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


async def _invoice_of(stores: UnitOfWorkFactory, incident_id: int) -> int:
    async with stores() as store:
        found = await store.session.execute(
            select(m.Invoice.id).where(m.Invoice.incident_id == incident_id)
        )
        await store.commit()
        return int(found.scalar_one())


async def _pay(
    stores: UnitOfWorkFactory,
    clock: FixedClock,
    admin: Actor,
    invoice_id: int,
    day: date,
    cents: int,
) -> int:
    clock.set(at(day))
    async with stores() as store:
        paid = await record_payment(
            Context(store, clock, TZ),
            admin,
            RecordPayment(invoice_id, cents, PaymentMethod.CASH, f"pay-{invoice_id}-{day}"),
        )
        await store.commit()
        return paid.payment.id


async def build_digest_district(stores: UnitOfWorkFactory, clock: FixedClock) -> ReportDistrict:
    d = await build_report_district(stores, clock)
    async with stores() as store:
        admin = await store.people.actor_by_email("admin@district.org")
        await store.commit()
    assert admin is not None
    first, second = (
        await _invoice_of(stores, d.incidents[1]),
        await _invoice_of(stores, d.incidents[2]),
    )
    water = await _invoice_of(stores, d.incidents[6])
    async with stores() as store:
        # Every invoice due later, except the two the digest counts as overdue.
        await store.session.execute(update(m.Invoice).values(due_date=date(2026, 3, 31)))
        await store.session.execute(
            update(m.Invoice).where(m.Invoice.id == second).values(due_date=date(2026, 2, 20))
        )
        await store.session.execute(
            update(m.Invoice).where(m.Invoice.id == water).values(due_date=date(2026, 2, 1))
        )
        await store.commit()
    # Sunday the 15th and Monday the 23rd fall outside the week.
    await _pay(stores, clock, admin, second, date(2026, 2, 15), 500)
    full = await _pay(stores, clock, admin, first, date(2026, 2, 17), 2_500)
    await _pay(stores, clock, admin, second, date(2026, 2, 22), 1_000)
    clock.set(at(date(2026, 2, 23), 5, 30))  # 23:30 on Sunday Feb 22 in Chicago
    async with stores() as store:
        await refund_payment(
            Context(store, clock, TZ), admin, RefundPayment(full, 500, "Overpaid", "refund-1")
        )
        await store.commit()
    await _pay(stores, clock, admin, second, date(2026, 2, 23), 500)
    return d


@pytest.fixture
async def district(stores: UnitOfWorkFactory, clock: FixedClock) -> ReportDistrict:
    return await build_digest_district(stores, clock)


async def test_weekly_figures(stores: UnitOfWorkFactory, district: ReportDistrict) -> None:
    async with stores() as store:
        digest = await weekly_digest(store.session, WEEK, tz=TZ, as_of=DIGEST_DAY)
        # Any day of the week means that week.
        thursday = await weekly_digest(store.session, date(2026, 2, 19), tz=TZ, as_of=DIGEST_DAY)
        before = await weekly_digest(
            store.session, date(2026, 2, 9), tz=TZ, as_of=date(2026, 2, 16)
        )
        await store.commit()
    assert digest == thursday == EXPECTED
    assert digest.recovered_cents == 3_000
    assert WeeklyDigest.from_payload(digest.to_payload()) == digest
    # Feb 9-15: #2 and #6 opened and closed (#6 at 21:00 on the 10th in Chicago, the 11th in
    # UTC), the $5.00 of Sunday the 15th; #6's invoice was overdue; nobody newly flagged.
    assert before == WeeklyDigest(
        week_start=date(2026, 2, 9),
        as_of=date(2026, 2, 16),
        incidents_opened=2,
        incidents_closed=2,
        payments_cents=500,
        refunds_cents=0,
        overdue_count=1,
        overdue_cents=1_000,
        offender_count=0,
    )


def test_previous_week() -> None:
    assert previous_week(date(2026, 2, 23)) == WEEK  # a Monday
    assert previous_week(date(2026, 3, 1)) == WEEK  # a Sunday: the week before this one
    assert digest_key(WEEK) == "weekly-digest:2026-02-16"


# --- the job and its delivery ---------------------------------------------------------------


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.stop()


def digest_settings(database_url: str, tmp_path: Path, fake: FakeSlack, **extra: str) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        blob_dir=tmp_path / "blobs",
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret="secret",
        slack_api_url=fake.base_url,
        secret_key="test-secret-key",
        **extra,  # type: ignore[arg-type]
    )


async def _digest_rows(runtime: Runtime) -> list[m.OutboxMessage]:
    async with runtime.reads() as store:
        found = await store.session.execute(
            select(m.OutboxMessage).where(m.OutboxMessage.kind == DIGEST_KIND)
        )
        return list(found.scalars())


async def test_job_queues_one_digest_per_week_and_slack_gets_it(
    district: ReportDistrict, database_url: str, tmp_path: Path, fake_slack: FakeSlack
) -> None:
    settings = digest_settings(
        database_url,
        tmp_path,
        fake_slack,
        weekly_digest_channel=CHANNEL,
        weekly_digest_day="monday",
        weekly_digest_time="07:00",
    )
    clock = FixedClock(DIGEST_AT)
    first, second = build_runtime(settings, clock), build_runtime(settings, clock)
    client = build_web_client(settings)
    try:
        # Two schedulers at once, then a rerun: one row.
        both = await asyncio.gather(queue_weekly_digest(first), queue_weekly_digest(second))
        assert sorted(both) == [False, True]
        assert await queue_weekly_digest(first) is False
        (row,) = await _digest_rows(first)
        assert row.dedupe_key == "weekly-digest:2026-02-16"
        assert WeeklyDigest.from_payload(row.payload) == EXPECTED

        scheduler = await build_scheduler(first)
        job = scheduler.get_job(WEEKLY_DIGEST_JOB)
        assert job is not None
        fields = {f.name: str(f) for f in job.trigger.fields}
        assert (fields["day_of_week"], fields["hour"], fields["minute"]) == ("mon", "7", "0")

        worker = OutboxWorker(first.stores, clock, slack_outbox_handlers(first, client))
        while await worker.run_once():
            pass
        (post,) = fake_slack.calls_to("chat.postMessage")
        assert post.args["channel"] == CHANNEL
        text = str(post.args["text"])
        assert "Feb 16, 2026" in str(post.args["blocks"])
        assert "2 incidents opened, 2 closed, $30.00 recovered, 2 overdue ($15.00)" in text
        assert "Ana Rivera (Physical Damage, Screen)" in str(post.args["blocks"])
        # A second week's run (next Monday) queues the next week, not this one again.
        clock.set(datetime(2026, 3, 2, 13, 0, tzinfo=UTC))
        assert await queue_weekly_digest(first) is True
        keys = sorted(r.dedupe_key for r in await _digest_rows(first))
        assert keys == ["weekly-digest:2026-02-16", "weekly-digest:2026-02-23"]
    finally:
        await close_web_client(client)
        await first.close()
        await second.close()


async def test_digest_is_off_without_a_channel(
    district: ReportDistrict, database_url: str, tmp_path: Path, fake_slack: FakeSlack
) -> None:
    runtime = build_runtime(
        digest_settings(database_url, tmp_path, fake_slack), FixedClock(DIGEST_AT)
    )
    try:
        assert await queue_weekly_digest(runtime) is False
        assert await _digest_rows(runtime) == []
        assert (await build_scheduler(runtime)).get_job(WEEKLY_DIGEST_JOB) is None
    finally:
        await runtime.close()
