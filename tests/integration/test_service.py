"""The service as a whole: `devicecare serve` starts, answers /healthz and stops cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bot.runtime import build_runtime, describe_parts
from bot.settings import Settings
from bot.web.app import create_web_app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_starts_without_any_configuration(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "SMTP_", "IMAP_", "DATABASE_URL"))
    }
    env |= {"PORT": str(port), "HOST": "127.0.0.1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        body = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and body is None:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
            except httpx.HTTPError:
                time.sleep(0.2)
        assert body is not None, "the service never answered /healthz"
        assert body["status"] == "ok" and body["database"] == "sqlite"
        assert body["parts"]["slack"].startswith("off: set SLACK_BOT_TOKEN")
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output
    assert (tmp_path / "data" / "devicecare.db").exists()
    assert "slack      off" in output and "stopped" in output


async def test_healthz_reports_database_trouble() -> None:
    port = _free_port()  # nothing listens there
    settings = Settings(database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{port}/none")
    runtime = build_runtime(settings)
    transport = httpx.ASGITransport(app=create_web_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/healthz")
    await runtime.close()
    assert response.status_code == 503
    assert response.json()["status"] == "error"


def test_parts_say_what_is_on_and_why_not() -> None:
    off = describe_parts(Settings(_env_file=None))
    assert off["slack"].startswith("off")
    on = describe_parts(
        Settings(
            _env_file=None,
            slack_bot_token="xoxb-1",
            slack_signing_secret="s",
            slack_app_token="xapp-1",
            smtp_host="mail",
            smtp_from="billing@district.org",
        )
    )
    assert on["slack"] == "on (Socket Mode)"
    assert on["email out"].startswith("on (SMTP mail:587)")


def test_bad_timezone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        Settings(_env_file=None, district_timezone="Mars/Olympus")


async def test_served_stripe_webhooks_are_applied_by_the_worker(tmp_path: Path) -> None:
    """`devicecare serve` with Stripe keys: a signed event is kept by the web app and its
    payment recorded by the worker running in the same process."""
    import asyncio
    from datetime import date, timedelta

    from sqlalchemy import select

    from storage import models as m
    from storage.db import create_engine, session_factory
    from storage.uow import UnitOfWorkFactory
    from tests.integration.billing_helpers import add_family, add_invoice
    from tests.stripe_fake import (
        SECRET_KEY,
        WEBHOOK_SECRET,
        make_event,
        session_object,
        signed_body,
    )
    from workflows.clock import SystemClock

    port = _free_port()
    database_url = f"sqlite+aiosqlite:///{tmp_path}/service.db"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "SMTP_", "IMAP_", "DATABASE_URL", "STRIPE_"))
    }
    env |= {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATABASE_URL": database_url,
        "STRIPE_SECRET_KEY": SECRET_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SECRET_KEY": "service-test-key-0123456789-abcdefghijklmnop",  # payments on: a real key
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    engine = create_engine(database_url)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            health = None
            for _ in range(150):
                try:
                    health = (await http.get("/healthz", timeout=1)).json()
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.2)
            assert health is not None, "the service never answered /healthz"
            assert health["parts"]["payments"].startswith("on (Stripe")

            stores = UnitOfWorkFactory(session_factory(engine), SystemClock())
            students, _ = await add_family(stores, "Rivera")
            today = date.today()
            invoice_id = await add_invoice(
                stores, students[0], created=today, due=today + timedelta(days=30)
            )
            event = make_event(
                "checkout.session.completed",
                session_object(amount_cents=2_500, metadata={"invoice_id": str(invoice_id)}),
            )
            for _ in range(2):  # Stripe's retry of the same event
                body, headers = signed_body(event, WEBHOOK_SECRET, timestamp=int(time.time()))
                answer = await http.post("/webhooks/stripe", content=body, headers=headers)
                assert answer.status_code == 200

        payments: list[m.Payment] = []
        for _ in range(100):  # the worker looks for new rows every couple of seconds
            async with session_factory(engine)() as session:
                stmt = select(m.Payment).where(m.Payment.invoice_id == invoice_id)
                payments = list((await session.execute(stmt)).scalars())
            if payments:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        async with session_factory(engine)() as session:
            stmt = select(m.Payment).where(m.Payment.invoice_id == invoice_id)
            payments = list((await session.execute(stmt)).scalars())
        assert [(p.amount_cents, p.method) for p in payments] == [(2_500, "online")]
    finally:
        await engine.dispose()
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(proc.communicate, timeout=20)
    assert proc.returncode == 0, output
