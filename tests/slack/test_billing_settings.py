"""`/billing settings`: only Manage Settings, validated in the modal, audited."""

from __future__ import annotations

import json
from typing import Any

from bot.slack.billing_settings_blocks import BillingSettingsIds as Ids
from tests.slack.conftest import SlackHarness


def _values(
    due: str = "90",
    switches: tuple[str, ...] = ("automation_default", "pre_due_enabled", "overdue_enabled"),
    pre: str = "14, 7, 1",
    overdue: str = "7, 14, 30",
    cancel: str = "60",
    time: str = "06:00",
) -> dict[str, Any]:
    return {
        Ids.DUE_DAYS: {Ids.VALUE: {"type": "plain_text_input", "value": due}},
        Ids.SWITCHES: {
            Ids.VALUE: {"type": "checkboxes", "selected_options": [{"value": s} for s in switches]}
        },
        Ids.PRE_DUE_DAYS: {Ids.VALUE: {"type": "plain_text_input", "value": pre}},
        Ids.OVERDUE_DAYS: {Ids.VALUE: {"type": "plain_text_input", "value": overdue}},
        Ids.AUTO_CANCEL_DAYS: {Ids.VALUE: {"type": "plain_text_input", "value": cancel}},
        Ids.RUN_TIME: {Ids.VALUE: {"type": "timepicker", "selected_time": time}},
    }


async def _open(slack: SlackHarness, user: str) -> dict[str, Any]:
    response = await slack.sender.command("/billing", "settings", user=user)
    assert response.status_code == 200
    call = (await slack.fake.wait_for("views.open"))[-1]
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
    response = await slack.sender.interaction(
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
    if b'"errors"' not in response.content:
        await slack.fake.wait_for("chat.postMessage", to_user, count=before + 1)
    return response


async def test_director_changes_settings_with_audit(slack: SlackHarness) -> None:
    await slack.staff("Finance Director", "U_FD")
    view = await _open(slack, "U_FD")
    assert view["callback_id"] == Ids.CALLBACK
    response = await _submit(
        slack,
        "U_FD",
        view,
        _values(
            due="60",
            pre="10, 3",
            switches=("pre_due_enabled", "overdue_enabled", "auto_cancel_enabled"),
            time="05:30",
        ),
    )
    assert response.status_code == 200 and response.content in (b"", b"{}")
    async with slack.runtime.stores() as store:
        settings = await store.settings.get()
        assert settings.default_due_days == 60 and settings.pre_due_days == [10, 3]
        assert settings.auto_cancel_enabled and not settings.automation_default
        assert settings.daily_run_time == "05:30"
        log = await store.activity.for_entity("settings", 1)
        assert log[-1].action == "billing_settings_changed"
        await store.commit()
    dm = await slack.fake.wait_for("chat.postMessage", lambda c: c.args["channel"] == "U_FD")
    assert "daily run time: 06:00 → 05:30" in dm[-1].args["text"]


async def test_invalid_settings_come_back_as_field_errors(slack: SlackHarness) -> None:
    await slack.staff("Finance Director", "U_FD")
    view = await _open(slack, "U_FD")
    response = await _submit(slack, "U_FD", view, _values(overdue="30, 14, 7"))
    body = response.json()
    assert body["response_action"] == "errors"
    assert Ids.OVERDUE_DAYS in body["errors"]
    response = await _submit(slack, "U_FD", view, _values(pre="soon"))
    assert Ids.PRE_DUE_DAYS in response.json()["errors"]
    async with slack.runtime.stores() as store:
        assert (await store.settings.get()).overdue_days == [7, 14, 30]
        await store.commit()


async def test_without_manage_settings_nothing_opens_or_changes(slack: SlackHarness) -> None:
    await slack.staff("Finance Director", "U_FD")
    await slack.staff("Billing Clerk", "U_CLERK")
    response = await slack.sender.command("/billing", "settings", user="U_CLERK")
    assert response.json()["text"] == "Billing settings need the Manage Settings permission."
    assert slack.fake.calls_to("views.open") == []
    # A clerk replaying the director's form is refused and logged.
    view = await _open(slack, "U_FD")
    await _submit(slack, "U_CLERK", view, _values(due="30"))
    refusal = await slack.fake.wait_for(
        "chat.postMessage", lambda c: c.args["channel"] == "U_CLERK"
    )
    assert "Nothing was changed" in refusal[-1].args["text"]
    async with slack.runtime.stores() as store:
        assert (await store.settings.get()).default_due_days == 90
        from sqlalchemy import select

        from storage import models as m

        refusals = (
            (
                await store.session.execute(
                    select(m.ActivityEntry).where(m.ActivityEntry.action == "refused")
                )
            )
            .scalars()
            .all()
        )
        # Both refusals are kept: the command's (answered in its ack) and the replay's.
        assert sorted(e.comment or "" for e in refusals) == [
            "/billing settings: Billing settings need the Manage Settings permission.",
            "billing settings: That form was opened by someone else.",
        ]
        await store.commit()


async def test_other_billing_text_gets_usage(slack: SlackHarness) -> None:
    await slack.staff("Finance Director", "U_FD")
    response = await slack.sender.command("/billing", "", user="U_FD")
    assert "Usage" in response.json()["text"]


async def test_photos_on_the_family_page_are_switched_on_and_off(slack: SlackHarness) -> None:
    await slack.staff("Finance Director", "U_FD")
    view = await _open(slack, "U_FD")
    switches = view["blocks"]
    assert any(
        o["value"] == "family_page_photos"
        for block in switches
        for o in (block.get("element") or {}).get("options", [])
    )
    on = _values(switches=("automation_default", "pre_due_enabled", "family_page_photos"))
    assert (await _submit(slack, "U_FD", view, on)).status_code == 200
    async with slack.runtime.stores() as store:
        assert (await store.settings.get()).family_page_photos is True
        await store.commit()
    view = await _open(slack, "U_FD")
    off = _values(switches=("automation_default", "pre_due_enabled"))
    assert (await _submit(slack, "U_FD", view, off)).status_code == 200
    async with slack.runtime.stores() as store:
        assert (await store.settings.get()).family_page_photos is False
        entries = await store.activity.for_entity("settings", 1)
        assert entries[-1].after["family_page_photos"] is False
        await store.commit()
