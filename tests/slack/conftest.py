"""The real Slack app behind the real web app, talking to a local fake Slack Web API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.jobs.worker import OutboxWorker
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from bot.slack.app import build_slack_app, slack_outbox_handlers
from bot.slack.client import build_web_client, close_web_client
from bot.web.app import create_web_app
from tests.builders import add_staff
from tests.slack.fake_api import BOT_TOKEN, FakeSlack
from tests.slack.signing import SIGNING_SECRET, SlackSender
from workflows.clock import FixedClock
from workflows.permissions import Actor

INCIDENTS_CHANNEL = "C_INCIDENTS"
APPROVALS_CHANNEL = "C_APPROVALS"
BILLING_CHANNEL = "C_BILLING"
SECRET_KEY = "test-secret-key"


@dataclass
class SlackHarness:
    fake: FakeSlack
    runtime: Runtime
    sender: SlackSender
    clock: FixedClock
    worker_client: AsyncWebClient

    async def staff(self, role: str, slack_id: str, email: str | None = None) -> Actor:
        """A staff member already linked to a Slack user (and known to the fake API)."""
        email = email or f"{slack_id.lower()}@district.org"
        actor = await add_staff(self.runtime.stores, role, email)
        async with self.runtime.stores() as store:
            from storage import models as m

            staff = await store.session.get(m.Staff, actor.staff_id)
            assert staff is not None
            staff.slack_user_id = slack_id
            staff.slack_name_at = self.clock.now()  # as if first contact had just read it
            await store.commit()
        self.fake.add_user(slack_id, email, actor.name)
        return actor

    async def deliver_outbox(self) -> int:
        """Run the outbox worker until nothing is due (what `devicecare worker` does)."""
        client = self.worker_client
        worker = OutboxWorker(
            self.runtime.stores, self.clock, slack_outbox_handlers(self.runtime, client)
        )
        total = 0
        while handled := await worker.run_once():
            total += handled
        return total


def _started_by_bolt(task: asyncio.Task[object]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    if code is None:
        return False
    # Bolt's lazy work, and the Slack-name refresh an actor lookup starts in the background.
    return "slack_bolt" in code.co_filename or code.co_filename.endswith("actors.py")


async def _settle(timeout: float = 3.0) -> None:
    """Let work bolt started after its acks finish before the database goes away."""
    current = asyncio.current_task()
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        others = [
            t
            for t in asyncio.all_tasks()
            if t is not current and not t.done() and _started_by_bolt(t)
        ]
        if not others:
            return
        await asyncio.wait(others, timeout=0.05)


@pytest.fixture
def slack_settings() -> dict[str, Any]:
    """Settings a test module wants different in its harness (override this fixture)."""
    return {}


@asynccontextmanager
async def open_harness(
    database_url: str,
    clock: FixedClock,
    tmp_path: Path,
    fake: FakeSlack,
    client: AsyncWebClient | None = None,
    overrides: dict[str, Any] | None = None,
) -> AsyncIterator[SlackHarness]:
    """The Slack app behind the web app, talking to `fake` (through `client` when given)."""
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        blob_dir=tmp_path / "blobs",
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=fake.base_url,
        slack_incidents_channel=INCIDENTS_CHANNEL,
        slack_approvals_channel=APPROVALS_CHANNEL,
        slack_billing_channel=BILLING_CHANNEL,
        **({"secret_key": SECRET_KEY} | (overrides or {})),
    )
    runtime = build_runtime(settings, clock)
    slack_app = build_slack_app(runtime, client)
    web = create_web_app(runtime, slack_app)
    worker_client = build_web_client(settings)
    transport = httpx.ASGITransport(app=web)
    async with httpx.AsyncClient(transport=transport, base_url="http://devicecare.test") as http:
        yield SlackHarness(fake, runtime, SlackSender(http), clock, worker_client)
    await _settle()
    await close_web_client(worker_client)
    await close_web_client(slack_app.client)
    await runtime.close()


@pytest.fixture
async def slack(
    engine: AsyncEngine,
    database_url: str,
    clock: FixedClock,
    tmp_path: Path,
    slack_settings: dict[str, Any],
) -> AsyncIterator[SlackHarness]:
    fake = FakeSlack()
    await fake.start()
    harness = open_harness(database_url, clock, tmp_path, fake, overrides=slack_settings)
    async with harness as opened:
        yield opened
    await fake.stop()
