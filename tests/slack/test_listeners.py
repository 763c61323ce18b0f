"""The listener toolkit on its own: a bolt app with only these listeners (and the real actor
middleware), driven through signed HTTP requests against the fake Slack Web API.

A click is acked before its body runs; a forged ref is told, logged and runs nothing; a
submission's domain errors come back next to their fields, refusals logged, and the write
happens only after the ack."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from bot.runtime import Runtime
from bot.signing import signing_keys
from bot.slack import billing_command
from bot.slack.actors import actor_middleware
from bot.slack.blocks import element
from bot.slack.client import close_web_client
from bot.slack.errors import FormErrors
from bot.slack.listeners import (
    Click,
    Command,
    ModalForm,
    Submitted,
    in_view_metadata,
    on_click,
    on_subcommand,
    wire,
)
from bot.slack.metadata import Payload, pack
from bot.web.app import create_web_app
from storage import models as m
from tests.slack.conftest import SlackHarness
from tests.slack.fake_api import BOT_TOKEN
from tests.slack.signing import SIGNING_SECRET, SlackSender
from workflows.errors import ConflictError, PermissionDenied, ValidationError
from workflows.permissions import Actor, Permission

FORGED = "That button or form didn't come from DeviceCare; nothing was changed."


class Thing(Payload):
    thing_id: int


@dataclass
class Seen:
    """What the listeners below did, in order, for the test to read."""

    events: list[str]
    release: asyncio.Event


SEEN = Seen([], asyncio.Event())


@on_click("test.poke", what="poke a thing", ref=Thing)
async def handle_poke(click: Click[Thing]) -> None:
    SEEN.events.append(f"poked {click.ref.thing_id} as {click.actor.name}")
    await asyncio.wait_for(SEEN.release.wait(), timeout=5)  # the ack went out before this
    SEEN.events.append("done")


@on_click("test.refuse", what="refuse a thing", ref=Thing)
async def handle_refuse(click: Click[Thing]) -> None:
    raise PermissionDenied("Your role can't do that.")


@on_click("test.in_modal", what="look at a thing", ref=Thing, ref_from=in_view_metadata)
async def handle_in_modal(click: Click[Thing]) -> None:
    await click.tell(f"thing {click.ref.thing_id}")


thing_form: ModalForm[Thing, int] = ModalForm(
    "test.form",
    meta=Thing,
    what="change a thing",
    doing="change the thing",
    fields={"amount": "test.amount", "note": "test.note"},
    default_field="test.amount",
    working=lambda _form: {"type": "modal", "title": {"type": "plain_text", "text": "Working"}},
)


@thing_form.check
async def check_thing(form: Submitted[Thing]) -> int:
    text = str(element(form.values, "test.amount").get("value") or "")
    if not text:
        raise FormErrors({"test.amount": "Enter an amount."})
    if text == "deny":
        raise PermissionDenied("Changing things needs a permission your role doesn't have.")
    if text == "note":
        raise ValidationError("The note is too long.", field="note")
    if text == "elsewhere":
        raise ConflictError("That thing was changed meanwhile.")
    return int(text)


@thing_form.write
async def change_thing(form: Submitted[Thing], amount: int) -> None:
    SEEN.events.append(f"wrote {amount} on {form.meta.thing_id}")
    await form.tell(f"changed by {amount}")


# A form whose rules about none of its fields close it and are told by message.
apart_form: ModalForm[Thing, int] = ModalForm(
    "test.apart",
    meta=Thing,
    what="keep a thing",
    doing="keep the thing",
    fields={"amount": "test.amount"},
    default_field="test.amount",
    apart=":warning: {} Nothing was changed.",
)


@apart_form.check
async def check_apart(form: Submitted[Thing]) -> int:
    text = str(element(form.values, "test.amount").get("value") or "")
    if text == "amount":
        raise ValidationError("Too much.", field="amount")
    if text == "elsewhere":
        raise ConflictError("That thing was changed meanwhile.")
    return int(text)


@apart_form.write
async def keep_thing(form: Submitted[Thing], amount: int) -> None:
    SEEN.events.append(f"kept {amount}")


@on_subcommand(
    "thing",
    "`AMOUNT`: a thing.",
    what="/billing thing",
    needs=Permission.MANAGE_SETTINGS,
    denied="Things need the Manage Settings permission.",
    warning=":warning: {}\n\nUsage: `/billing thing AMOUNT`",
)
async def handle_billing_thing(cmd: Command) -> None:
    if not cmd.args:
        raise ValidationError("Which amount?")
    await cmd.ack(f"thing {cmd.args[0]}")


@dataclass
class Toolkit:
    harness: SlackHarness
    sender: SlackSender
    actor: Actor


@pytest.fixture
async def toolkit(slack: SlackHarness) -> AsyncIterator[Toolkit]:
    SEEN.events.clear()
    SEEN.release = asyncio.Event()
    runtime: Runtime = slack.runtime
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.fake.base_url)
    app = AsyncApp(client=client, signing_secret=SIGNING_SECRET)
    app.use(actor_middleware(runtime))
    billing_command.register(app, runtime)
    wire(app, runtime, handle_poke, handle_refuse, handle_in_modal, thing_form, apart_form)
    wire(app, runtime, handle_billing_thing)
    actor = await slack.staff("Billing Clerk", "U_CLERK")
    transport = httpx.ASGITransport(app=create_web_app(runtime, app))
    async with httpx.AsyncClient(transport=transport, base_url="http://devicecare.test") as http:
        yield Toolkit(slack, SlackSender(http), actor)
    SEEN.release.set()
    await close_web_client(client)


def _ref(slack: SlackHarness, thing_id: int) -> str:
    return pack(Thing(thing_id=thing_id), signing_keys(slack.runtime.settings))


def _click(action_id: str, value: str, **extra: object) -> dict[str, object]:
    return {
        "type": "block_actions",
        "user": {"id": "U_CLERK"},
        "channel": {"id": "C_BILLING"},
        "trigger_id": "trigger.1",
        "actions": [{"action_id": action_id, "block_id": "b", "value": value, "type": "button"}],
        **extra,
    }


def _submission(
    meta: str, amount: str | None, *, blocks: tuple[str, ...], callback_id: str = "test.form"
) -> dict[str, object]:
    values = {} if amount is None else {"test.amount": {"test.amount": {"value": amount}}}
    return {
        "type": "view_submission",
        "user": {"id": "U_CLERK"},
        "view": {
            "id": "V_THING",
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": meta,
            "blocks": [{"type": "input", "block_id": b} for b in blocks],
            "state": {"values": values},
        },
    }


async def _refusals(slack: SlackHarness) -> list[str]:
    async with slack.runtime.stores() as store:
        rows = await store.session.execute(
            select(m.ActivityEntry.comment).where(m.ActivityEntry.action == "refused")
        )
        await store.commit()
        return [str(c) for c in rows.scalars()]


async def _settled(slack: SlackHarness, count: int) -> list[str]:
    for _ in range(100):
        found = await _refusals(slack)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    return await _refusals(slack)


async def test_a_click_is_acked_before_its_body_runs(toolkit: Toolkit) -> None:
    slack = toolkit.harness
    response = await asyncio.wait_for(
        toolkit.sender.interaction(_click("test.poke", _ref(slack, 7))), timeout=3
    )
    # Answered while the body still waits for the release it can only get after the answer.
    assert response.status_code == 200
    assert "done" not in SEEN.events
    SEEN.release.set()
    for _ in range(100):
        if "done" in SEEN.events:
            break
        await asyncio.sleep(0.02)
    assert SEEN.events == [f"poked 7 as {toolkit.actor.name}", "done"]


async def test_a_forged_ref_is_told_logged_and_runs_nothing(
    toolkit: Toolkit, caplog: pytest.LogCaptureFixture
) -> None:
    slack = toolkit.harness
    good = _ref(slack, 7)
    forged = good.rsplit(".", 1)[0] + ".0000000000000000"
    caplog.set_level(logging.WARNING, logger="devicecare.slack")
    response = await toolkit.sender.interaction(_click("test.poke", forged))
    assert response.status_code == 200
    told = await slack.fake.wait_for("chat.postEphemeral")
    assert told[0].args["text"] == f":warning: {FORGED}"
    assert SEEN.events == []
    assert f"refused poke a thing for {toolkit.actor.name}: {FORGED}" in caplog.text
    assert await _settled(slack, 1) == [f"poke a thing: {FORGED}"]


async def test_a_refused_click_is_told_and_logged(
    toolkit: Toolkit, caplog: pytest.LogCaptureFixture
) -> None:
    slack = toolkit.harness
    caplog.set_level(logging.WARNING, logger="devicecare.slack")
    await toolkit.sender.interaction(_click("test.refuse", _ref(slack, 3)))
    told = await slack.fake.wait_for("chat.postEphemeral")
    assert told[0].args["text"] == ":warning: Your role can't do that."
    assert f"refused refuse a thing for {toolkit.actor.name}" in caplog.text
    assert await _settled(slack, 1) == ["refuse a thing: Your role can't do that."]


async def test_a_ref_can_come_from_the_modal_the_input_is_in(toolkit: Toolkit) -> None:
    slack = toolkit.harness
    click = _click(
        "test.in_modal",
        "ignored",
        view={"id": "V1", "type": "modal", "private_metadata": _ref(slack, 9)},
    )
    await toolkit.sender.interaction(click)
    told = await slack.fake.wait_for("chat.postEphemeral")
    assert told[0].args["text"] == "thing 9"


async def test_form_errors_and_domain_errors_come_back_next_to_their_fields(
    toolkit: Toolkit,
) -> None:
    slack = toolkit.harness
    meta = _ref(slack, 5)
    both = ("test.amount", "test.note")

    missing = await toolkit.sender.interaction(_submission(meta, None, blocks=both))
    assert missing.json() == {
        "response_action": "errors",
        "errors": {"test.amount": "Enter an amount."},
    }

    note = await toolkit.sender.interaction(_submission(meta, "note", blocks=both))
    assert note.json()["errors"] == {"test.note": "The note is too long."}
    # A field the modal doesn't show can't carry an error: it goes on the default field.
    hidden = await toolkit.sender.interaction(_submission(meta, "note", blocks=("test.amount",)))
    assert hidden.json()["errors"] == {"test.amount": "The note is too long."}
    # A rule about no field in particular: the default field.
    conflict = await toolkit.sender.interaction(_submission(meta, "elsewhere", blocks=both))
    assert conflict.json()["errors"] == {"test.amount": "That thing was changed meanwhile."}

    await asyncio.sleep(0.2)
    assert SEEN.events == []  # nothing was written
    assert await _refusals(slack) == []  # broken rules are not refusals


async def test_refused_and_forged_submissions_are_logged_and_write_nothing(
    toolkit: Toolkit, caplog: pytest.LogCaptureFixture
) -> None:
    slack = toolkit.harness
    caplog.set_level(logging.WARNING, logger="devicecare.slack")
    both = ("test.amount", "test.note")
    denied = await toolkit.sender.interaction(_submission(_ref(slack, 5), "deny", blocks=both))
    message = "Changing things needs a permission your role doesn't have."
    assert denied.json()["errors"] == {"test.amount": message}
    forged = await toolkit.sender.interaction(_submission("v1.Thing.e30.bad", "10", blocks=both))
    assert forged.json()["errors"] == {"test.amount": FORGED}
    assert sorted(await _settled(slack, 2)) == sorted(
        [f"change a thing: {FORGED}", f"change a thing: {message}"]
    )
    assert f"refused change a thing for {toolkit.actor.name}: {message}" in caplog.text
    await asyncio.sleep(0.2)
    assert SEEN.events == []


async def test_a_good_submission_is_answered_then_written(toolkit: Toolkit) -> None:
    slack = toolkit.harness
    response = await toolkit.sender.interaction(
        _submission(_ref(slack, 5), "12", blocks=("test.amount",))
    )
    assert response.json()["response_action"] == "update"
    assert response.json()["view"]["title"]["text"] == "Working"
    told = await slack.fake.wait_for("chat.postMessage")  # no channel in a modal: a DM
    assert told[0].args["text"] == "changed by 12"
    assert SEEN.events == ["wrote 12 on 5"]


async def test_a_rule_about_no_field_can_close_the_form_and_be_told(toolkit: Toolkit) -> None:
    slack = toolkit.harness
    meta = _ref(slack, 5)
    blocks = ("test.amount",)
    on_field = await toolkit.sender.interaction(
        _submission(meta, "amount", blocks=blocks, callback_id="test.apart")
    )
    assert on_field.json()["errors"] == {"test.amount": "Too much."}
    apart = await toolkit.sender.interaction(
        _submission(meta, "elsewhere", blocks=blocks, callback_id="test.apart")
    )
    assert apart.text in ("", "null")  # the form closes
    told = await slack.fake.wait_for("chat.postMessage")
    said = ":warning: That thing was changed meanwhile. Nothing was changed."
    assert told[0].args["text"] == said
    await asyncio.sleep(0.2)
    assert SEEN.events == []


async def test_a_subcommand_refuses_in_its_own_words_and_warns_with_its_usage(
    toolkit: Toolkit,
) -> None:
    slack = toolkit.harness
    refused = await toolkit.sender.command("/billing", "thing 5", user="U_CLERK")
    assert refused.json()["text"] == ":no_entry: Things need the Manage Settings permission."
    assert await _settled(slack, 1) == [
        "/billing thing: Things need the Manage Settings permission."
    ]
    await slack.staff("Finance Director", "U_FD")
    unread = await toolkit.sender.command("/billing", "thing", user="U_FD")
    assert unread.json()["text"] == ":warning: Which amount?\n\nUsage: `/billing thing AMOUNT`"
    answered = await toolkit.sender.command("/billing", "thing 5", user="U_FD")
    assert answered.json()["text"] == "thing 5"
    assert len(await _refusals(slack)) == 1  # a broken rule is not a refusal
