"""`/billing fees` through the real app: define a fee in the modal, list, preview, Apply (checked
again at click time), a double click and a role without Manage Fees. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from bot.slack.fees_blocks import FeeAction, FeeBlock, FeeRef, FeeViewId
from storage import models as m
from tests.builders import add_students
from tests.slack.conftest import SlackHarness
from tests.slack.fake_api import Call
from tests.slack.money_helpers import (
    all_text,
    blocks_of,
    button_value,
    click,
    invoices,
    merge,
    refusals,
    signed,
    submission,
    typed,
    view_of,
)
from workflows.ledger import split_money

CLERK = "U_CLERK"
TECH = "U_TECH"
CHANNEL = "C_HELP"


async def _ephemeral(slack: SlackHarness, user: str, count: int) -> Call:
    calls = await slack.fake.wait_for(
        "chat.postEphemeral", lambda c: c.args.get("user") == user, count=count
    )
    return calls[count - 1]


def _said(call: Call) -> str:
    return f"{call.args.get('text', '')}\n{all_text(blocks_of(call))}"


async def _define_in_modal(slack: SlackHarness) -> m.AnnualFee:
    await slack.sender.command("/billing", "fees new", user=CLERK)
    (opened,) = await slack.fake.wait_for("views.open")
    view = view_of(opened)
    assert view["callback_id"] == FeeViewId.DEFINE
    bad = merge(
        typed(FeeBlock.CODE, "tech-fee"),
        typed(FeeBlock.NAME, "Technology fee"),
        typed(FeeBlock.YEAR, "2025-2026"),
        typed(FeeBlock.AMOUNT, "25.001"),
    )
    response = await slack.sender.interaction(submission(CLERK, view, "V_FEE", bad))
    body = response.json()
    assert body["response_action"] == "errors"
    assert "more than two decimal places" in body["errors"][FeeBlock.AMOUNT]
    good = {**bad, **typed(FeeBlock.AMOUNT, "25.00")}
    response = await slack.sender.interaction(submission(CLERK, view, "V_FEE", good))
    assert response.status_code == 200 and response.text in ("", "null")
    (told,) = await slack.fake.wait_for("chat.postMessage", lambda c: c.args["channel"] == CLERK)
    assert "Added the fee for 2025-2026" in told.args["text"]
    async with slack.runtime.stores() as store:
        (fee,) = (await store.session.execute(select(m.AnnualFee))).scalars()
        await store.commit()
    assert (fee.code, fee.school_year, fee.amount_cents) == ("tech-fee", "2025-2026", 2500)
    return fee


async def test_define_list_preview_apply_and_double_click(slack: SlackHarness) -> None:
    clerk = await slack.staff("Billing Clerk", CLERK)
    await add_students(slack.runtime.stores, 5)
    fee = await _define_in_modal(slack)

    await slack.sender.command("/billing", "fees", user=CLERK, channel=CHANNEL)
    listed = await _ephemeral(slack, CLERK, 1)  # the modal's confirmation was a DM
    assert "Fees for 2025-2026" in _said(listed) and "Technology fee" in _said(listed)
    preview_value = button_value(blocks_of(listed), FeeAction.PREVIEW)

    await slack.sender.interaction(click(CLERK, FeeAction.PREVIEW, preview_value, channel=CHANNEL))
    preview = await _ephemeral(slack, CLERK, 2)
    said = _said(preview)
    assert "Students to bill now: *5*" in said and "Total: *$125.00*" in said
    assert "Apply to 5 students" in said
    assert await invoices(slack) == []  # a preview bills nobody
    apply_value = button_value(blocks_of(preview), FeeAction.APPLY)

    # Two clicks at once (a double click, or Slack redelivering): five invoices, not ten.
    await asyncio.gather(
        slack.sender.interaction(click(CLERK, FeeAction.APPLY, apply_value, channel=CHANNEL)),
        slack.sender.interaction(click(CLERK, FeeAction.APPLY, apply_value, channel=CHANNEL)),
    )
    await _ephemeral(slack, CLERK, 4)
    answers = [_said(await _ephemeral(slack, CLERK, n)) for n in (3, 4)]
    assert any("5 invoices created, $125.00 in all, 5 emails queued" in a for a in answers)
    assert any("Nobody new to bill" in a and "5 students were already" in a for a in answers)
    made = [i for i in await invoices(slack) if i.annual_fee_id == fee.id]
    assert sorted(i.student_id for i in made) == sorted({i.student_id for i in made})
    assert len(made) == 5 and all(split_money(i).adds_up() for i in made)
    assert {i.created_by_id for i in made} == {clerk.staff_id}

    # Once everyone is billed, the preview has no Apply button.
    await slack.sender.interaction(click(CLERK, FeeAction.PREVIEW, preview_value, channel=CHANNEL))
    again = await _ephemeral(slack, CLERK, 5)
    assert "Every matching student has been billed" in _said(again)
    assert FeeAction.APPLY not in str(blocks_of(again))


async def test_apply_is_checked_again_at_click_time(slack: SlackHarness) -> None:
    await slack.staff("Billing Clerk", CLERK)
    tech = await slack.staff("Technician", TECH)
    await add_students(slack.runtime.stores, 2)
    fee = await _define_in_modal(slack)

    response = await slack.sender.command("/billing", "fees", user=TECH)
    assert "needs the Manage Fees permission" in response.json()["text"]
    # A button value lifted from someone else's message changes nothing either.
    value = signed(slack, FeeRef(fee_id=fee.id))
    await slack.sender.interaction(click(TECH, FeeAction.APPLY, value, channel=CHANNEL))
    refused = await _ephemeral(slack, TECH, 1)
    assert "does not have the Manage Fees permission" in _said(refused)
    assert await invoices(slack) == []
    assert len(await refusals(slack, tech)) == 2

    forged = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    await slack.sender.interaction(click(CLERK, FeeAction.APPLY, forged, channel=CHANNEL))
    assert "didn't come from DeviceCare" in _said(await _ephemeral(slack, CLERK, 1))
    assert await invoices(slack) == []


async def test_bad_fees_commands_get_the_usage(slack: SlackHarness) -> None:
    await slack.staff("Billing Clerk", CLERK)
    for text, message in [
        ("fees 2026-2028", "isn't a school year"),
        ("fees preview nope", "There is no fee nope"),
        ("fees what is this", "I didn't follow that"),
    ]:
        response = await slack.sender.command("/billing", text, user=CLERK)
        body = response.json() if response.text not in ("", "null") else {}
        if body:
            assert message in body["text"], text
        else:
            answer = await _ephemeral(slack, CLERK, 1)
            assert message in _said(answer), text
