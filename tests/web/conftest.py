"""The real web app on a real database (SQLite and PostgreSQL), driven through httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.family_links import make_family_token
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from bot.web.app import create_web_app
from workflows.clock import FixedClock

SECRET = "family-page-test-secret"
LINK_ENDS = date(2026, 4, 15)  # the district's today in these tests is 2026-03-02


@dataclass
class WebHarness:
    runtime: Runtime
    http: httpx.AsyncClient
    clock: FixedClock

    def url(self, guardian_id: int, notice_id: int | None = None, ends: date = LINK_ENDS) -> str:
        return f"/family/{make_family_token(guardian_id, notice_id, ends, SECRET)}"


WebFactory = Callable[..., Awaitable[WebHarness]]


@pytest.fixture
async def make_web(
    engine: AsyncEngine, database_url: str, clock: FixedClock, tmp_path: Path
) -> AsyncIterator[WebFactory]:
    """Builds the app with the settings a test needs (Stripe, portal, rate limit, ...)."""
    opened: list[tuple[Runtime, httpx.AsyncClient]] = []

    async def make(**overrides: Any) -> WebHarness:
        options: dict[str, Any] = {
            "_env_file": None,
            "database_url": database_url,
            "blob_dir": tmp_path / "blobs",
            "secret_key": SECRET,
            "district_timezone": "America/Chicago",
            "public_base_url": "https://devicecare.example.org",
        }
        settings = Settings(**(options | overrides))
        runtime = build_runtime(settings, clock)
        transport = httpx.ASGITransport(app=create_web_app(runtime))
        http = httpx.AsyncClient(transport=transport, base_url="http://devicecare.test")
        opened.append((runtime, http))
        return WebHarness(runtime, http, clock)

    yield make
    for runtime, http in opened:
        await http.aclose()
        await runtime.close()


@pytest.fixture
async def web(make_web: WebFactory) -> WebHarness:
    return await make_web()
