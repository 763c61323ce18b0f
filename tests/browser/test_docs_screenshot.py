"""The family page screenshot the README and the docs show, taken by the browser.

`UPDATE_SCREENSHOTS=1` opens a family's emailed link in Chromium (the same service as the
payment test: the web app, the outbox worker, SMTP and the Stripe stand-in) and saves the page
to docs/images/family-page.png. Without it, the test only checks that the committed file is
there and is a whole PNG, so the README never points at a missing or broken picture.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image
from playwright.async_api import Browser, expect

from tests.browser.test_family_payment import (  # noqa: F401 (service is a fixture)
    Service,
    link_in,
    open_page,
    service,
)

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "family-page.png"
UPDATE = os.environ.get("UPDATE_SCREENSHOTS") == "1"
# Wide enough to show the page as a desktop reader sees it, narrow enough to read in a README.
VIEWPORT = {"width": 1000, "height": 800}


def test_the_docs_screenshot_is_a_whole_png() -> None:
    assert SCREENSHOT.is_file(), f"{SCREENSHOT} is missing: run with UPDATE_SCREENSHOTS=1"
    with Image.open(SCREENSHOT) as image:
        assert image.format == "PNG"
        image.verify()  # reads every chunk and its checksum
    with Image.open(SCREENSHOT) as image:
        width, height = image.size
    assert width >= 600 and height >= 400, image.size


@pytest.mark.skipif(not UPDATE, reason="set UPDATE_SCREENSHOTS=1 to take the docs screenshot")
async def test_take_the_family_page_screenshot_for_the_docs(
    service: Service,  # noqa: F811
    browser: Browser,
    database_url: str,
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("one screenshot is enough: taken on SQLite")
    await service.run_worker()
    link = link_in(service.sent("INV-")[0])
    page = await open_page(browser, link, VIEWPORT)
    await expect(page.locator("h1")).to_contain_text("Maria Rivera")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT), full_page=True)
    await page.context.close()
