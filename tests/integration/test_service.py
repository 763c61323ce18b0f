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
from bot.web import create_web_app


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
