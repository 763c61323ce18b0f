"""What the family is told around a claim-cap override, end to end: signed Slack requests against
the Web API stand-in, the outbox worker, and the emails as a local SMTP server (aiosmtpd)
receives them.

- An invoice made while an override is pending holds its first email until the decision; the
  family then gets one email with the amount that stands.
- An invoice the family already heard about gets one "your invoice was updated" email when an
  approved override lowers it.
"""

from __future__ import annotations

from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.slack.ids import IncidentAction
from bot.slack.invoice_blocks import InvoiceBlock
from bot.slack.override_blocks import OverrideAction
from storage import models as m
from tests.builders import add_district, add_policy
from tests.mail.smtp_server import SmtpServer
from tests.mail.test_sender import drain, mail_settings, make_worker, smtp  # noqa: F401
from tests.slack.conftest import APPROVALS_CHANNEL, INCIDENTS_CHANNEL, SlackHarness
from tests.slack.money_helpers import (
    all_text,
    blocks_of,
    click,
    eventually,
    incident_ref,
    open_invoice_modal,
    open_test_incident,
    selected,
    submit_invoice,
    use_the_only_claim,
)
from tests.slack.test_billing_reports import all_text as answer_text
from tests.slack.test_billing_reports import answer
from tests.slack.test_overrides import (
    ADMIN,
    TECH,
    Requested,
    decide,
    full_price_invoice_at_the_cap,
    request_override,
    request_status,
)


def subjects(smtp: SmtpServer) -> list[str]:  # noqa: F811
    return [str(r.message["Subject"]) for r in smtp.messages]


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return " ".join(body.get_content().split())


async def send_mail(engine: AsyncEngine, slack: SlackHarness, smtp: SmtpServer) -> int:  # noqa: F811
    """What `devicecare worker` does for email: send every notice that is due."""
    return await drain(make_worker(engine, slack.clock, mail_settings(smtp.port)))


async def notices_of(slack: SlackHarness, number: str) -> list[m.Notice]:
    async with slack.runtime.stores() as store:
        invoice = await store.invoices.by_number(number)
        assert invoice is not None
        stmt = select(m.Notice).where(m.Notice.invoice_id == invoice.id).order_by(m.Notice.id)
        result = list((await store.session.execute(stmt)).scalars())
        await store.commit()
        return result


async def invoice_while_an_override_waits(slack: SlackHarness) -> Requested:
    """The cap is used; Request override from the incident card; then Create invoice."""
    d = await add_district(slack.runtime.stores)
    await add_policy(
        slack.runtime.stores,
        d.student_id,
        name="District Plan",
        copay_cents=2500,
        max_claims=1,
        allow_override=True,
    )
    tech = await slack.staff("Technician", TECH)
    await slack.staff("Admin", ADMIN)
    await use_the_only_claim(slack, d.device_id, tech)
    incident_id = await open_test_incident(slack, tech, d.device_id)
    await slack.sender.interaction(
        click(TECH, IncidentAction.REQUEST_OVERRIDE, incident_ref(slack, incident_id))
    )
    await slack.fake.wait_for(
        "chat.postEphemeral", lambda c: "Override requested" in c.args["text"]
    )
    await slack.deliver_outbox()  # the approvers are asked: "No invoice yet"
    view = await open_invoice_modal(slack, TECH, incident_id)
    assert "An override request for this incident is waiting" in all_text(view)
    response = await submit_invoice(
        slack, TECH, view, "V_HELD", selected(InvoiceBlock.FEES, [str(d.fee_screen_id)])
    )
    done = all_text(response["view"])
    assert "INV-000002 created: $125.00 owed" in done
    assert "held until the claim-cap override is decided" in done
    await slack.deliver_outbox()
    [approval] = [
        c
        for c in slack.fake.calls_to("chat.postMessage")
        if c.args.get("channel") == APPROVALS_CHANNEL
    ]
    assert "No invoice yet" in all_text(blocks_of(approval))
    # Redrawn in place: the request now names the invoice it will price.
    [redrawn] = [
        c for c in slack.fake.calls_to("chat.update") if c.args.get("channel") == APPROVALS_CHANNEL
    ]
    assert "$125.00 owed (INV-000002)" in all_text(blocks_of(redrawn))
    async with slack.runtime.stores() as store:
        request = await store.insurance.pending_override_for(incident_id)
        invoice = await store.invoices.by_number("INV-000002")
        assert request is not None and invoice is not None
        # The request is about the invoice made while it waited: its decision re-prices it.
        assert request.invoice_id == invoice.id
        await store.commit()
    return Requested(tech, incident_id, invoice.id, request.id, approval)


async def test_an_approved_override_sends_one_invoice_email_with_the_lowered_amount(
    slack: SlackHarness,
    engine: AsyncEngine,
    smtp: SmtpServer,  # noqa: F811
) -> None:
    requested = await invoice_while_an_override_waits(slack)
    await send_mail(engine, slack, smtp)
    # Only the first incident's invoice went out; INV-000002 waits for the decision.
    assert [s for s in subjects(smtp) if "INV-000002" in s] == []
    assert [n.status for n in await notices_of(slack, "INV-000002")] == ["held"]

    await decide(slack, ADMIN, OverrideAction.APPROVE, requested)

    async def approved() -> bool:
        return (await request_status(slack, requested.request_id)).status == "approved"

    await eventually(approved, what="the approval")
    # Queued with the decision, in its transaction.
    assert [n.status for n in await notices_of(slack, "INV-000002")] == ["queued"]
    await send_mail(engine, slack, smtp)
    [email] = [r.message for r in smtp.messages if "INV-000002" in str(r.message["Subject"])]
    assert "$25.00" in str(email["Subject"])
    body = text_of(email)
    assert "Please pay $25.00" in body
    assert "Claim-cap override applied" in body
    assert "$125.00" in body  # the original subtotal, in the audit lines
    # One email, and no "updated" one: the family never saw $125.00.
    await decide(slack, ADMIN, OverrideAction.APPROVE, requested)  # a redelivered click
    await send_mail(engine, slack, smtp)
    assert len([s for s in subjects(smtp) if "INV-000002" in s]) == 1


async def test_a_denied_override_sends_the_held_email_at_full_price(
    slack: SlackHarness,
    engine: AsyncEngine,
    smtp: SmtpServer,  # noqa: F811
) -> None:
    requested = await invoice_while_an_override_waits(slack)
    await decide(slack, ADMIN, OverrideAction.DENY, requested)

    async def denied() -> bool:
        return (await request_status(slack, requested.request_id)).status == "denied"

    await eventually(denied, what="the denial")
    await send_mail(engine, slack, smtp)
    [email] = [r.message for r in smtp.messages if "INV-000002" in str(r.message["Subject"])]
    assert "$125.00" in str(email["Subject"])
    assert "Please pay $125.00" in text_of(email)
    text = answer_text(await answer(slack, "invoice INV-000002", ADMIN))
    assert "Invoice created for $125.00 (full price, override pending)" in text
    assert "Override denied by Admin Person: stays $125.00" in text


async def test_an_override_after_the_email_sends_one_update_and_reminders_say_the_new_amount(
    slack: SlackHarness,
    engine: AsyncEngine,
    smtp: SmtpServer,  # noqa: F811
) -> None:
    at_cap = await full_price_invoice_at_the_cap(slack)
    await send_mail(engine, slack, smtp)  # the family is told $125.00
    [first] = [s for s in subjects(smtp) if "INV-000002" in s]
    assert "$125.00" in first
    requested = await request_override(slack, at_cap)
    await slack.staff("Admin", ADMIN)

    await decide(slack, ADMIN, OverrideAction.APPROVE, requested)

    async def approved() -> bool:
        return (await request_status(slack, requested.request_id)).status == "approved"

    await eventually(approved, what="the approval")
    await decide(slack, ADMIN, OverrideAction.APPROVE, requested)  # a redelivered click
    await send_mail(engine, slack, smtp)
    updates = [r.message for r in smtp.messages if "was updated" in str(r.message["Subject"])]
    assert len(updates) == 1
    [update] = updates
    assert str(update["Subject"]) == "Invoice INV-000002 was updated: $125.00 is now $25.00"
    body = text_of(update)
    assert "Amount before $125.00" in body and "Amount now $25.00" in body
    assert "Still owed: $25.00" in body

    # A reminder after the change states the amount as it is now.
    async with slack.runtime.stores() as store:
        assert await store.outbox.queue_notice(
            "due_reminder", requested.invoice_id, "test-reminder"
        )
        await store.commit()
    await send_mail(engine, slack, smtp)
    reminder = smtp.messages[-1].message
    assert "INV-000002" in str(reminder["Subject"])
    assert "$25.00" in str(reminder["Subject"]) and "$125.00" not in str(reminder["Subject"])


async def test_an_override_asked_for_before_the_email_went_out_holds_it(
    slack: SlackHarness,
    engine: AsyncEngine,
    smtp: SmtpServer,  # noqa: F811
) -> None:
    at_cap = await full_price_invoice_at_the_cap(slack)
    requested = await request_override(slack, at_cap)  # the worker hasn't sent INV-000002 yet
    assert [n.status for n in await notices_of(slack, "INV-000002")] == ["held"]
    await send_mail(engine, slack, smtp)
    assert [s for s in subjects(smtp) if "INV-000002" in s] == []

    await slack.staff("Admin", ADMIN)
    await decide(slack, ADMIN, OverrideAction.APPROVE, requested)

    async def approved() -> bool:
        return (await request_status(slack, requested.request_id)).status == "approved"

    await eventually(approved, what="the approval")
    await send_mail(engine, slack, smtp)
    [subject] = [s for s in subjects(smtp) if "INV-000002" in s]
    assert "$25.00" in subject and "updated" not in subject


# --- what staff see: the audit lines and a truthful timeline --------------------------------


async def test_billing_invoice_shows_the_audit_and_the_timeline_says_both_amounts(
    slack: SlackHarness,
) -> None:
    requested = await invoice_while_an_override_waits(slack)
    before = await answer(slack, "invoice INV-000002", ADMIN)
    text = answer_text(before)
    assert "Invoice created for $125.00 (full price, override pending)" in text
    assert "Claim-cap override requested, awaiting a decision" in text
    assert "Invoice to maria@example.org: held until the pending decision" in text
    assert "*Remaining balance: $125.00*" in text

    await decide(slack, ADMIN, OverrideAction.APPROVE, requested)

    async def approved() -> bool:
        return (await request_status(slack, requested.request_id)).status == "approved"

    await eventually(approved, what="the approval")
    text = answer_text(await answer(slack, "invoice INV-000002", ADMIN))
    for expected in (
        "Original subtotal: $125.00",
        "Insurance applied: District Plan (2025-2026): \u2212$100.00",
        "Co-pay (the least you pay per claim): $25.00",
        "Claim 2 this term, past the limit of 1",
        "Subtotal owed: $25.00",
        "*Remaining balance: $25.00*",
        ":large_orange_circle: *Claim-cap override applied (approved by Admin Person on "
        "Mar 2, 2026)*",
        # The timeline: what it was created for, then the change, by whom.
        "Invoice created for $125.00 (full price, override pending)",
        "Override approved by Admin Person: $125.00 \u2192 $25.00",
    ):
        assert expected in text, (expected, text)
    assert "Invoice created for $25.00" not in text

    # The incident's thread message about the invoice, and the incident card, show them too.
    await slack.deliver_outbox()
    thread = [
        all_text(blocks_of(c))
        for c in slack.fake.calls_to("chat.postMessage")
        if "INV-000002 created" in (c.args.get("text") or "")
    ]
    assert thread and "Original subtotal: $125.00" in thread[-1]
    cards = [
        all_text(blocks_of(c))
        for c in slack.fake.calls_to("chat.postMessage") + slack.fake.calls_to("chat.update")
        if c.args.get("channel") == INCIDENTS_CHANNEL and not c.args.get("thread_ts")
    ]
    assert any(
        "INV-000002" in card and "Claim-cap override applied (approved by Admin Person" in card
        for card in cards
    )
