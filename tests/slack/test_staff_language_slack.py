"""A district whose staff read Spanish (STAFF_LANGUAGE=es) is answered in Spanish in Slack:
refusals, usage, the words of its modals. The same requests in a district left at the default
are answered in English, word for word as before."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.slack.blocks import fmt_date, fmt_when
from tests.slack.conftest import SlackHarness
from tests.slack.test_incidents import open_new_incident_modal
from workflows.i18n import set_staff_language, staff_reading

SPANISH = {
    "not_set_up": "Todavía no está configurado en DeviceCare.",
    "settings_refused": (
        "La configuración de facturación requiere el permiso Administrar configuración."
    ),
    "waive_refused": (
        ":no_entry: Las exenciones requieren el permiso Eximir cargos; su rol no lo tiene."
    ),
    "usage": "Uso — comandos de facturación:",
    "no_incident": ":mag: No existe el incidente n.º 999. Verifique el número en la tarjeta.",
    "cancel": "Cancelar",
}
ENGLISH = {
    "not_set_up": "You're not set up in DeviceCare yet.",
    "settings_refused": "Billing settings need the Manage Settings permission.",
    "waive_refused": (
        ":no_entry: Waivers need the Waive Charges permission; your role doesn't have it."
    ),
    "usage": "Usage — billing commands:",
    "no_incident": ":mag: There's no incident #999. Check the number on the card.",
    "cancel": "Cancel",
}
EXPECTED = {"es": SPANISH, "en": ENGLISH}


@pytest.fixture(params=["es", "en"])
def language(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def slack_settings(language: str) -> dict[str, Any]:
    return {"staff_language": language}


@pytest.fixture(autouse=True)
def _english_after() -> Iterator[None]:
    # build_runtime sets the staff language for the whole process: put English back.
    yield
    set_staff_language("en")


def _text(response: Any) -> str:
    assert response.status_code == 200
    answer = response.json()
    assert answer["response_type"] == "ephemeral"
    return str(answer["text"])


async def test_a_stranger_is_told_in_the_staff_language(slack: SlackHarness, language: str) -> None:
    said = EXPECTED[language]
    text = _text(await slack.sender.command("/incident", user="U_STRANGER"))
    assert text.startswith(said["not_set_up"] + " ")
    if language == "es":
        assert "Pida" in text and "Ask" not in text


async def test_refusals_and_usage_are_in_the_staff_language(
    slack: SlackHarness, language: str
) -> None:
    said = EXPECTED[language]
    await slack.staff("Technician", "U_TECH")
    settings = await slack.sender.command("/billing", "settings", user="U_TECH")
    assert _text(settings) == said["settings_refused"]
    waive = await slack.sender.command("/billing", "waive INV-000001", user="U_TECH")
    assert _text(waive) == said["waive_refused"]
    usage = _text(await slack.sender.command("/billing", "", user="U_TECH"))
    assert usage.startswith(said["usage"] + "\n• `/billing ")
    missing = await slack.sender.command("/incident", "999", user="U_TECH")
    assert _text(missing) == said["no_incident"]


async def test_a_modal_is_drawn_in_the_staff_language(slack: SlackHarness, language: str) -> None:
    await slack.staff("Technician", "U_TECH")
    modal = await open_new_incident_modal(slack)
    assert modal["close"]["text"] == EXPECTED[language]["cancel"]


def test_dates_in_slack_follow_the_staff_language() -> None:
    day, tz = date(2026, 3, 5), ZoneInfo("America/Chicago")
    at = datetime(2026, 3, 5, 21, 5, tzinfo=UTC)
    assert fmt_date(day) == "Mar 5, 2026"
    assert fmt_when(at, tz) == "Mar 5, 2026 3:05 PM CST"
    with staff_reading("es"):
        assert fmt_date(day) == "5 mar 2026"
        assert fmt_when(at, tz) == "5 mar 2026 3:05\u202fp.m. CST"  # a narrow no-break space
