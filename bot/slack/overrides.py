"""Claim-cap overrides in Slack: Request override, the approvals-channel message with Approve
and Deny, the decision (checked on the server at click time) and telling the requester."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.signing import signing_keys
from bot.slack.cards import queue_incident_card, queue_thread_message
from bot.slack.errors import reported, tell_user
from bot.slack.ids import IncidentAction, IncidentRef, SlackPostKind
from bot.slack.invoice_blocks import esc, fmt_when
from bot.slack.metadata import unpack
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
from storage.store import SqlStore
from workflows.errors import ConflictError
from workflows.insurance import Split, decide_claim
from workflows.invoices import InvoiceStatus
from workflows.overrides import (
    OverrideDecision,
    OverrideStatus,
    decide_cap_override,
    request_cap_override,
)
from workflows.permissions import Actor
from workflows.ports import Context

log = logging.getLogger("devicecare.slack")

OVERRIDE_REQUESTED = "slack.override_requested"
OVERRIDE_APPROVED = f"slack.override_{OverrideStatus.APPROVED.value}"
OVERRIDE_DENIED = f"slack.override_{OverrideStatus.DENIED.value}"


class ApprovalsChannelMissing(RuntimeError):
    """SLACK_APPROVALS_CHANNEL isn't set; the request waits in the outbox until it is."""


async def _request_invoice(store: SqlStore, request: m.CapOverrideRequest) -> m.Invoice | None:
    """The invoice the override is about: the one on the request, or the incident's latest
    full-price invoice."""
    if request.invoice_id is not None:
        return await store.get_invoice(request.invoice_id)
    for invoice in reversed(await store.invoices_for_incident(request.incident_id)):
        if invoice.status != InvoiceStatus.CANCELLED and invoice.cap_reached:
            return invoice
    return None


async def load_override_facts(store: SqlStore, request_id: int) -> OverrideFacts | None:
    request = await store.get_override_request(request_id)
    if request is None:
        return None
    incident = await store.get_incident(request.incident_id)
    if incident is None:
        return None
    student = None if incident.student_id is None else await store.get_student(incident.student_id)
    coverage = (
        None if student is None else await store.coverage_on(student.id, incident.occurred_on)
    )
    invoice = await _request_invoice(store, request)
    snapshot = (invoice.insurance_snapshot if invoice is not None else None) or {}
    policy_label: str | None = None
    used: int | None = None
    max_claims: int | None = None
    if coverage is not None:
        policy_label, max_claims = coverage.label, coverage.max_claims
        used = await store.count_claims(coverage.enrollment_id)
        if (
            invoice is not None
            and invoice.status != InvoiceStatus.CANCELLED
            and invoice.claim_enrollment_id == coverage.enrollment_id
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
        student_name="No student" if student is None else student.full_name,
        policy_label=policy_label,
        claims_used=used,
        max_claims=max_claims,
        invoice_number=None if invoice is None else invoice.number,
        full_price_cents=None if invoice is None else invoice.subtotal_cents,
        with_override=split,
        requested_by=(
            "someone" if requester is None else await store.staff_name(requester) or "someone"
        ),
        requester_slack_id=None if requester is None else await store.staff_slack_id(requester),
        requested_at=request.requested_at,
        reason=request.reason,
        decided_by=None if decider is None else await store.staff_name(decider),
        decided_at=request.decided_at,
    )


def register(app: AsyncApp, runtime: Runtime) -> None:
    secret = signing_keys(runtime.settings)
    tz = runtime.settings.tz

    @app.action(IncidentAction.REQUEST_OVERRIDE)
    async def handle_override_request(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        actor: Actor = context["actor"]
        async with reported(runtime, client, body, "request a claim-cap override", actor):
            ref = unpack(IncidentRef, action.get("value"), secret)
            async with runtime.stores() as store:
                ctx = Context(store, runtime.clock, tz)
                waiting = await store.pending_override_for(ref.incident_id)
                request = await request_cap_override(ctx, actor, ref.incident_id)
                if waiting is None:
                    await queue_incident_card(store, ref.incident_id)
                    await queue_thread_message(
                        store,
                        ref.incident_id,
                        requested_thread_text(actor.name),
                        dedupe_key=f"override-requested-thread:{request.id}",
                    )
                    text = (
                        ":hourglass_flowing_sand: Override requested. An approver will decide "
                        "in the approvals channel; you'll hear back in the incident's thread."
                    )
                else:
                    asked_by = (
                        await store.staff_name(waiting.requested_by_id)
                        if waiting.requested_by_id is not None
                        else None
                    )
                    text = (
                        ":hourglass_flowing_sand: An override request for this incident is "
                        f"already waiting (asked by {esc(asked_by or 'someone')} on "
                        f"{fmt_when(waiting.requested_at, tz)})."
                    )
            await tell_user(client, body, text)

    async def decide(
        approve: bool,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        actor: Actor,
    ) -> None:
        what = "approve a claim-cap override" if approve else "deny a claim-cap override"
        async with reported(runtime, client, body, what, actor):
            ref = unpack(OverrideRef, action.get("value"), secret)
            result: OverrideDecision | None = None
            conflict: ConflictError | None = None
            try:
                async with runtime.stores() as store:
                    # Permission is checked here, at click time, by the workflow.
                    result = await decide_cap_override(
                        Context(store, runtime.clock, tz), actor, ref.request_id, approve=approve
                    )
                    if result.changed:
                        await queue_incident_card(store, result.request.incident_id)
            except ConflictError as exc:
                conflict = exc  # usually: the other decision won; say who made it, below
            if result is not None and result.changed:
                return  # the message updates in place when the outbox delivers the decision
            async with runtime.stores() as store:
                facts = await load_override_facts(store, ref.request_id)
            if facts is None or facts.status == OverrideStatus.PENDING:
                raise conflict or ConflictError("That override request can't be decided now.")
            await tell_user(client, body, already_decided_text(facts, tz))

    @app.action(OverrideAction.APPROVE)
    async def handle_override_approve(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        await decide(True, body, action, client, context["actor"])

    @app.action(OverrideAction.DENY)
    async def handle_override_deny(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        await decide(False, body, action, client, context["actor"])


def outbox_handlers(runtime: Runtime, client: AsyncWebClient) -> dict[str, Any]:
    secret = signing_keys(runtime.settings)
    tz = runtime.settings.tz

    async def deliver_override_requested(payload: dict[str, Any]) -> None:
        """Post the request, with its facts and Approve / Deny, to the approvals channel."""
        request_id = int(payload["request_id"])
        async with runtime.stores() as store:
            facts = await load_override_facts(store, request_id)
            posted = await store.slack_post(SlackPostKind.OVERRIDE_REQUEST, request_id)
        if facts is None:
            return  # the incident was deleted
        text, blocks = build_override_request_message(facts, secret=secret, tz=tz)
        if posted is not None:  # a retry after the post went out: refresh it, don't repeat it
            await client.chat_update(channel=posted.channel, ts=posted.ts, text=text, blocks=blocks)
            return
        channel = runtime.settings.slack_approvals_channel
        if not channel:
            raise ApprovalsChannelMissing("set SLACK_APPROVALS_CHANNEL to post override requests")
        response = await client.chat_postMessage(channel=channel, text=text, blocks=blocks)
        async with runtime.stores() as store:
            await store.save_slack_post(
                SlackPostKind.OVERRIDE_REQUEST,
                request_id,
                str(response.get("channel") or channel),
                str(response["ts"]),
            )

    async def deliver_override_decided(payload: dict[str, Any]) -> None:
        """The approval message shows the decision in place; the requester hears in the thread."""
        request_id = int(payload["request_id"])
        async with runtime.stores() as store:
            facts = await load_override_facts(store, request_id)
            posted = await store.slack_post(SlackPostKind.OVERRIDE_REQUEST, request_id)
        if facts is None:
            return
        if posted is not None:
            text, blocks = build_override_request_message(facts, secret=secret, tz=tz)
            await client.chat_update(channel=posted.channel, ts=posted.ts, text=text, blocks=blocks)
        else:
            log.info("override request %s was decided before its message was posted", request_id)
        async with runtime.stores() as store:
            await queue_thread_message(
                store,
                facts.incident_id,
                decided_thread_text(facts),
                dedupe_key=f"override-decided-thread:{request_id}",
            )

    return {
        OVERRIDE_REQUESTED: deliver_override_requested,
        OVERRIDE_APPROVED: deliver_override_decided,
        OVERRIDE_DENIED: deliver_override_decided,
    }
