"""/readyz and /metrics on the real web app and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.errors import SlackApiError

from bot import heartbeat
from bot.settings import Settings
from bot.slack.client import build_web_client, close_web_client
from storage import models as m
from storage.monitoring import BILLING_RUN_FAILED_KIND
from storage.notices import NOTICE_KIND
from storage.service_facts import read_facts
from tests.monitoring_rows import failed_notice, notice, outbox_row
from tests.slack.fake_api import BOT_TOKEN, FakeSlack
from tests.web.conftest import WebFactory, WebHarness

MAIL = {"smtp_host": "127.0.0.1", "smtp_from": "billing@district.example.org"}


@pytest.fixture(autouse=True)
def fresh_heartbeats() -> None:
    heartbeat.discard_pending()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found[(name, frozenset(labels.items()))]


async def beat(web: WebHarness, *processes: str) -> None:
    for process in processes:
        assert await heartbeat.beat_once(web.runtime.stores, web.clock, process)


async def readyz(web: WebHarness) -> tuple[int, dict[str, object]]:
    response = await web.http.get("/readyz")
    return response.status_code, response.json()


@pytest.fixture
async def mail_web(make_web: WebFactory) -> WebHarness:
    return await make_web(**MAIL)


async def test_metrics_report_the_database_rows(mail_web: WebHarness) -> None:
    web = mail_web
    now = web.clock.now()
    async with web.runtime.sessions() as session:
        session.add_all(
            [
                outbox_row(NOTICE_KIND, "pending", now, age=timedelta(minutes=10)),
                outbox_row(NOTICE_KIND, "pending", now, age=timedelta(minutes=3)),
                outbox_row(NOTICE_KIND, "sent", now),
                outbox_row("slack.thread_message", "pending", now, age=timedelta(seconds=40)),
                notice("sent", now),
                notice("sent", now),
                notice("bounced", now),
                notice("queued", now),
                m.BillingRun(
                    day=date(2026, 3, 1),
                    covered_since=date(2026, 3, 1),
                    status="completed",
                    paused=False,
                    started_at=now - timedelta(hours=25),
                    finished_at=now - timedelta(hours=24),
                ),
                outbox_row(BILLING_RUN_FAILED_KIND, "sent", now, age=timedelta(hours=1)),
            ]
        )
        await failed_notice(session, now)
        await session.commit()
    heartbeat.note_success("mail", now - timedelta(seconds=30))
    await beat(web, "mail", "worker", "scheduler")

    response = await web.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)

    assert value(found, "devicecare_database_up") == 1
    assert value(found, "devicecare_outbox_messages", kind=NOTICE_KIND, status="pending") == 2
    assert value(found, "devicecare_outbox_messages", kind=NOTICE_KIND, status="sent") == 1
    assert value(found, "devicecare_outbox_messages", kind=NOTICE_KIND, status="failed") == 1
    assert (
        value(found, "devicecare_outbox_messages", kind="slack.thread_message", status="pending")
        == 1
    )
    assert value(found, "devicecare_outbox_oldest_pending_age_seconds", kind=NOTICE_KIND) == 600
    assert (
        value(found, "devicecare_outbox_oldest_pending_age_seconds", kind="slack.thread_message")
        == 40
    )
    assert value(found, "devicecare_notices_sent_total") == 3  # sent and bounced
    assert value(found, "devicecare_notices_failed_total") == 1
    assert value(found, "devicecare_notices", status="queued") == 1
    # The run completed yesterday, and a failure was reported an hour ago: the last one failed.
    assert value(found, "devicecare_billing_run_last_success") == 0
    assert (
        value(found, "devicecare_billing_run_last_timestamp_seconds")
        == (now - timedelta(hours=1)).timestamp()
    )
    assert (
        value(found, "devicecare_billing_run_last_completed_timestamp_seconds")
        == (now - timedelta(hours=24)).timestamp()
    )
    assert (
        value(found, "devicecare_imap_last_poll_success_timestamp_seconds")
        == (now - timedelta(seconds=30)).timestamp()
    )
    for process in ("mail", "worker", "scheduler"):
        assert (
            value(found, "devicecare_process_last_seen_timestamp_seconds", process=process)
            == now.timestamp()
        )
    assert value(found, "devicecare_readiness", status="ok") == 1
    # No address, name or error text is ever a label or a value.
    assert "jane" not in response.text and "SMTPConnectError" not in response.text


async def test_slack_api_errors_are_counted_across_processes(mail_web: WebHarness) -> None:
    web = mail_web
    slack = FakeSlack()
    await slack.start()
    client = build_web_client(
        Settings(_env_file=None, slack_bot_token=BOT_TOKEN, slack_api_url=slack.base_url)
    )
    try:
        for _ in range(2):
            with pytest.raises(SlackApiError):
                await client.users_info(user="U_NOBODY")
        await client.auth_test()  # a call that works isn't counted
    finally:
        await close_web_client(client)
        await slack.stop()
    await beat(web, "worker")  # the worker's heartbeat carries them to the database
    heartbeat.count(heartbeat.slack_error_key("chat.postMessage", "channel_not_found"))
    await beat(web, "web")  # another process adds its own

    found = samples((await web.http.get("/metrics")).text)
    errors = "devicecare_slack_api_errors_total"
    assert value(found, errors, method="users.info", error="user_not_found") == 2
    assert value(found, errors, method="chat.postMessage", error="channel_not_found") == 1
    await beat(web, "worker")  # nothing new: the totals stay
    found = samples((await web.http.get("/metrics")).text)
    assert value(found, errors, method="users.info", error="user_not_found") == 2


async def test_request_latency_is_kept_by_route_template(web: WebHarness) -> None:
    link = web.url(guardian_id=999)
    await web.http.get(link)
    await web.http.get("/healthz")
    await web.http.get("/no/such/page")
    await web.http.post("/healthz")
    text = (await web.http.get("/metrics")).text
    found = samples(text)
    name = "devicecare_http_request_duration_seconds_count"
    assert value(found, name, method="GET", route="/healthz", status="200") == 1
    family = [k for k in found if k[0] == name and ("route", "/family/{token}") in k[1]]
    assert len(family) == 1
    assert value(found, name, method="GET", route="unmatched", status="404") == 1
    assert value(found, name, method="POST", route="/healthz", status="405") == 1
    assert link.rsplit("/", 1)[1] not in text  # the family token never reaches the metrics


async def test_metrics_token(make_web: WebFactory) -> None:
    web = await make_web(metrics_token="scrape-me-please")
    assert (await web.http.get("/metrics")).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await web.http.get("/metrics", headers=wrong)).status_code == 401
    right = {"Authorization": "Bearer scrape-me-please"}
    response = await web.http.get("/metrics", headers=right)
    assert response.status_code == 200 and "devicecare_database_up 1.0" in response.text
    assert (await web.http.get("/readyz")).status_code in (200, 503)  # /readyz stays open


async def test_readyz_needs_fresh_heartbeats_from_the_parts_in_use(make_web: WebFactory) -> None:
    web = await make_web(**MAIL)
    status, body = await readyz(web)
    assert status == 503 and body["status"] == "not_ready"
    assert any("worker: no heartbeat yet" in r for r in body["reasons"])  # type: ignore[union-attr]

    await beat(web, "worker", "scheduler")
    status, body = await readyz(web)
    assert (status, body["status"], body["reasons"]) == (200, "ok", [])
    assert "mail" not in body["checks"] or body["checks"]["mail"] == "ok"  # type: ignore[index,operator]

    web.clock.advance(seconds=91)
    status, body = await readyz(web)
    assert status == 503
    assert "worker: last heartbeat 91 s ago" in body["reasons"]  # type: ignore[operator]

    await beat(web, "worker", "scheduler")
    assert (await readyz(web))[0] == 200

    # Without SMTP, Slack or Stripe the worker has nothing to do and isn't waited for.
    idle = await make_web()
    assert (await readyz(idle))[1]["checks"] == {
        "database": "ok",
        "scheduler": "ok",
        "outbox": "ok",
    }


async def test_readyz_degraded_when_mail_fails(mail_web: WebHarness) -> None:
    web = mail_web
    await beat(web, "worker", "scheduler")
    now = web.clock.now()
    async with web.runtime.sessions() as session:
        for _ in range(2):
            await failed_notice(session, now)
        await session.commit()
    assert (await readyz(web))[1]["status"] == "ok"  # two failures: a couple of bad addresses

    async with web.runtime.sessions() as session:
        session.add(
            outbox_row(
                NOTICE_KIND,
                "pending",
                now,
                due=timedelta(seconds=-30),  # retrying in 30 s
                attempts=2,
                last_error="SMTPServerDisconnected: Connection unexpectedly closed",
            )
        )
        await session.commit()
    status, body = await readyz(web)
    assert (status, body["status"]) == (200, "degraded")
    assert body["reasons"] == [
        "mail failing: 3 notices failed in the last 1 h, 0 sent (see `devicecare outbox failed`)"
    ]

    # An hour on, the given-up rows no longer count; the row still waiting for its retry an
    # hour after it was due is the outbox being stuck (no worker is taking it).
    web.clock.advance(hours=1)
    await beat(web, "worker", "scheduler")
    status, body = await readyz(web)
    assert (status, body["status"]) == (200, "degraded")
    reasons: list[str] = body["reasons"]  # type: ignore[assignment]
    assert [reason.split(":")[0] for reason in reasons] == ["outbox stuck"]


async def test_readyz_degraded_when_the_outbox_is_stuck(mail_web: WebHarness) -> None:
    web = mail_web
    await beat(web, "worker", "scheduler")
    now = web.clock.now()
    async with web.runtime.sessions() as session:
        # Slack is off: its rows wait for it, and that isn't the outbox being stuck.
        session.add(outbox_row("slack.thread_message", "pending", now, due=timedelta(hours=3)))
        session.add(outbox_row(NOTICE_KIND, "pending", now, due=timedelta(minutes=9)))
        await session.commit()
    assert (await readyz(web))[1]["status"] == "ok"

    web.clock.advance(minutes=2)
    await beat(web, "worker", "scheduler")
    status, body = await readyz(web)
    assert (status, body["status"]) == (200, "degraded")
    assert body["reasons"] == [
        "outbox stuck: email.notice messages due 11 min ago are still waiting"
        " (see `devicecare outbox status`)"
    ]
    found = samples((await web.http.get("/metrics")).text)
    assert value(found, "devicecare_readiness", status="degraded") == 1
    assert value(found, "devicecare_outbox_oldest_overdue_seconds", kind=NOTICE_KIND) == 660


async def test_readyz_when_the_database_is_gone(make_web: WebFactory) -> None:
    web = await make_web(database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none")
    status, body = await readyz(web)
    assert status == 503 and body["status"] == "not_ready"
    assert body["reasons"][0].startswith("database unreachable")  # type: ignore[index]
    metrics = await web.http.get("/metrics")
    assert metrics.status_code == 200
    assert value(samples(metrics.text), "devicecare_database_up") == 0


async def test_a_process_error_is_kept_in_one_line(mail_web: WebHarness) -> None:
    web = mail_web
    now = web.clock.now()
    heartbeat.note_error(
        "worker",
        "IntegrityError: duplicate key value\nDETAIL:  Key (email)=(jane@example.org) exists",
        now,
    )
    await beat(web, "worker")
    async with web.runtime.reads.sessions() as session:
        facts = await read_facts(session)
    assert facts["worker"].last_error == "IntegrityError: duplicate key value"
    assert facts["worker"].last_error_at == now and facts["worker"].last_success is None
    web.clock.advance(seconds=15)
    heartbeat.note_success("worker", web.clock.now())
    await beat(web, "worker")  # a later beat keeps the error and adds the success
    async with web.runtime.reads.sessions() as session:
        worker = (await read_facts(session))["worker"]
    assert (worker.last_error_at, worker.last_success) == (now, web.clock.now())
    found = samples((await web.http.get("/metrics")).text)
    stamp = "devicecare_process_last_error_timestamp_seconds"
    assert value(found, stamp, process="worker") == now.timestamp()
