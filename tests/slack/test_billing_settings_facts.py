"""`/billing settings`: the district's facts families are told, validated on the server with
field errors, checked for Manage Settings, and audited (signed requests, the fake Web API)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from bot.slack.billing_settings_blocks import BillingSettingsIds as Ids
from storage import models as m
from tests.slack.conftest import SlackHarness

FACTS = {
    Ids.DISTRICT_NAME: "Lakeview Unified",
    Ids.CHECK_PAYABLE_TO: "",
    Ids.CHECK_ADDRESS: "Business Office\n410 Harbor Rd\nLakeview, MN 55001",
    Ids.OFFICE_PHONE: "(555) 010-4477",
    Ids.OFFICE_HOURS: "Mon-Fri 8:00-4:00",
    Ids.OFFICE_EMAIL: "billing@lakeview.example",
}


def _values(due: str = "90", **facts: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {
        Ids.DUE_DAYS: {Ids.VALUE: {"type": "plain_text_input", "value": due}},
        Ids.SWITCHES: {
            Ids.VALUE: {
                "type": "checkboxes",
                "selected_options": [
                    {"value": s}
                    for s in ("automation_default", "pre_due_enabled", "overdue_enabled")
                ],
            }
        },
        Ids.PRE_DUE_DAYS: {Ids.VALUE: {"type": "plain_text_input", "value": "14, 7, 1"}},
        Ids.OVERDUE_DAYS: {Ids.VALUE: {"type": "plain_text_input", "value": "7, 14, 30"}},
        Ids.AUTO_CANCEL_DAYS: {Ids.VALUE: {"type": "plain_text_input", "value": "60"}},
        Ids.RUN_TIME: {Ids.VALUE: {"type": "timepicker", "selected_time": "06:00"}},
    }
    typed = {**{str(k): v for k, v in FACTS.items()}, **facts}
    for block, value in typed.items():
        # Slack sends an emptied input as a null value.
        values[block] = {Ids.VALUE: {"type": "plain_text_input", "value": value or None}}
    return values


async def _open(slack: SlackHarness, user: str) -> dict[str, Any]:
    opened = len(slack.fake.calls_to("views.open"))
    response = await slack.sender.command("/billing", "settings", user=user)
    assert response.status_code == 200
    # The modal opens after the command is answered: wait for this one, not an earlier one.
    call = (await slack.fake.wait_for("views.open", count=opened + 1))[-1]
    view = call.args["view"]
    return json.loads(view) if isinstance(view, str) else view


async def _submit(
    slack: SlackHarness, user: str, view: dict[str, Any], values: dict[str, Any]
) -> Any:
    """Submit; unless the form comes back with field errors, wait for the saved-or-refused
    message (the settings are written after Slack has its answer)."""

    def to_user(c: Any) -> bool:
        return bool(c.args.get("channel") == user)

    before = len([c for c in slack.fake.calls_to("chat.postMessage") if to_user(c)])
    response = await _send(slack, user, view, values)
    if b'"errors"' not in response.content:
        await slack.fake.wait_for("chat.postMessage", to_user, count=before + 1)
    return response


async def _send(
    slack: SlackHarness, user: str, view: dict[str, Any], values: dict[str, Any]
) -> Any:
    return await slack.sender.interaction(
        {
            "type": "view_submission",
            "user": {"id": user},
            "view": {
                "id": "V_SETTINGS",
                "type": "modal",
                "callback_id": Ids.CALLBACK,
                "private_metadata": view["private_metadata"],
                "state": {"values": values},
            },
        }
    )


def _block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)


async def test_facts_are_set_from_the_modal_and_audited(slack: SlackHarness) -> None:
    director = await slack.staff("Finance Director", "U_FD")
    view = await _open(slack, "U_FD")
    for block in FACTS:
        element = _block(view, block)["element"]
        assert "initial_value" not in element  # nothing set yet
        assert _block(view, block)["optional"] is True
    assert _block(view, Ids.CHECK_ADDRESS)["element"]["multiline"] is True

    response = await _submit(slack, "U_FD", view, _values())
    assert response.status_code == 200 and response.content in (b"", b"{}")
    async with slack.runtime.stores() as store:
        settings = await store.settings.get()
        assert settings.district_name == "Lakeview Unified"
        assert settings.check_mailing_address == FACTS[Ids.CHECK_ADDRESS]
        assert settings.office_phone == "(555) 010-4477"
        assert settings.office_hours == "Mon-Fri 8:00-4:00"
        assert settings.office_email == "billing@lakeview.example"
        assert settings.check_payable_to == ""
        [entry] = await store.activity.for_entity("settings", 1)
        assert entry.action == "district_facts_changed"
        await store.commit()
    assert entry.before == {
        "district_name": "",
        "check_mailing_address": "",
        "office_phone": "",
        "office_hours": "",
        "office_email": "",
    }
    assert entry.after["office_email"] == "billing@lakeview.example"
    async with slack.runtime.stores() as store:
        row = (
            await store.session.execute(
                select(m.ActivityEntry).where(m.ActivityEntry.action == "district_facts_changed")
            )
        ).scalar_one()
        await store.commit()
    assert row.actor_staff_id == director.staff_id
    dm = await slack.fake.wait_for("chat.postMessage", lambda c: c.args["channel"] == "U_FD")
    text = dm[-1].args["text"]
    assert "district name: (not set) → “Lakeview Unified”" in text
    assert "mailing address for checks: (not set) → “Business Office, 410 Harbor Rd" in text

    # The modal opens with what is stored; clearing a fact leaves it unset.
    view = await _open(slack, "U_FD")
    assert _block(view, Ids.OFFICE_PHONE)["element"]["initial_value"] == "(555) 010-4477"
    assert (await _submit(slack, "U_FD", view, _values(**{Ids.OFFICE_PHONE: None}))).status_code
    async with slack.runtime.stores() as store:
        settings = await store.settings.get()
        assert settings.office_phone == "" and settings.office_email == "billing@lakeview.example"
        last = (await store.activity.for_entity("settings", 1))[-1]
        assert (last.before, last.after) == (
            {"office_phone": "(555) 010-4477"},
            {"office_phone": ""},
        )
        await store.commit()


async def test_bad_facts_come_back_as_field_errors_and_change_nothing(
    slack: SlackHarness,
) -> None:
    await slack.staff("Finance Director", "U_FD")
    view = await _open(slack, "U_FD")
    cases = [
        ({Ids.OFFICE_EMAIL: "billing at lakeview"}, Ids.OFFICE_EMAIL, "email address"),
        ({Ids.OFFICE_PHONE: "call the office"}, Ids.OFFICE_PHONE, "phone number"),
        ({Ids.OFFICE_HOURS: "x" * 121}, Ids.OFFICE_HOURS, "at most 120"),
        ({Ids.DISTRICT_NAME: "n" * 201}, Ids.DISTRICT_NAME, "at most 200"),
        ({Ids.CHECK_ADDRESS: "Harbor Road"}, Ids.CHECK_ADDRESS, "ZIP"),
    ]
    for facts, block, words in cases:
        # The due days change too: a bad fact must undo it as well.
        response = await _submit(slack, "U_FD", view, _values(due="45", **facts))
        body = response.json()
        assert body["response_action"] == "errors"
        assert list(body["errors"]) == [block]
        assert words in body["errors"][block]
    async with slack.runtime.stores() as store:
        settings = await store.settings.get()
        assert settings.default_due_days == 90
        assert settings.district_name == "" and settings.office_email == ""
        assert await store.activity.for_entity("settings", 1) == []
        await store.commit()


async def test_without_manage_settings_facts_are_not_changed(slack: SlackHarness) -> None:
    await slack.staff("Finance Director", "U_FD")
    await slack.staff("Billing Clerk", "U_CLERK")
    view = await _open(slack, "U_FD")
    await _submit(slack, "U_CLERK", view, _values())
    refusal = await slack.fake.wait_for(
        "chat.postMessage", lambda c: c.args["channel"] == "U_CLERK"
    )
    assert "Nothing was changed" in refusal[-1].args["text"]
    async with slack.runtime.stores() as store:
        assert (await store.settings.get()).district_name == ""
        refusals = (
            (
                await store.session.execute(
                    select(m.ActivityEntry).where(m.ActivityEntry.action == "refused")
                )
            )
            .scalars()
            .all()
        )
        assert len(refusals) == 1
        await store.commit()
