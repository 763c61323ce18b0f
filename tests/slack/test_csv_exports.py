"""Every `/report` CSV uploaded to Slack, on a district whose names and reasons are hostile
(`=1+1`, `@SUM(A1)`, `+cmd|' /C calc'!A0`...): no cell may be one a spreadsheet runs as a
formula. Signed slash commands, uploads captured by the fake Slack Web API."""

from __future__ import annotations

import asyncio

from storage.reports import CATALOGUE
from tests.csv_cells import HOSTILE, neutralised_seen, rows_of, seed_hostile_text, unsafe_cells
from tests.report_money_district import TODAY, build_money_district
from tests.slack.conftest import SlackHarness
from tests.slack.test_reports import MARCH_2

CHANNEL = "C_HELP"


async def uploaded(slack: SlackHarness, filename: str) -> bytes:
    """The content of the file once its upload is complete."""
    for _ in range(150):
        done = [u for u in slack.fake.shared_files(CHANNEL) if u.filename == filename]
        if done:
            return done[0].content
        await asyncio.sleep(0.1)
    raise AssertionError(f"{filename} was never uploaded")


async def test_every_report_upload_is_safe_in_a_spreadsheet(slack: SlackHarness) -> None:
    await build_money_district(slack.runtime.stores, slack.clock)
    await seed_hostile_text(slack.runtime.stores)
    assert TODAY == MARCH_2.date()
    slack.clock.set(MARCH_2)
    await slack.staff("Billing Clerk", "U_CLERK")

    files: dict[str, list[list[str]]] = {}
    for n, name in enumerate(sorted(CATALOGUE), start=1):
        response = await slack.sender.command(
            "/report", f"{name} 2025-07-01..2026-03-02", user="U_CLERK", channel=CHANNEL
        )
        assert response.status_code == 200, name
        await slack.fake.wait_for("chat.postMessage", count=n, timeout=15)
        files[name] = rows_of(await uploaded(slack, f"{name}_2025-07-01_2026-03-02.csv"))

    for name, rows in files.items():
        assert unsafe_cells(rows) == [], name
    assert neutralised_seen(list(files.values())) == set(HOSTILE)
