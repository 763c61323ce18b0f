"""`/report` through the Slack stand-in: the modal offers only permitted reports, a run posts the
summary and uploads the CSV (and the chart of a trend) with files_upload_v2, money reports are
refused to technicians on the server, bad input gets an ephemeral answer and nothing else.

The district is tests/report_incident_district.py, whose February figures are worked out there.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import update

from bot.slack.report_blocks import ReportField, ReportView
from storage import models as m
from storage.reports import CATALOGUE
from tests.report_incident_district import build_report_district
from tests.slack.conftest import SlackHarness
from tests.slack.money_helpers import (
    all_text,
    blocks_of,
    ephemerals_to,
    merge,
    picked_date,
    refusals,
    selected,
    submission,
    typed,
    view_of,
)
from workflows.reports import Audience

CHANNEL = "C_HELP"
MARCH_2 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 09:00 in the district
FEB = (date(2026, 2, 1), date(2026, 2, 28))
# Incidents by type in February (tests/integration/test_reports_insurance_incidents.py).
FEB_ROWS = [
    ["screen", "4", "57.1"],
    ["physical_damage", "3", "42.9"],
    ["lost", "1", "14.3"],
    ["water", "1", "14.3"],
]
GENERAL = sorted(n for n, s in CATALOGUE.items() if s.audience is Audience.GENERAL)
FINANCIAL = sorted(n for n, s in CATALOGUE.items() if s.audience is Audience.FINANCIAL)


@pytest.fixture
async def district(slack: SlackHarness) -> None:
    await build_report_district(slack.runtime.stores, slack.clock)
    slack.clock.set(MARCH_2)


def parsed_csv(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode("utf-8"))))


async def open_modal(slack: SlackHarness, user: str) -> dict[str, Any]:
    before = len(slack.fake.calls_to("views.open"))
    response = await slack.sender.command("/report", "", user=user, channel=CHANNEL)
    assert response.status_code == 200
    calls = await slack.fake.wait_for("views.open", count=before + 1)
    view = view_of(calls[-1])
    assert view["callback_id"] == ReportView.RUN
    return view


def offered(view: dict[str, Any]) -> list[str]:
    (block,) = [b for b in view["blocks"] if b.get("block_id") == ReportField.REPORT]
    return sorted(o["value"] for o in block["element"]["options"])


def form_values(name: str, span: tuple[date, date], *, grades: str | None = None) -> dict[str, Any]:
    return merge(
        {
            ReportField.REPORT: {
                ReportField.REPORT: {
                    "type": "static_select",
                    "selected_option": {"value": name},
                }
            }
        },
        picked_date(ReportField.FROM, span[0]),
        picked_date(ReportField.TO, span[1]),
        selected(ReportField.BUILDINGS, []),
        typed(ReportField.GRADES, grades),
        typed(ReportField.MODELS, None),
    )


async def uploads(slack: SlackHarness, count: int) -> list[Any]:
    await slack.fake.wait_for("files.completeUploadExternal", count=count, timeout=15)
    return slack.fake.shared_files(CHANNEL)


async def test_modal_offers_only_permitted_reports_and_runs_one(
    slack: SlackHarness, district: None
) -> None:
    await slack.staff("Technician", "U_TECH")
    await slack.staff("Billing Clerk", "U_CLERK")

    tech_view = await open_modal(slack, "U_TECH")
    assert offered(tech_view) == GENERAL
    assert "invoices" in FINANCIAL and "invoices" not in offered(tech_view)
    clerk_view = await open_modal(slack, "U_CLERK")
    assert offered(clerk_view) == sorted(CATALOGUE)
    # The range defaults to the school year so far; the buildings come from the table.
    dates = {
        b["block_id"]: b["element"].get("initial_date")
        for b in tech_view["blocks"]
        if b.get("block_id") in (ReportField.FROM, ReportField.TO)
    }
    assert dates == {ReportField.FROM: "2025-07-01", ReportField.TO: "2026-03-02"}
    assert "Lincoln Middle" in all_text(tech_view) and "Washington High" in all_text(tech_view)

    response = await slack.sender.interaction(
        submission("U_TECH", tech_view, "V_REPORT", form_values("incidents-by-type", FEB))
    )
    assert response.status_code == 200 and response.text == ""  # the modal closes

    (message,) = await slack.fake.wait_for("chat.postMessage", timeout=15)
    assert message.args["channel"] == CHANNEL
    summary = all_text(blocks_of(message))
    assert "Incidents by Type" in summary and "7 incidents happened" in summary
    csv_file, chart = await uploads(slack, 2)
    assert csv_file.filename == "incidents-by-type_2026-02-01_2026-02-28.csv"
    assert csv_file.channel == CHANNEL
    rows = parsed_csv(csv_file.content)
    assert rows[0] == ["type", "incidents", "percent_of_incidents"]
    assert rows[1:] == FEB_ROWS
    assert chart.filename == "incidents-by-type_2026-02-01_2026-02-28.png"
    assert chart.content.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(chart.content))
    assert image.format == "PNG"
    assert image.info["Title"] == "Incidents by type per day, 2026-02-01 to 2026-02-28"
    assert chart.title == image.info["Title"]


async def test_text_form_with_range_and_grade(slack: SlackHarness, district: None) -> None:
    await slack.staff("Technician", "U_TECH")
    response = await slack.sender.command(
        "/report", "incidents-by-type last-month grade:7", user="U_TECH", channel=CHANNEL
    )
    assert response.status_code == 200
    assert "Running Incidents by Type" in response.json()["text"]
    (message,) = await slack.fake.wait_for("chat.postMessage", timeout=15)
    assert "grade 7" in all_text(blocks_of(message))
    csv_file, chart = await uploads(slack, 2)
    assert csv_file.filename == "incidents-by-type_2026-02-01_2026-02-28.csv"
    # Grade 7 is Ana and Ben: five February incidents.
    assert parsed_csv(csv_file.content)[1:] == [
        ["screen", "4", "80.0"],
        ["physical_damage", "3", "60.0"],
    ]
    assert Image.open(io.BytesIO(chart.content)).info["Title"].startswith("Incidents by type")


async def test_report_without_trend_uploads_only_the_csv(
    slack: SlackHarness, district: None
) -> None:
    await slack.staff("Technician", "U_TECH")
    await slack.sender.command(
        "/report", "repeat-offenders 2026-02-01 2026-02-28", user="U_TECH", channel=CHANNEL
    )
    await slack.fake.wait_for("chat.postMessage", timeout=15)
    (csv_file,) = await uploads(slack, 1)
    rows = parsed_csv(csv_file.content)
    assert rows[0] == list(CATALOGUE["repeat-offenders"].headers)
    assert [r[0] for r in rows[1:]] == ["Cole, Ben", "Rivera, Ana"]
    assert not [u for u in slack.fake.shared_files() if u.filename.endswith(".png")]


async def test_money_report_needs_financial_permission(slack: SlackHarness, district: None) -> None:
    tech = await slack.staff("Technician", "U_TECH")
    await slack.staff("Billing Clerk", "U_CLERK")

    refused = await slack.sender.command("/report", "invoices", user="U_TECH", channel=CHANNEL)
    assert refused.json()["response_type"] == "ephemeral"
    assert "View Financial Reports" in refused.json()["text"]
    # A crafted modal submission is refused on the server too.
    view = await open_modal(slack, "U_TECH")
    crafted = await slack.sender.interaction(
        submission("U_TECH", view, "V_REPORT", form_values("invoices", FEB))
    )
    assert crafted.json()["response_action"] == "errors"
    assert "View Financial Reports" in crafted.json()["errors"][ReportField.REPORT]
    assert len(await refusals(slack, tech)) == 2
    assert not slack.fake.calls_to("chat.postMessage")
    assert not slack.fake.calls_to("files.getUploadURLExternal")

    # Billing staff get it: every February invoice, money as dollars.
    await slack.sender.command("/report", "invoices 2026-02-01..2026-02-28", user="U_CLERK")
    await slack.fake.wait_for("chat.postMessage", timeout=15)
    (csv_file,) = await uploads(slack, 1)
    rows = parsed_csv(csv_file.content)
    headers = rows[0]
    assert headers == list(CATALOGUE["invoices"].headers)
    billed = sorted(r[headers.index("billed")] for r in rows[1:])
    # Six incident invoices and Eve's premium (enrolled on February 5).
    assert billed == ["125.00", "125.00", "200.00", "25.00", "45.00", "80.00", "90.00"]


async def test_bad_input_gets_an_ephemeral_answer_and_nothing_else(
    slack: SlackHarness, district: None
) -> None:
    await slack.staff("Technician", "U_TECH")
    for text, said in (
        ("incidents-by-type 2026-02-30", "isn't a date"),
        ("incidents-by-type 2026-03-01..2026-02-01", "ends before it starts"),
        ("incidents-by-type someday", "don't understand"),
        ("no-such-report", "There's no report called"),
    ):
        response = await slack.sender.command("/report", text, user="U_TECH", channel=CHANNEL)
        body = response.json()
        assert body["response_type"] == "ephemeral", text
        assert said in body["text"], text
    assert not slack.fake.calls_to("chat.postMessage")
    assert not slack.fake.calls_to("files.getUploadURLExternal")


async def test_a_failed_run_says_why(slack: SlackHarness, district: None) -> None:
    await slack.staff("Technician", "U_TECH")
    await slack.sender.command(
        "/report", 'incidents-by-type building:"Nowhere High"', user="U_TECH", channel=CHANNEL
    )
    await slack.fake.wait_for("chat.postEphemeral", timeout=15)
    (said,) = ephemerals_to(slack, "U_TECH")
    assert "Couldn't run the report" in said and "Nowhere High" in said
    assert not slack.fake.calls_to("chat.postMessage")


async def test_staff_without_reports_are_refused(slack: SlackHarness) -> None:
    # Every shipped role may see reports; a district's own role without View Reports may not.
    actor = await slack.staff("Technician", "U_NOREPORTS")
    async with slack.runtime.stores() as store:
        viewer = m.Role(name="Viewer", permissions=[], allowed_statuses=[])
        store.session.add(viewer)
        await store.session.flush()
        await store.session.execute(
            update(m.Staff).where(m.Staff.id == actor.staff_id).values(role_id=viewer.id)
        )
        await store.commit()
    response = await slack.sender.command("/report", "", user="U_NOREPORTS", channel=CHANNEL)
    assert "View Reports" in response.json()["text"]
    assert not slack.fake.calls_to("views.open")
