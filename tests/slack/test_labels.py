"""People read labels, never ids: the typical flows' Slack messages, modals and report summary
are scanned for the snake_case ids of flags and statuses."""

from __future__ import annotations

import re
from typing import Any

from bot.slack.cards import queue_incident_card
from tests.builders import add_district
from tests.slack.conftest import INCIDENTS_CHANNEL, SlackHarness
from tests.slack.money_helpers import open_invoice_modal, open_test_incident
from workflows.adjustments import AdjustmentKind, AdjustmentStatus
from workflows.incident_status import IncidentStatus
from workflows.incidents import change_incident_status
from workflows.invoices import InvoiceKind, InvoiceStatus
from workflows.labels import (
    DEVICE_STATUSES,
    INCIDENT_FLAGS,
    INCIDENT_STATUSES,
    adjustment_kind_label,
    decision_label,
    flag_label,
    flags_text,
    incident_status_label,
    invoice_kind_label,
    invoice_status_label,
    payment_method_label,
)
from workflows.overrides import OverrideStatus
from workflows.payments import PaymentMethod
from workflows.pending_payments import PendingStatus
from workflows.ports import Context

# Ids a person could mistake for words are fine ("screen", "open"); ids with an underscore
# are what leaked before.
RAW_IDS = sorted(
    {i for table in (INCIDENT_FLAGS, INCIDENT_STATUSES, DEVICE_STATUSES) for i in table if "_" in i}
)
RAW = re.compile(r"\b(" + "|".join(RAW_IDS) + r")\b")
# Where Slack shows words to a person; values, ids and metadata are for machines.
SHOWN_KEYS = {"text", "initial_comment", "alt_text", "title", "placeholder", "fallback"}
SHOWN_METHODS = (
    "chat.postMessage",
    "chat.postEphemeral",
    "chat.update",
    "views.open",
    "views.update",
    "views.publish",
    "views.push",
    "files.completeUploadExternal",
)


def shown_strings(node: Any, key: str | None = None) -> list[str]:
    if isinstance(node, str):
        return [node] if key in SHOWN_KEYS else []
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in shown_strings(v, k if k in SHOWN_KEYS else key)]
    if isinstance(node, list):
        return [s for item in node for s in shown_strings(item, key)]
    return []


def leaks(slack: SlackHarness, *answers: Any) -> list[str]:
    calls = [c.args for method in SHOWN_METHODS for c in slack.fake.calls_to(method)]
    return [
        text
        for node in (*calls, *answers)
        for text in shown_strings(node, "text" if isinstance(node, str) else None)
        if RAW.search(text)
    ]


async def test_typical_flows_show_labels_not_ids(slack: SlackHarness) -> None:
    d = await add_district(slack.runtime.stores)
    tech = await slack.staff("Technician", "U_TECH")
    await slack.staff("Billing Clerk", "U_CLERK")
    incident_id = await open_test_incident(
        slack, tech, d.device_id, flags=("physical_damage", "water", "cracked_hinge")
    )
    async with slack.runtime.stores() as store:
        ctx = Context(store, slack.clock, slack.runtime.settings.tz)
        await change_incident_status(ctx, tech, incident_id, IncidentStatus.AWAITING_PARTS)
        await queue_incident_card(store, incident_id)  # as the status form does
        await store.commit()
    await slack.deliver_outbox()  # the card, updated in place

    device = await slack.sender.command("/device", "5CD1234XYZ", user="U_TECH")
    assert device.status_code == 200
    modal = await open_invoice_modal(slack, "U_CLERK", incident_id)
    home = await slack.sender.event({"type": "app_home_opened", "user": "U_TECH", "tab": "home"})
    assert home.status_code == 200
    await slack.fake.wait_for("views.publish")
    report = await slack.sender.command(
        "/report", "incidents-by-type 2026-02-01..2026-02-28", user="U_TECH", channel="C_HELP"
    )
    assert report.status_code == 200
    await slack.fake.wait_for(
        "chat.postMessage", lambda c: c.args.get("channel") == "C_HELP", timeout=15
    )

    device_text = " ".join(shown_strings(device.json()["blocks"], "text"))
    assert "Cracked Hinge, Physical Damage, Liquid Damage" in device_text
    assert "Awaiting Parts" in device_text
    assert "Physical Damage" in " ".join(shown_strings(modal["blocks"]))
    card = [
        c for c in slack.fake.calls_to("chat.update") if c.args.get("channel") == INCIDENTS_CHANNEL
    ]
    assert card and "Awaiting Parts" in " ".join(shown_strings(card[-1].args))
    summary = " ".join(
        s
        for c in slack.fake.calls_to("chat.postMessage")
        if c.args.get("channel") == "C_HELP"
        for s in shown_strings(c.args)
    )
    assert "Most common: Cracked Hinge 1, Physical Damage 1, Liquid Damage 1." in summary
    assert leaks(slack, device.json()) == []
    assert leaks(slack, {"blocks": [{"text": {"text": "Now in_repair"}}]}) == ["Now in_repair"]


def test_every_id_a_person_can_meet_has_a_label() -> None:
    def worded(text: str) -> bool:
        return bool(text) and "_" not in text and (text[0].isupper() or text[0].isdigit())

    assert all(worded(flag_label(f)) for f in INCIDENT_FLAGS)
    assert all(worded(incident_status_label(s)) for s in IncidentStatus)
    assert all(worded(invoice_status_label(s)) for s in InvoiceStatus)
    assert all(worded(invoice_kind_label(k)) for k in InvoiceKind)
    assert all(worded(payment_method_label(m)) for m in PaymentMethod)
    assert all(worded(adjustment_kind_label(k)) for k in AdjustmentKind)
    for status in (*OverrideStatus, *AdjustmentStatus, *PendingStatus):
        assert worded(decision_label(status))
    # The enums' own labels are these.
    assert IncidentStatus.READY_FOR_PICKUP.label == "Ready for Pickup"
    assert InvoiceStatus.FIRST.label == invoice_status_label("first") == "1st Notice"
    # A district's own flag, and an unknown id, still read as words.
    assert flags_text(["water", "cracked_hinge"]) == "Liquid Damage, Cracked Hinge"
    assert flags_text([]) == "No type"
    assert incident_status_label("sent_to_vendor") == "Sent to vendor"
    assert payment_method_label("online").lower() == "online payment"
