"""Payloads and set-up shared by the invoice, override and device Slack tests."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from sqlalchemy import select

from bot.slack.ids import IncidentAction, IncidentRef, SlackPostKind
from bot.slack.invoice_blocks import InvoiceView
from bot.slack.metadata import Payload, pack
from storage import models as m
from tests.slack.conftest import INCIDENTS_CHANNEL, SlackHarness
from tests.slack.fake_api import Call
from workflows.incidents import OpenIncident, open_incident
from workflows.invoices import CreateInvoice, CustomLine, create_invoice_for_incident
from workflows.permissions import Actor
from workflows.ports import Context

CARD_TS = "1699999999.{:06d}"


def signed(slack: SlackHarness, payload: Payload) -> str:
    return pack(payload, slack.runtime.settings.secret_key.get_secret_value())


def incident_ref(slack: SlackHarness, incident_id: int) -> str:
    return signed(slack, IncidentRef(incident_id=incident_id))


def card_ts(incident_id: int) -> str:
    return CARD_TS.format(incident_id)


async def open_test_incident(
    slack: SlackHarness,
    actor: Actor,
    device_id: int,
    *,
    occurred: date = date(2026, 2, 20),
    flags: tuple[str, ...] = ("screen",),
) -> int:
    """An incident opened by the workflow, with its card already in the incidents channel."""
    async with slack.runtime.stores() as store:
        opened = await open_incident(
            Context(store, slack.clock, slack.runtime.settings.tz),
            actor,
            OpenIncident(
                device_id=device_id, occurred_on=occurred, flags=flags, description="Cracked"
            ),
        )
        incident_id = opened.incident.id
        await store.slack_posts.save(
            SlackPostKind.INCIDENT_CARD, incident_id, INCIDENTS_CHANNEL, card_ts(incident_id)
        )
        await store.commit()
    return incident_id


async def use_the_only_claim(slack: SlackHarness, device_id: int, tech: Actor) -> int:
    """An earlier incident whose invoice takes the policy's one claim this term."""
    first = await open_test_incident(slack, tech, device_id, occurred=date(2026, 1, 10))
    async with slack.runtime.stores() as store:
        await create_invoice_for_incident(
            Context(store, slack.clock, slack.runtime.settings.tz),
            tech,
            CreateInvoice(incident_id=first, custom_lines=(CustomLine("Screen", 12500),)),
        )
        await store.commit()
    return first


def _user(user: str) -> dict[str, str]:
    return {"id": user, "username": user.lower(), "team_id": "T_DISTRICT"}


def click(
    user: str,
    action_id: str,
    value: str,
    *,
    channel: str = INCIDENTS_CHANNEL,
    message_ts: str = "1700000000.000100",
    thread_ts: str | None = None,
) -> dict[str, Any]:
    """block_actions for a button on a channel message."""
    message: dict[str, Any] = {"type": "message", "ts": message_ts, "text": "a message"}
    if thread_ts:
        message["thread_ts"] = thread_ts
    return {
        "type": "block_actions",
        "user": _user(user),
        "trigger_id": f"trigger.{uuid.uuid4().hex[:12]}",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "channel": {"id": channel, "name": "channel"},
        "message": message,
        "response_url": "https://hooks.slack.test/actions/1",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "actions",
                "value": value,
                "action_ts": "1700000001.000000",
            }
        ],
    }


def in_view(view: dict[str, Any], view_id: str, values: dict[str, Any]) -> dict[str, Any]:
    return {**view, "id": view_id, "hash": f"hash.{view_id}", "state": {"values": values}}


def view_action(
    user: str, view: dict[str, Any], view_id: str, values: dict[str, Any], action_id: str
) -> dict[str, Any]:
    """block_actions from an input with dispatch_action (or a button) inside a modal."""
    return {
        "type": "block_actions",
        "user": _user(user),
        "trigger_id": f"trigger.{uuid.uuid4().hex[:12]}",
        "container": {"type": "view", "view_id": view_id},
        "view": in_view(view, view_id, values),
        "actions": [
            {
                "type": "multi_static_select",
                "action_id": action_id,
                "block_id": action_id,
                "action_ts": "1700000001.000000",
            }
        ],
    }


def submission(
    user: str, view: dict[str, Any], view_id: str, values: dict[str, Any]
) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "user": _user(user),
        "trigger_id": f"trigger.{uuid.uuid4().hex[:12]}",
        "view": in_view(view, view_id, values),
        "response_urls": [],
    }


async def submit_invoice(
    slack: SlackHarness, user: str, view: dict[str, Any], view_id: str, values: dict[str, Any]
) -> dict[str, Any]:
    """Submit the invoice modal. When it is accepted, the answer says the invoice is being
    created and the invoice replaces it once made (after the answer): the answer is returned
    with that view."""

    def mine(c: Call) -> bool:
        return c.args.get("view_id") == view_id

    before = len([c for c in slack.fake.calls_to("views.update") if mine(c)])
    response = await slack.sender.interaction(submission(user, view, view_id, values))
    assert response.status_code == 200
    answer: dict[str, Any] = response.json() if response.content else {}
    if answer.get("response_action") == "update":
        assert "Creating the invoice" in all_text(answer["view"])
        calls = await slack.fake.wait_for("views.update", mine, count=before + 1)
        answer = {**answer, "view": view_of(calls[-1])}
    return answer


async def open_invoice_modal(slack: SlackHarness, user: str, incident_id: int) -> dict:
    before = len(slack.fake.calls_to("views.open"))
    response = await slack.sender.interaction(
        click(user, IncidentAction.CREATE_INVOICE, incident_ref(slack, incident_id))
    )
    assert response.status_code == 200
    calls = await slack.fake.wait_for("views.open", count=before + 1)
    view = view_of(calls[-1])
    assert view["callback_id"] == InvoiceView.CREATE
    return view


# --- view state values ---------------------------------------------------------------------


def selected(block_id: str, values: list[str], kind: str = "multi_static_select") -> dict:
    return {
        block_id: {block_id: {"type": kind, "selected_options": [{"value": v} for v in values]}}
    }


def typed(block_id: str, value: str | None) -> dict:
    return {block_id: {block_id: {"type": "plain_text_input", "value": value}}}


def picked_date(block_id: str, day: date) -> dict:
    return {block_id: {block_id: {"type": "datepicker", "selected_date": day.isoformat()}}}


def ticked(block_id: str, values: list[str]) -> dict:
    return selected(block_id, values, kind="checkboxes")


def merge(*parts: dict) -> dict:
    out: dict = {}
    for part in parts:
        out.update(part)
    return out


# --- reading what was sent ------------------------------------------------------------------


def view_of(call: Call) -> dict[str, Any]:
    view = call.args["view"]
    return json.loads(view) if isinstance(view, str) else view


def blocks_of(call: Call) -> list[dict[str, Any]]:
    blocks = call.args.get("blocks") or []
    return json.loads(blocks) if isinstance(blocks, str) else blocks


def block_ids(view: dict[str, Any]) -> list[str]:
    return [b.get("block_id", "") for b in view.get("blocks", [])]


def all_text(blocks: list[dict[str, Any]] | dict[str, Any]) -> str:
    """Every string in a view or a list of blocks, for "does it say …" assertions."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key not in ("value", "private_metadata"):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks)
    return "\n".join(out)


def action_ids(blocks: list[dict[str, Any]] | dict[str, Any]) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "action_id" in node:
                found.append(node["action_id"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks)
    return found


def button_value(blocks: list[dict[str, Any]] | dict[str, Any], action_id: str) -> str:
    values: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("action_id") == action_id and "value" in node:
                values.append(node["value"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks)
    assert values, f"no {action_id} button"
    return values[0]


def ephemerals_to(slack: SlackHarness, user: str) -> list[str]:
    return [
        c.args.get("text", "")
        for c in slack.fake.calls_to("chat.postEphemeral")
        if c.args.get("user") == user
    ]


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 5.0, what: str = "condition"
) -> None:
    """Listeners keep working after ack(): poll the store until they are done."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def invoices(slack: SlackHarness) -> list[m.Invoice]:
    async with slack.runtime.stores() as store:
        rows = await store.session.execute(select(m.Invoice).order_by(m.Invoice.id))
        await store.commit()
        return list(rows.scalars())


async def outbox_kinds(slack: SlackHarness) -> list[str]:
    async with slack.runtime.stores() as store:
        rows = await store.session.execute(select(m.OutboxMessage).order_by(m.OutboxMessage.id))
        await store.commit()
        return [row.kind for row in rows.scalars()]


async def refusals(slack: SlackHarness, actor: Actor) -> list[m.ActivityEntry]:
    assert actor.staff_id is not None
    async with slack.runtime.stores() as store:
        entries = await store.activity.for_entity("security", actor.staff_id)
        result = [e for e in entries if e.action == "refused"]
        await store.commit()
        return result
