"""Incidents from Slack, end to end: /incident and the shortcut, the type-ahead, the modal's
submission, the card through the outbox, and the card's actions (with forged values)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from sqlalchemy import func, select

from bot.slack.ids import IncidentAction, SlackPostKind
from bot.slack.incident_blocks import IncidentField, IncidentShortcut, IncidentView
from storage import models as m
from tests.builders import District, add_district, add_student_with_device
from tests.slack.conftest import INCIDENTS_CHANNEL, SlackHarness
from tests.slack.fake_api import Call
from workflows.incidents import OpenIncident, open_incident
from workflows.ports import Context

TODAY = date(2026, 3, 2)  # the district's local date at the harness clock


# --- helpers (test_photos.py uses them too) ---------------------------------------------------


def view_of(call: Call) -> dict[str, Any]:
    view = call.args["view"]
    return json.loads(view) if isinstance(view, str) else view


def blocks_text(blocks: Any) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def state(**fields: dict[str, Any]) -> dict[str, Any]:
    """View state where each block's single input has the same id as its block."""
    return {"values": {block: {block: value} for block, value in fields.items()}}


def new_incident_state(
    device_id: int | None,
    *,
    flags: tuple[str, ...] = ("screen",),
    occurred_on: date = date(2026, 2, 27),
    description: str = "Dropped on the bus",
    files: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    device = (
        {"type": "external_select", "selected_option": None}
        if device_id is None
        else {
            "type": "external_select",
            "selected_option": {
                "text": {"type": "plain_text", "text": "x"},
                "value": str(device_id),
            },
        }
    )
    return state(
        **{
            IncidentField.DEVICE: device,
            IncidentField.FLAGS: {
                "type": "multi_static_select",
                "selected_options": [
                    {"text": {"type": "plain_text", "text": f}, "value": f} for f in flags
                ],
            },
            IncidentField.OCCURRED_ON: {
                "type": "datepicker",
                "selected_date": occurred_on.isoformat(),
            },
            IncidentField.DESCRIPTION: {"type": "plain_text_input", "value": description},
            IncidentField.PHOTOS: {
                "type": "file_input",
                "files": [{"id": fid, "name": name} for fid, name in files],
            },
        }
    )


async def submit(
    slack: SlackHarness,
    callback_id: str,
    metadata: str,
    values: dict[str, Any],
    *,
    user: str = "U_TECH",
    view_id: str | None = None,
) -> dict[str, Any]:
    response = await slack.sender.interaction(
        {
            "type": "view_submission",
            "user": {"id": user},
            "trigger_id": "trigger.submit",
            "view": {
                "id": view_id or f"V{uuid.uuid4().hex[:8]}",
                "type": "modal",
                "callback_id": callback_id,
                "private_metadata": metadata,
                "hash": "h1",
                "state": values,
            },
        }
    )
    assert response.status_code == 200
    return response.json() if response.content else {}


async def open_new_incident_modal(slack: SlackHarness, user: str = "U_TECH") -> dict[str, Any]:
    before = len(slack.fake.calls_to("views.open"))
    response = await slack.sender.command("/incident", user=user)
    assert response.status_code == 200
    calls = await slack.fake.wait_for("views.open", count=before + 1)
    return view_of(calls[-1])


async def open_incident_via_modal(
    slack: SlackHarness, device_id: int, *, view_id: str | None = None, **kwargs: Any
) -> dict[str, Any]:
    """Submit the modal and wait until the incident is open (it is written after the ack)."""
    modal = await open_new_incident_modal(slack)
    view_id = view_id or f"V{uuid.uuid4().hex[:8]}"
    answer = await submit(
        slack,
        IncidentView.NEW,
        modal["private_metadata"],
        new_incident_state(device_id, **kwargs),
        view_id=view_id,
    )
    if answer.get("response_action") == "update":
        await opened_modal(slack, view_id)
    return answer


async def opened_modal(slack: SlackHarness, view_id: str) -> dict[str, Any]:
    """The modal as updated once the incident is open."""
    [call] = await slack.fake.wait_for("views.update", lambda c: c.args["view_id"] == view_id)
    return view_of(call)


async def post_card(slack: SlackHarness) -> Call:
    """Deliver the outbox and return the card's chat.postMessage."""
    await slack.deliver_outbox()
    posts = [
        c
        for c in slack.fake.calls_to("chat.postMessage")
        if c.args.get("channel") == INCIDENTS_CHANNEL and "thread_ts" not in c.args
    ]
    assert posts, "the card wasn't posted"
    return posts[-1]


def button_value(blocks: list[dict[str, Any]], action: IncidentAction) -> str:
    for block in blocks:
        for element in block.get("elements", []):
            if element.get("action_id") == action:
                return str(element["value"])
    raise AssertionError(f"no {action} button")


async def click(
    slack: SlackHarness,
    action: IncidentAction,
    value: str,
    *,
    user: str = "U_TECH",
    channel: str = INCIDENTS_CHANNEL,
    ts: str = "1700000000.000001",
) -> None:
    response = await slack.sender.interaction(
        {
            "type": "block_actions",
            "user": {"id": user},
            "trigger_id": f"trigger.{action}",
            "container": {"type": "message", "channel_id": channel, "message_ts": ts},
            "channel": {"id": channel},
            "actions": [
                {
                    "type": "button",
                    "action_id": action,
                    "block_id": "incident_card_actions",
                    "value": value,
                    "action_ts": "1700000001.0",
                }
            ],
        }
    )
    assert response.status_code == 200


async def incidents(slack: SlackHarness) -> list[m.Incident]:
    async with slack.runtime.stores() as store:
        result = list(
            (await store.session.execute(select(m.Incident).order_by(m.Incident.id))).scalars()
        )
        await store.commit()
        return result


async def refusals(slack: SlackHarness, staff_id: int | None) -> list[m.ActivityEntry]:
    assert staff_id is not None
    async with slack.runtime.stores() as store:
        result = await store.activity.for_entity("security", staff_id)
        await store.commit()
        return result


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Bolt answers at ack() and goes on working: poll for the outcome."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def has_incidents(slack: SlackHarness) -> bool:
    return bool(await incidents(slack))


async def status_is(slack: SlackHarness, status: str) -> bool:
    return (await incidents(slack))[0].status == status


async def district_with_incident(slack: SlackHarness) -> tuple[District, Call]:
    """A district, a technician (U_TECH), one incident opened from Slack, and its card."""
    d = await add_district(slack.runtime.stores)
    await slack.staff("Technician", "U_TECH")
    await open_incident_via_modal(slack, d.device_id)
    return d, await post_card(slack)


# --- /incident and the modal --------------------------------------------------------------------


async def test_incident_command_opens_the_new_incident_modal(slack: SlackHarness) -> None:
    await slack.staff("Technician", "U_TECH")
    view = await open_new_incident_modal(slack)
    assert view["callback_id"] == IncidentView.NEW
    blocks = {b["block_id"]: b for b in view["blocks"]}
    device = blocks[IncidentField.DEVICE]
    assert device["dispatch_action"] is True
    assert device["element"]["type"] == "external_select"
    assert device["element"]["min_query_length"] == 2
    flags = blocks[IncidentField.FLAGS]["element"]
    assert flags["type"] == "multi_static_select"
    assert {"screen", "water", "stolen"} <= {o["value"] for o in flags["options"]}
    assert blocks[IncidentField.OCCURRED_ON]["element"]["initial_date"] == TODAY.isoformat()
    assert blocks[IncidentField.DESCRIPTION]["optional"] is True
    photos = blocks[IncidentField.PHOTOS]["element"]
    assert photos["type"] == "file_input" and photos["max_files"] == 10
    assert set(photos["filetypes"]) == {"jpg", "jpeg", "png", "gif", "webp", "heic"}


async def test_staff_without_manage_incidents_is_told_why(slack: SlackHarness) -> None:
    clerk = await slack.staff("Billing Clerk", "U_CLERK")
    response = await slack.sender.command("/incident", user="U_CLERK")
    body = response.json()
    assert body["response_type"] == "ephemeral"
    assert "does not have the Manage Incidents permission" in body["text"]
    assert slack.fake.calls_to("views.open") == []
    assert [e.action for e in await refusals(slack, clerk.staff_id)] == ["refused"]


async def _suggest(slack: SlackHarness, text: str) -> list[str]:
    response = await slack.sender.interaction(
        {
            "type": "block_suggestion",
            "user": {"id": "U_TECH"},
            "action_id": IncidentField.DEVICE,
            "block_id": IncidentField.DEVICE,
            "value": text,
            "view": {"id": "V1", "callback_id": IncidentView.NEW, "type": "modal"},
        }
    )
    assert response.status_code == 200
    return [o["text"]["text"] for o in response.json()["options"]]


async def test_device_type_ahead_by_serial_tag_and_student(slack: SlackHarness) -> None:
    await add_district(slack.runtime.stores)
    await add_student_with_device(slack.runtime.stores, sis_id="S2", serial="5CD1299ABC")
    await add_student_with_device(slack.runtime.stores, sis_id="RIV", serial="NX-777")
    await slack.staff("Technician", "U_TECH")
    ana = "5CD1234XYZ · LMS-0001 · HP Chromebook 11 G9 — Ana Rivera"

    by_serial = await _suggest(slack, "5cd12")
    assert by_serial == [ana, "5CD1299ABC · HP Chromebook 11 G9 — Student S2"]
    assert await _suggest(slack, "5CD1234XYZ") == [ana]  # a scanned serial
    assert await _suggest(slack, "lms-0") == [ana]  # asset tag, any case
    assert await _suggest(slack, "ana riv") == [ana]  # first and last name
    assert await _suggest(slack, "rivera") == [ana]
    assert await _suggest(slack, "student r") == ["NX-777 · HP Chromebook 11 G9 — Student RIV"]
    assert await _suggest(slack, "x") == []  # below min_query_length
    assert await _suggest(slack, "50%") == []  # LIKE wildcards are plain text


async def test_picking_a_device_shows_who_had_it(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    await slack.staff("Technician", "U_TECH")
    modal = await open_new_incident_modal(slack)
    option = {"text": {"type": "plain_text", "text": "5CD1234XYZ"}, "value": str(d.device_id)}
    values = new_incident_state(d.device_id, occurred_on=date(2026, 2, 27))
    response = await slack.sender.interaction(
        {
            "type": "block_actions",
            "user": {"id": "U_TECH"},
            "trigger_id": "t.2",
            "container": {"type": "view", "view_id": "V_NEW"},
            "view": {**modal, "id": "V_NEW", "hash": "hash-1", "state": values},
            "actions": [
                {
                    "type": "external_select",
                    "action_id": IncidentField.DEVICE,
                    "block_id": IncidentField.DEVICE,
                    "selected_option": option,
                    "action_ts": "1",
                }
            ],
        }
    )
    assert response.status_code == 200
    update = (await slack.fake.wait_for("views.update"))[0]
    assert update.args["view_id"] == "V_NEW" and update.args["hash"] == "hash-1"
    view = view_of(update)
    assert view["private_metadata"] == modal["private_metadata"]
    text = blocks_text(view["blocks"])
    assert "*Ana Rivera* (grade 7, Lincoln Middle) had this device on Feb 27, 2026" in text
    device = next(b for b in view["blocks"] if b["block_id"] == IncidentField.DEVICE)
    assert device["element"]["initial_option"] == option


async def test_submission_opens_exactly_one_incident(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    tech = await slack.staff("Technician", "U_TECH")
    modal = await open_new_incident_modal(slack)
    values = new_incident_state(d.device_id, flags=("screen", "physical_damage"))

    first = await submit(
        slack, IncidentView.NEW, modal["private_metadata"], values, view_id="V_ONCE"
    )
    # Slack gets its answer before anything is written; the modal then shows the number.
    assert first["response_action"] == "update"
    assert "Opening the incident" in blocks_text(first["view"]["blocks"])
    assert "Incident *#1* is open" in blocks_text((await opened_modal(slack, "V_ONCE"))["blocks"])
    # Slack redelivers the same submission (same view id): still one incident, one card.
    again = await submit(
        slack, IncidentView.NEW, modal["private_metadata"], values, view_id="V_ONCE"
    )
    assert again["response_action"] == "update"
    await slack.fake.wait_for("views.update", lambda c: c.args["view_id"] == "V_ONCE", count=2)

    [incident] = await incidents(slack)
    assert incident.idempotency_key == "slack:view:V_ONCE"
    assert incident.device_id == d.device_id
    assert incident.student_id == d.student_id  # filled from the assignment on that date
    assert incident.reported_by_id == tech.staff_id
    assert incident.occurred_on == date(2026, 2, 27)
    assert sorted(incident.flag_names) == ["physical_damage", "screen"]
    assert incident.description == "Dropped on the bus"
    async with slack.runtime.stores() as store:
        cards = (
            await store.session.execute(
                select(func.count())
                .select_from(m.OutboxMessage)
                .where(m.OutboxMessage.kind == "slack.incident_card")
            )
        ).scalar_one()
        await store.commit()
    assert cards == 1


async def test_broken_rules_come_back_as_field_errors(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    await slack.staff("Technician", "U_TECH")
    modal = await open_new_incident_modal(slack)
    meta = modal["private_metadata"]

    future = await submit(
        slack, IncidentView.NEW, meta, new_incident_state(d.device_id, occurred_on=date(2026, 3, 3))
    )
    assert future == {
        "response_action": "errors",
        "errors": {IncidentField.OCCURRED_ON: "The incident date can't be in the future."},
    }
    no_flags = await submit(
        slack, IncidentView.NEW, meta, new_incident_state(d.device_id, flags=())
    )
    assert no_flags["errors"] == {IncidentField.FLAGS: "Pick at least one incident type."}
    no_device = await submit(slack, IncidentView.NEW, meta, new_incident_state(None))
    assert no_device["errors"] == {IncidentField.DEVICE: "Pick the device."}
    forged = await submit(slack, IncidentView.NEW, meta + "x", new_incident_state(d.device_id))
    assert "didn't come from DeviceCare" in forged["errors"][IncidentField.DEVICE]
    assert await incidents(slack) == []


async def test_shortcut_links_the_message_as_the_ticket(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    await slack.staff("Technician", "U_TECH")
    response = await slack.sender.interaction(
        {
            "type": "message_action",
            "callback_id": IncidentShortcut.OPEN_FROM_MESSAGE,
            "trigger_id": "trigger.shortcut",
            "user": {"id": "U_TECH"},
            "channel": {"id": "C_HELP", "name": "help"},
            "message_ts": "1699999999.000200",
            "message": {
                "type": "message",
                "ts": "1699999999.000200",
                "user": "U_TEACHER",
                "text": "Ana's screen is cracked &lt;3 &amp; <@U_TECH>",
            },
            "response_url": "https://hooks.slack.test/actions/1",
        }
    )
    assert response.status_code == 200
    [modal_call] = await slack.fake.wait_for("views.open")
    [link_call] = slack.fake.calls_to("chat.getPermalink")
    assert (link_call.args["channel"], link_call.args["message_ts"]) == (
        "C_HELP",
        "1699999999.000200",
    )
    modal = view_of(modal_call)
    description = next(b for b in modal["blocks"] if b["block_id"] == IncidentField.DESCRIPTION)
    assert description["element"]["initial_value"] == "Ana's screen is cracked <3 & <@U_TECH>"

    await submit(
        slack,
        IncidentView.NEW,
        modal["private_metadata"],
        new_incident_state(d.device_id, description="Cracked <!channel> & keys"),
    )
    await eventually(lambda: has_incidents(slack))
    [incident] = await incidents(slack)
    permalink = "https://district.slack.com/archives/C_HELP/p1699999999000200"
    assert incident.ticket_ref == permalink
    card = await post_card(slack)
    text = blocks_text(card.args["blocks"])
    assert f"<{permalink}|linked ticket>" in text
    assert '">Cracked &lt;!channel&gt; &amp; keys"' in text  # no @channel from a description


async def test_incident_number_shows_the_card_ephemerally(slack: SlackHarness) -> None:
    await district_with_incident(slack)
    shown = (await slack.sender.command("/incident", "#1")).json()
    assert shown["response_type"] == "ephemeral"
    text = blocks_text(shown["blocks"])
    assert "Incident #1 · Screen" in text and "5CD1234XYZ" in text and "Ana Rivera" in text
    assert IncidentAction.CHANGE_STATUS in text

    missing = (await slack.sender.command("/incident", "999")).json()
    assert missing["response_type"] == "ephemeral"
    assert "There's no incident #999" in missing["text"]
    usage = (await slack.sender.command("/incident", "cracked screen")).json()
    assert "*/incident 42* shows incident #42" in usage["text"]


# --- the card -----------------------------------------------------------------------------------


async def test_card_is_posted_once_then_updated_in_place(slack: SlackHarness) -> None:
    _, card = await district_with_incident(slack)
    assert card.args["channel"] == INCIDENTS_CHANNEL
    text = blocks_text(card.args["blocks"])
    for expected in (
        "Incident #1 · Screen",
        "5CD1234XYZ · LMS-0001 · HP Chromebook 11 G9",
        "Ana Rivera (grade 7)",
        "Lincoln Middle",
        "*Status*\\nOpen",
        "Feb 27, 2026",
        "No Active Coverage",
        "0 photos",
        "Dropped on the bus",
    ):
        assert expected in text, expected
    for action in (
        IncidentAction.CHANGE_STATUS,
        IncidentAction.ADD_NOTE,
        IncidentAction.ADD_PHOTOS,
        IncidentAction.CREATE_INVOICE,
        IncidentAction.REPLACE_DEVICE,
        IncidentAction.CLOSE,
    ):
        assert action in text
    assert IncidentAction.REQUEST_OVERRIDE not in text
    async with slack.runtime.stores() as store:
        post = await store.slack_posts.get(SlackPostKind.INCIDENT_CARD, 1)
        await store.commit()
    assert post is not None and post.channel == INCIDENTS_CHANNEL

    await click(
        slack, IncidentAction.CLOSE, button_value(card.args["blocks"], IncidentAction.CLOSE)
    )
    await eventually(lambda: status_is(slack, "closed"))
    await slack.deliver_outbox()
    [update] = slack.fake.calls_to("chat.update")
    assert (update.args["channel"], update.args["ts"]) == (post.channel, post.ts)
    updated = blocks_text(update.args["blocks"])
    assert "*Status*\\nClosed" in updated and IncidentAction.CLOSE not in updated
    assert (
        len(
            [
                c
                for c in slack.fake.calls_to("chat.postMessage")
                if c.args.get("channel") == INCIDENTS_CHANNEL
            ]
        )
        == 1
    )


async def test_card_shows_coverage_and_repeat_offender_badges(slack: SlackHarness) -> None:
    from tests.builders import add_policy

    d = await add_district(slack.runtime.stores)
    await add_policy(slack.runtime.stores, d.student_id, name="Device Protection", max_claims=2)
    tech = await slack.staff("Technician", "U_TECH")
    async with slack.runtime.stores() as store:
        ctx = Context(store, slack.clock, slack.runtime.settings.tz)
        for day in (3, 10, 17):  # the default rule: 3 physical-damage incidents a year
            await open_incident(
                ctx,
                tech,
                OpenIncident(
                    device_id=d.device_id,
                    occurred_on=date(2026, 2, day),
                    flags=("physical_damage",),
                ),
            )
        from bot.slack.cards import queue_incident_card

        await queue_incident_card(store, 3)
        await store.commit()
    card = await post_card(slack)
    text = blocks_text(card.args["blocks"])
    assert "Device Protection (2025-2026)" in text and "Claim 1 of 2 this term" in text
    assert "*Repeat offender:* Physical Damage" in text


async def test_a_429_on_posting_the_card_is_retried(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    await slack.staff("Technician", "U_TECH")
    await open_incident_via_modal(slack, d.device_id)
    slack.fake.fail_next("chat.postMessage", 429, retry_after=1)
    await slack.deliver_outbox()
    attempts = slack.fake.calls_to("chat.postMessage")
    assert len(attempts) == 2  # rate limited, then posted after Retry-After
    async with slack.runtime.stores() as store:
        post = await store.slack_posts.get(SlackPostKind.INCIDENT_CARD, 1)
        card_rows = select(m.OutboxMessage).where(m.OutboxMessage.kind == "slack.incident_card")
        row = (await store.session.execute(card_rows)).scalar_one()
        await store.commit()
    assert post is not None and post.channel == INCIDENTS_CHANNEL
    assert row.status == "sent" and row.attempts == 1


# --- card actions ---------------------------------------------------------------------------


async def test_technician_status_modal_and_a_forged_status(slack: SlackHarness) -> None:
    _, card = await district_with_incident(slack)
    tech_id = (await incidents(slack))[0].reported_by_id
    value = button_value(card.args["blocks"], IncidentAction.CHANGE_STATUS)
    await click(slack, IncidentAction.CHANGE_STATUS, value)
    modal = view_of((await slack.fake.wait_for("views.open", count=2))[-1])
    assert modal["callback_id"] == IncidentView.CHANGE_STATUS
    select_ = modal["blocks"][1]["element"]
    offered = [o["value"] for o in select_["options"]]
    assert offered == [
        "in_repair",
        "awaiting_parts",
        "vendor_repair",
        "ready_for_pickup",
        "closed",
    ]  # no insurance_claim for a Technician

    def status_state(status: str) -> dict[str, Any]:
        return state(
            **{
                IncidentField.STATUS: {
                    "type": "static_select",
                    "selected_option": {
                        "text": {"type": "plain_text", "text": status},
                        "value": status,
                    },
                }
            }
        )

    forged = await submit(
        slack,
        IncidentView.CHANGE_STATUS,
        modal["private_metadata"],
        status_state("insurance_claim"),
    )
    assert forged == {
        "response_action": "errors",
        "errors": {IncidentField.STATUS: "You can't move incidents to that status."},
    }
    assert (await incidents(slack))[0].status == "open"
    [refusal] = await refusals(slack, tech_id)
    assert refusal.comment == "change incident status: You can't move incidents to that status."
    async with slack.runtime.stores() as store:
        assert (
            await store.session.execute(
                select(func.count())
                .select_from(m.OutboxMessage)
                .where(m.OutboxMessage.status == "pending")
            )
        ).scalar_one() == 0
        await store.commit()

    done = await submit(
        slack, IncidentView.CHANGE_STATUS, modal["private_metadata"], status_state("in_repair")
    )
    assert done == {}
    # The change is written right after the ack; the card updating confirms it.
    for _ in range(100):
        if (await incidents(slack))[0].status == "in_repair":
            break
        await asyncio.sleep(0.02)
    assert (await incidents(slack))[0].status == "in_repair"
    await slack.deliver_outbox()
    [update] = slack.fake.calls_to("chat.update")
    async with slack.runtime.stores() as store:
        post = await store.slack_posts.get(SlackPostKind.INCIDENT_CARD, 1)
        await store.commit()
    assert post is not None and update.args["ts"] == post.ts
    assert "*Status*\\nIn Repair" in blocks_text(update.args["blocks"])


async def test_billing_clerk_is_offered_only_insurance_claim(slack: SlackHarness) -> None:
    _, card = await district_with_incident(slack)
    await slack.staff("Billing Clerk", "U_CLERK")
    value = button_value(card.args["blocks"], IncidentAction.CHANGE_STATUS)
    await click(slack, IncidentAction.CHANGE_STATUS, value, user="U_CLERK")
    modal = view_of((await slack.fake.wait_for("views.open", count=2))[-1])
    assert [o["value"] for o in modal["blocks"][1]["element"]["options"]] == ["insurance_claim"]


async def test_a_forged_button_value_is_refused(slack: SlackHarness) -> None:
    _, card = await district_with_incident(slack)
    tech_id = (await incidents(slack))[0].reported_by_id
    value = button_value(card.args["blocks"], IncidentAction.CLOSE)
    version, name, data, signature = value.split(".")
    altered = ".".join(
        [version, name, data[:-2] + ("AA" if data[-2:] != "AA" else "BB"), signature]
    )
    await click(slack, IncidentAction.CLOSE, altered)
    [told] = await slack.fake.wait_for("chat.postEphemeral")
    assert told.args["user"] == "U_TECH"
    assert "didn't come from DeviceCare; nothing was changed" in told.args["text"]
    assert (await incidents(slack))[0].status == "open"
    [refusal] = await refusals(slack, tech_id)
    assert refusal.comment is not None and refusal.comment.startswith("close incident:")


async def test_add_note_from_the_card(slack: SlackHarness) -> None:
    _, card = await district_with_incident(slack)
    await click(
        slack, IncidentAction.ADD_NOTE, button_value(card.args["blocks"], IncidentAction.ADD_NOTE)
    )
    modal = view_of((await slack.fake.wait_for("views.open", count=2))[-1])
    assert modal["callback_id"] == IncidentView.ADD_NOTE
    note_state = state(**{IncidentField.NOTE: {"type": "plain_text_input", "value": ""}})
    empty = await submit(slack, IncidentView.ADD_NOTE, modal["private_metadata"], note_state)
    assert empty["errors"] == {IncidentField.NOTE: "The note is empty."}
    note_state = state(
        **{IncidentField.NOTE: {"type": "plain_text_input", "value": "Parent says <b>it fell</b>"}}
    )
    assert await submit(slack, IncidentView.ADD_NOTE, modal["private_metadata"], note_state) == {}

    async def noted() -> bool:  # written after the answer
        async with slack.runtime.stores() as store:
            result = bool((await store.session.execute(select(m.Note))).scalars().all())
            await store.commit()
            return result

    await eventually(noted)
    async with slack.runtime.stores() as store:
        [note] = (await store.session.execute(select(m.Note))).scalars().all()
        await store.commit()
    assert note.body == "Parent says <b>it fell</b>" and note.incident_id == 1
    await slack.deliver_outbox()
    [update] = slack.fake.calls_to("chat.update")
    assert "1 note" in blocks_text(update.args["blocks"])
    thread = [c for c in slack.fake.calls_to("chat.postMessage") if c.args.get("thread_ts")]
    assert len(thread) == 1
    assert "Parent says &lt;b&gt;it fell&lt;/b&gt;" in thread[0].args["text"]


async def test_close_refused_for_a_role_without_manage_incidents(slack: SlackHarness) -> None:
    _, card = await district_with_incident(slack)
    await slack.staff("Billing Clerk", "U_CLERK")
    await click(
        slack,
        IncidentAction.CLOSE,
        button_value(card.args["blocks"], IncidentAction.CLOSE),
        user="U_CLERK",
    )
    [told] = await slack.fake.wait_for("chat.postEphemeral")
    assert "does not have the Manage Incidents permission" in told.args["text"]
    assert (await incidents(slack))[0].status == "open"


async def test_global_shortcut_opens_the_modal_without_a_ticket(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    await slack.staff("Technician", "U_TECH")
    response = await slack.sender.interaction(
        {
            "type": "shortcut",
            "callback_id": IncidentShortcut.NEW,
            "trigger_id": "trigger.global",
            "user": {"id": "U_TECH"},
        }
    )
    assert response.status_code == 200
    modal = view_of((await slack.fake.wait_for("views.open"))[0])
    assert slack.fake.calls_to("chat.getPermalink") == []
    await submit(
        slack, IncidentView.NEW, modal["private_metadata"], new_incident_state(d.device_id)
    )
    await eventually(lambda: has_incidents(slack))
    [incident] = await incidents(slack)
    assert incident.ticket_ref is None
