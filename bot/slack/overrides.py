"""Claim-cap overrides in Slack: Request override on the incident card, and the override as an
approval kind (its facts, its post, the requester told in the incident's thread)."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.slack.approvals import ApprovalFeature, ApprovalKind
from bot.slack.blocks import esc, fmt_when
from bot.slack.cards import queue_incident_card, queue_thread_message
from bot.slack.ids import IncidentAction, IncidentRef, SlackPostKind
from bot.slack.listeners import Click, on_click, wire
from bot.slack.override_blocks import (
    OverrideAction,
    OverrideFacts,
    OverrideRef,
    already_decided_text,
    build_override_request_message,
    decided_thread_text,
    requested_thread_text,
)
from storage import models as m
from storage.uow import SqlUnitOfWork
from workflows.approvals import Decision
from workflows.i18n import N_, _
from workflows.insurance import Split, decide_claim, invoice_claim_key
from workflows.invoices import InvoiceStatus
from workflows.overrides import OVERRIDE_RULES, request_cap_override


async def _request_invoice(store: SqlUnitOfWork, request: m.CapOverrideRequest) -> m.Invoice | None:
    """The invoice the override is about: the one on the request, or the incident's latest
    full-price invoice."""
    if request.invoice_id is not None:
        return await store.invoices.get(request.invoice_id)
    for invoice in reversed(await store.invoices.for_incident(request.incident_id)):
        if invoice.status != InvoiceStatus.CANCELLED and invoice.cap_reached:
            return invoice
    return None


async def load_override_facts(store: SqlUnitOfWork, request_id: int) -> OverrideFacts | None:
    request = await store.insurance.override_request(request_id)
    if request is None:
        return None
    incident = await store.incidents.get(request.incident_id)
    if incident is None:
        return None
    student = (
        None if incident.student_id is None else await store.people.student(incident.student_id)
    )
    coverage = (
        None
        if student is None
        else await store.insurance.coverage_on(
            student.id, incident.occurred_on, device_id=incident.device_id
        )
    )
    invoice = await _request_invoice(store, request)
    snapshot = (invoice.insurance_snapshot if invoice is not None else None) or {}
    policy_label: str | None = None
    used: int | None = None
    max_claims: int | None = None
    if coverage is not None:
        policy_label, max_claims = coverage.label, coverage.max_claims
        used = await store.insurance.count_claims(coverage.claim_key)
        if (
            invoice is not None
            and invoice.status != InvoiceStatus.CANCELLED
            and invoice_claim_key(invoice) == coverage.claim_key
        ):
            used -= 1  # once approved, this invoice is itself a claim; show the others
    elif snapshot.get("policy_name"):
        policy_label = f"{snapshot['policy_name']} ({snapshot.get('term_label')})"
        max_claims = snapshot.get("max_claims")
    split: Split | None = None
    if invoice is not None and invoice.override_applied:
        split = Split(policy_cents=invoice.insurance_cents, client_cents=invoice.total_cents)
    elif invoice is not None and coverage is not None and coverage.allow_override:
        claims = used if used is not None else 0
        split = decide_claim(invoice.subtotal_cents, coverage, claims, override=True).split
    requester = request.requested_by_id
    decider = request.decided_by_id
    return OverrideFacts(
        request_id=request.id,
        incident_id=incident.id,
        occurred_on=incident.occurred_on,
        flags=tuple(incident.flag_names),
        status=request.status,
        student_name=_("No student") if student is None else student.full_name,
        policy_label=policy_label,
        claims_used=used,
        max_claims=max_claims,
        invoice_number=None if invoice is None else invoice.number,
        full_price_cents=None if invoice is None else invoice.subtotal_cents,
        with_override=split,
        requested_by=(
            _("someone")
            if requester is None
            else await store.people.staff_name(requester) or _("someone")
        ),
        requester_slack_id=None
        if requester is None
        else await store.people.staff_slack_id(requester),
        requested_at=request.requested_at,
        reason=request.reason,
        decided_by=None if decider is None else await store.people.staff_name(decider),
        decided_at=request.decided_at,
    )


async def _queue_card(store: SqlUnitOfWork, decision: Decision[Any]) -> None:
    """The incident card shows the override's state."""
    await queue_incident_card(store, decision.request.incident_id)


async def _tell_in_thread(runtime: Runtime, client: AsyncWebClient, facts: OverrideFacts) -> None:
    """The requester hears in the incident's thread."""
    async with runtime.stores() as store:
        await queue_thread_message(
            store,
            facts.incident_id,
            decided_thread_text(facts),
            dedupe_key=f"override-decided-thread:{facts.request_id}",
        )
        await store.commit()


OVERRIDE_APPROVAL: ApprovalKind[OverrideFacts, OverrideRef] = ApprovalKind(
    noun=N_("override"),
    what="claim-cap override",
    rules=OVERRIDE_RULES,
    approve_action=OverrideAction.APPROVE,
    deny_action=OverrideAction.DENY,
    ref=OverrideRef,
    ref_id=lambda ref: ref.request_id,
    post_kind=SlackPostKind.OVERRIDE_REQUEST,
    load_facts=load_override_facts,
    message=build_override_request_message,
    already_decided=already_decided_text,
    tell_requester=_tell_in_thread,
    after_decision=_queue_card,
)


@on_click(IncidentAction.REQUEST_OVERRIDE, what="request a claim-cap override", ref=IncidentRef)
async def handle_override_request(click: Click[IncidentRef]) -> None:
    """Request override on the incident card; the decision is the approval component's."""
    actor, incident_id = click.actor, click.ref.incident_id
    async with click.runtime.stores() as store:
        waiting = await store.insurance.pending_override_for(incident_id)
        request = await request_cap_override(click.context(store), actor, incident_id)
        if waiting is None:
            await queue_incident_card(store, incident_id)
            await queue_thread_message(
                store,
                incident_id,
                requested_thread_text(actor.name),
                dedupe_key=f"override-requested-thread:{request.id}",
            )
            text = _(
                ":hourglass_flowing_sand: Override requested. An approver will decide "
                "in the approvals channel; you'll hear back in the incident's thread."
            )
        else:
            asked_by = (
                await store.people.staff_name(waiting.requested_by_id)
                if waiting.requested_by_id is not None
                else None
            )
            who = esc(asked_by or _("someone"))
            text = _(
                ":hourglass_flowing_sand: An override request for this incident is "
                "already waiting (asked by {name} on {when}).",
                name=who,
                when=fmt_when(waiting.requested_at, click.tz),
            )
        await store.commit()
    await click.tell(text)


def register(app: AsyncApp, runtime: Runtime) -> None:
    wire(app, runtime, handle_override_request)
    ApprovalFeature(OVERRIDE_APPROVAL, runtime).register(app)


def outbox_handlers(runtime: Runtime, client: AsyncWebClient) -> dict[str, Any]:
    return ApprovalFeature(OVERRIDE_APPROVAL, runtime).outbox_handlers(client)
