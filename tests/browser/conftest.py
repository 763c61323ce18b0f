"""Browser fixtures: Debian's Chromium under Playwright, and where screenshots are kept.

Chromium comes from Debian's packages; where it is missing the fixture installs it (as root), as
`.ci/run` does. If it can't be installed, the browser tests skip with the reason — except in CI
(TEST_REQUIRE_POSTGRES=1 or TEST_REQUIRE_BROWSER=1), where that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.browser.chromium import LAUNCH_ARGS, ChromiumUnavailable, ensure_installed

BROWSER_REQUIRED = "1" in (
    os.environ.get("TEST_REQUIRE_POSTGRES"),
    os.environ.get("TEST_REQUIRE_BROWSER"),
)
# Screenshots are test artifacts: kept after the run for people (and CI) to look at.
ARTIFACTS = Path(
    os.environ.get("TEST_ARTIFACTS_DIR", Path(__file__).resolve().parents[2] / "test-artifacts")
)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    try:
        return ensure_installed()
    except ChromiumUnavailable as exc:
        if BROWSER_REQUIRED:
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path, args=list(LAUNCH_ARGS)
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Path:
    """A folder for this test's screenshots under test-artifacts/browser/."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")
    folder = ARTIFACTS / "browser" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
