"""Claim-cap overrides end to end: request, the approvals message, who may decide, first wins."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import select

from bot.slack.ids import IncidentAction, SlackPostKind
from bot.slack.invoice_blocks import InvoiceBlock
from bot.slack.override_blocks import OverrideAction, OverrideBlock, OverrideRef
from storage import models as m
from tests.builders import add_district, add_policy
from tests.slack.conftest import APPROVALS_CHANNEL, INCIDENTS_CHANNEL, SlackHarness
from tests.slack.fake_api import Call
from tests.slack.money_helpers import (
    action_ids,
    all_text,
    blocks_of,
    button_value,
    card_ts,
    click,
    ephemerals_to,
    eventually,
    incident_ref,
    open_invoice_modal,
    open_test_incident,
    refusals,
    selected,
    signed,
    submit_invoice,
    use_the_only_claim,
    view_action,
    view_of,
)
from workflows.permissions import Actor

TECH = "U_TECH"
ADMIN = "U_ADMIN"
DIRECTOR = "U_DIRECTOR"


@dataclass
class Requested:
    tech: Actor
    incident_id: int
    invoice_id: int
    request_id: int
    approval: Call  # the message posted in the approvals channel


def thread_posts(slack: SlackHarness, incident_id: int) -> list[Call]:
    return [
        c
        for c in slack.fake.calls_to("chat.postMessage")
        if c.args.get("channel") == INCIDENTS_CHANNEL
        and c.args.get("thread_ts") == card_ts(incident_id)
    ]


def approval_updates(slack: SlackHarness) -> list[Call]:
    return [
        c for c in slack.fake.calls_to("chat.update") if c.args.get("channel") == APPROVALS_CHANNEL
    ]


async def request_status(slack: SlackHarness, request_id: int) -> m.CapOverrideRequest:
    async with slack.runtime.stores() as store:
        request = await store.insurance.override_request(request_id)
        assert request is not None
        await store.commit()
        return request


async def full_price_invoice_at_the_cap(slack: SlackHarness) -> tuple[Actor, int, dict]:
    """The policy's one claim is used; a second incident is invoiced at full price in Slack."""
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
    await use_the_only_claim(slack, d.device_id, tech)
    incident_id = await open_test_incident(slack, tech, d.device_id)
    view = await open_invoice_modal(slack, TECH, incident_id)
    response = await submit_invoice(
        slack, TECH, view, "V_FULL", selected(InvoiceBlock.FEES, [str(d.fee_screen_id)])
    )
    done = response["view"]
    return tech, incident_id, done


async def request_override(
    slack: SlackHarness, at_cap: tuple[Actor, int, dict] | None = None
) -> Requested:
    """Request override from the invoice's thread message; the outbox posts the request."""
    tech, incident_id, _ = at_cap or await full_price_invoice_at_the_cap(slack)
    await slack.deliver_outbox()
    [created] = thread_posts(slack, incident_id)
    value = button_value(blocks_of(created), IncidentAction.REQUEST_OVERRIDE)
    await slack.sender.interaction(
        click(
            TECH,
            IncidentAction.REQUEST_OVERRIDE,
            value,
            message_ts="1700000000.000500",
            thread_ts=card_ts(incident_id),
        )
    )
    await slack.fake.wait_for(
        "chat.postEphemeral", lambda c: "Override requested" in c.args["text"]
    )
    async with slack.runtime.stores() as store:
        request = await store.insurance.pending_override_for(incident_id)
        assert request is not None and request.invoice_id is not None
        request_id, invoice_id = request.id, request.invoice_id
        await store.commit()
    await slack.deliver_outbox()
    [approval] = [
        c
        for c in slack.fake.calls_to("chat.postMessage")
        if c.args.get("channel") == APPROVALS_CHANNEL
    ]
    return Requested(tech, incident_id, invoice_id, request_id, approval)


async def decide(slack: SlackHarness, user: str, action: str, requested: Requested) -> None:
    value = button_value(blocks_of(requested.approval), action)
    response = await slack.sender.interaction(
        click(user, action, value, channel=APPROVALS_CHANNEL, message_ts="1700000000.000900")
    )
    assert response.status_code == 200


async def test_request_override_posts_the_facts_to_the_approvals_channel(
    slack: SlackHarness,
) -> None:
    at_cap = await full_price_invoice_at_the_cap(slack)
    tech, incident_id, done = at_cap
    text = all_text(done)
    assert "Invoice INV-000002 created: $125.00 owed (insurance $0.00)" in text
    assert "Claim cap reached" in text
    assert IncidentAction.REQUEST_OVERRIDE in action_ids(done)  # on the confirmation too

    requested = await request_override(slack, at_cap)

    approval = requested.approval
    blocks = blocks_of(approval)
    facts = all_text(blocks)
    assert "Ana Rivera" in facts
    assert "District Plan (2025-2026)" in facts
    assert "1 of 1 this term" in facts
    assert "$125.00 owed (INV-000002)" in facts
    assert "$25.00 owed (insurance \u2212$100.00)" in facts
    assert "Requested by Technician Person on Mar 2, 2026 9:00 AM CST" in facts
    assert action_ids(blocks) == [OverrideAction.APPROVE, OverrideAction.DENY]
    async with slack.runtime.stores() as store:
        post = await store.slack_posts.get(SlackPostKind.OVERRIDE_REQUEST, requested.request_id)
        assert post is not None
        assert (post.channel, post.ts) == (APPROVALS_CHANNEL, approval.args.get("ts") or post.ts)
        await store.commit()
    thread = [c.args["text"] for c in thread_posts(slack, incident_id)]
    assert any("asked for a claim-cap override" in t for t in thread)

    # Asking again finds the waiting request instead of making another.
    value = button_value(
        blocks_of(thread_posts(slack, incident_id)[0]), IncidentAction.REQUEST_OVERRIDE
    )
    await slack.sender.interaction(click(TECH, IncidentAction.REQUEST_OVERRIDE, value))
    await slack.fake.wait_for("chat.postEphemeral", lambda c: "already waiting" in c.args["text"])
    async with slack.runtime.stores() as store:
        count = await store.session.execute(select(m.CapOverrideRequest.id))
        assert len(count.all()) == 1
        await store.commit()
    assert tech.staff_id is not None


async def test_a_technicians_approval_is_refused_logged_and_changes_nothing(
    slack: SlackHarness,
) -> None:
    requested = await request_override(slack)

    await decide(slack, TECH, OverrideAction.APPROVE, requested)

    [refusal] = await slack.fake.wait_for(
        "chat.postEphemeral", lambda c: "Override Insurance Claim Cap" in c.args["text"]
    )
    assert refusal.args["user"] == TECH and refusal.args["channel"] == APPROVALS_CHANNEL
    assert (await request_status(slack, requested.request_id)).status == "pending"
    [entry] = await refusals(slack, requested.tech)
    assert "approve a claim-cap override" in (entry.comment or "")
    async with slack.runtime.stores() as store:
        invoice = await store.invoices.get(requested.invoice_id)
        assert invoice is not None
        assert (invoice.total_cents, invoice.override_applied) == (12500, False)
        await store.commit()
    await slack.deliver_outbox()
    assert approval_updates(slack) == []  # the approval message is unchanged


async def test_a_forged_button_value_is_refused(slack: SlackHarness) -> None:
    requested = await request_override(slack)
    admin = await slack.staff("Admin", ADMIN)
    forged = signed(slack, OverrideRef(request_id=requested.request_id))[:-3] + "abc"
    await slack.sender.interaction(
        click(ADMIN, OverrideAction.APPROVE, forged, channel=APPROVALS_CHANNEL)
    )
    await slack.fake.wait_for("chat.postEphemeral", lambda c: "didn't come from" in c.args["text"])
    assert (await request_status(slack, requested.request_id)).status == "pending"
    assert len(await refusals(slack, admin)) == 1


async def test_the_admin_approves_and_everyone_hears_about_it(slack: SlackHarness) -> None:
    requested = await request_override(slack)
    admin = await slack.staff("Admin", ADMIN)

    await decide(slack, ADMIN, OverrideAction.APPROVE, requested)

    async def approved() -> bool:
        return (await request_status(slack, requested.request_id)).status == "approved"

    await eventually(approved, what="the approval")
    request = await request_status(slack, requested.request_id)
    assert request.decided_by_id == admin.staff_id
    async with slack.runtime.stores() as store:
        invoice = await store.invoices.get(requested.invoice_id)
        assert invoice is not None
        assert (invoice.total_cents, invoice.insurance_cents) == (2500, 10000)
        assert invoice.override_applied and invoice.override_approved_by_id == admin.staff_id
        assert (invoice.insurance_snapshot or {})["override_approved_by"] == admin.name
        kinds = [
            row.kind
            for row in (await store.session.execute(select(m.OutboxMessage))).scalars()
            if row.kind.startswith("slack.")
        ]
        assert kinds.count("slack.override_approved") == 1
        assert kinds.count("slack.incident_card") >= 3  # created, requested, decided
        await store.commit()

    await slack.deliver_outbox()

    [update] = approval_updates(slack)
    assert update.args["channel"] == APPROVALS_CHANNEL
    assert update.args["ts"] == requested.approval.args.get("ts", update.args["ts"])
    blocks = blocks_of(update)
    assert action_ids(blocks) == []  # no more buttons
    decision = next(b for b in blocks if b.get("block_id") == OverrideBlock.DECISION)
    assert "*Approved* by Admin Person on Mar 2, 2026 9:00 AM CST" in decision["text"]["text"]
    assert "Now, with the override*\n$25.00 owed" in all_text(blocks)
    told = [c.args["text"] for c in thread_posts(slack, requested.incident_id)]
    assert any(
        "<@U_TECH> your claim-cap override was approved by Admin Person" in t
        and "Invoice INV-000002 now: $25.00 owed (insurance $100.00)" in t
        for t in told
    )

    # A second click, either way, says who decided first and changes nothing.
    await decide(slack, ADMIN, OverrideAction.DENY, requested)
    await decide(slack, ADMIN, OverrideAction.APPROVE, requested)
    await slack.fake.wait_for(
        "chat.postEphemeral",
        lambda c: "already decided by Admin Person: approved" in c.args["text"],
        count=2,
    )
    assert (await request_status(slack, requested.request_id)).status == "approved"
    async with slack.runtime.stores() as store:
        log = await store.activity.for_entity("cap_override", requested.request_id)
        assert [e.action for e in log] == ["requested", "approved"]
        await store.commit()


async def test_the_admin_denies_and_the_invoice_stays_at_full_price(slack: SlackHarness) -> None:
    requested = await request_override(slack)
    await slack.staff("Finance Director", DIRECTOR)
    await decide(slack, DIRECTOR, OverrideAction.DENY, requested)

    async def denied() -> bool:
        return (await request_status(slack, requested.request_id)).status == "denied"

    await eventually(denied, what="the denial")
    await slack.deliver_outbox()
    [update] = approval_updates(slack)
    assert "*Denied* by Finance Director Person" in all_text(blocks_of(update))
    told = [c.args["text"] for c in thread_posts(slack, requested.incident_id)]
    assert any(
        "denied by Finance Director Person" in t and "stays at full price ($125.00)" in t
        for t in told
    )
    async with slack.runtime.stores() as store:
        invoice = await store.invoices.get(requested.invoice_id)
        assert invoice is not None and invoice.total_cents == 12500
        await store.commit()


async def test_concurrent_approve_and_deny_make_exactly_one_decision(slack: SlackHarness) -> None:
    requested = await request_override(slack)
    await slack.staff("Admin", ADMIN)
    await slack.staff("Finance Director", DIRECTOR)

    await asyncio.gather(
        decide(slack, ADMIN, OverrideAction.APPROVE, requested),
        decide(slack, DIRECTOR, OverrideAction.DENY, requested),
    )

    [loser] = await slack.fake.wait_for(
        "chat.postEphemeral", lambda c: "already decided by" in c.args["text"]
    )
    request = await request_status(slack, requested.request_id)
    assert request.status in ("approved", "denied")
    winner, loser_user = (
        ("Admin Person", DIRECTOR)
        if request.status == "approved"
        else ("Finance Director Person", ADMIN)
    )
    assert loser.args["user"] == loser_user
    assert f"already decided by {winner}: {request.status}" in loser.args["text"]
    async with slack.runtime.stores() as store:
        log = await store.activity.for_entity("cap_override", requested.request_id)
        assert [e.action for e in log] == ["requested", request.status]
        decided = (
            await store.session.execute(
                select(m.OutboxMessage.kind).where(m.OutboxMessage.kind.like("slack.override_%"))
            )
        ).scalars()
        assert sorted(decided) == sorted(
            ["slack.override_requested", f"slack.override_{request.status}"]
        )
        await store.commit()
    await slack.deliver_outbox()
    assert len(approval_updates(slack)) == 1
    assert ephemerals_to(slack, loser_user) == [loser.args["text"]]


async def test_an_override_approved_before_invoicing_applies_to_the_next_invoice(
    slack: SlackHarness,
) -> None:
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
    admin = await slack.staff("Admin", ADMIN)
    await use_the_only_claim(slack, d.device_id, tech)
    incident_id = await open_test_incident(slack, tech, d.device_id)

    # From the incident card, before any invoice exists.
    await slack.sender.interaction(
        click(TECH, IncidentAction.REQUEST_OVERRIDE, incident_ref(slack, incident_id))
    )
    await slack.fake.wait_for(
        "chat.postEphemeral", lambda c: "Override requested" in c.args["text"]
    )
    await slack.deliver_outbox()
    [approval] = [
        c
        for c in slack.fake.calls_to("chat.postMessage")
        if c.args.get("channel") == APPROVALS_CHANNEL
    ]
    assert "No invoice yet" in all_text(blocks_of(approval))
    async with slack.runtime.stores() as store:
        pending = await store.insurance.pending_override_for(incident_id)
        assert pending is not None
        await store.commit()
    requested = Requested(tech, incident_id, 0, pending.id, approval)
    await decide(slack, ADMIN, OverrideAction.APPROVE, requested)

    async def approved() -> bool:
        return (await request_status(slack, pending.id)).status == "approved"

    await eventually(approved, what="the approval")
    await slack.deliver_outbox()
    told = [c.args["text"] for c in thread_posts(slack, incident_id)]
    assert any("It applies to this incident's next invoice." in t for t in told)

    view = await open_invoice_modal(slack, TECH, incident_id)
    values = selected(InvoiceBlock.FEES, [str(d.fee_screen_id)])
    await slack.sender.interaction(view_action(TECH, view, "V_NEXT", values, InvoiceBlock.FEES))
    preview = all_text(view_of((await slack.fake.wait_for("views.update"))[0]))
    assert "*$25.00 owed*" in preview
    assert "Claim-cap override applied (approved by Admin Person)" in preview

    response = await submit_invoice(slack, TECH, view, "V_NEXT", values)
    assert response["response_action"] == "update"
    async with slack.runtime.stores() as store:
        [invoice] = await store.invoices.for_incident(incident_id)
        assert (invoice.total_cents, invoice.override_applied) == (2500, True)
        assert invoice.override_approved_by_id == admin.staff_id
        used = await store.insurance.override_request(pending.id)
        assert used is not None and used.invoice_id == invoice.id
        await store.commit()
