"""Create invoice from an incident: the modal, its live insurance preview, the submission,
and the message in the incident's thread."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.signing import Keys, signing_keys
from bot.slack.cards import CardNotPostedYet, queue_incident_card
from bot.slack.errors import FormErrors, after_ack, modal_errors, record_refusal, reported
from bot.slack.ids import IncidentAction, IncidentRef, SlackPostKind
from bot.slack.invoice_blocks import (
    FIELD_BLOCKS,
    PREVIEW_TRIGGERS,
    IncidentSummary,
    InvoiceBlock,
    InvoiceForm,
    InvoiceModal,
    InvoiceView,
    build_invoice_created_modal,
    build_invoice_creating_modal,
    build_invoice_modal,
    build_invoice_thread_message,
    read_invoice_form,
    zero_claim_warning,
)
from bot.slack.metadata import ForgedPayload, unpack
from storage.store import SqlStore
from workflows.errors import DomainError, NotFound, PermissionDenied, ValidationError
from workflows.invoice_audit import load_invoice_audit
from workflows.invoices import (
    CreateInvoice,
    InvoicePreview,
    InvoiceStatus,
    applicable_fees,
    check_invoice_for_incident,
    create_invoice_for_incident,
    preview_invoice,
)
from workflows.money import format_cents
from workflows.permissions import Actor
from workflows.ports import Context, FeeItemRecord

log = logging.getLogger("devicecare.slack")

INVOICE_CREATED = "slack.invoice_created"


def _secret(runtime: Runtime) -> Keys:
    return signing_keys(runtime.settings)


def _ctx(runtime: Runtime, store: SqlStore) -> Context:
    return Context(store, runtime.clock, runtime.settings.tz)


async def _modal_facts(
    store: SqlStore, incident_id: int
) -> tuple[IncidentSummary, list[FeeItemRecord]]:
    """The incident line at the top of the modal and the fees that apply to it."""
    incident = await store.get_incident(incident_id)
    if incident is None:
        raise NotFound(f"Incident #{incident_id} doesn't exist.")
    device = await store.get_device(incident.device_id)
    student = None if incident.student_id is None else await store.get_student(incident.student_id)
    existing = [
        f"{inv.number} ({format_cents(inv.total_cents)} owed)"
        for inv in await store.invoices_for_incident(incident_id)
        if inv.status != InvoiceStatus.CANCELLED
    ]
    summary = IncidentSummary(
        incident_id=incident.id,
        student_name=student.full_name if student is not None else "No student",
        device_label=("Unknown device" if device is None else f"{device.model} ({device.serial})"),
        occurred_on=incident.occurred_on,
        flags=tuple(incident.flag_names),
        existing_invoices=tuple(existing),
    )
    fees: list[FeeItemRecord] = applicable_fees(
        await store.active_fee_items(),
        "" if device is None else device.model,
        incident.flag_names,
    )
    return summary, fees


async def _render_modal(
    runtime: Runtime, actor: Actor, incident_id: int, form: InvoiceForm
) -> dict[str, Any]:
    """The modal for the form's current state, with the preview priced by the workflow."""
    problems = form.preview_problems
    async with runtime.stores() as store:
        ctx = _ctx(runtime, store)
        preview: InvoicePreview | None
        try:
            preview = await preview_invoice(ctx, actor, form.preview_command(incident_id))
        except ValidationError as exc:
            if exc.field == "student":
                raise
            problems.append(exc.message)
            bare = InvoiceForm(due_date=form.due_date, apply_override=form.apply_override)
            preview = await preview_invoice(ctx, actor, bare.preview_command(incident_id))
        summary, fees = await _modal_facts(store, incident_id)
    return build_invoice_modal(
        summary=summary,
        fees=fees,
        preview=preview,
        form=form,
        secret=_secret(runtime),
        problems=problems,
    )


def _submission_errors(exc: DomainError, view: Mapping[str, Any]) -> dict[str, str]:
    """Field errors for Slack; only blocks that are in the view may carry one."""
    errors = modal_errors(exc, FIELD_BLOCKS, InvoiceBlock.FEES)
    present = {b.get("block_id") for b in view.get("blocks") or [] if isinstance(b, dict)}
    return {
        (block if block in present else InvoiceBlock.FEES): message
        for block, message in errors.items()
    }


class _ZeroClaim(Exception):
    """Insurance would pay $0.00 yet use a claim, and the technician hasn't said to go on."""

    def __init__(self, incident_id: int, form: InvoiceForm, warning: str) -> None:
        super().__init__(warning)
        self.incident_id = incident_id
        self.form = form
        self.warning = warning


def register(app: AsyncApp, runtime: Runtime) -> None:
    secret = _secret(runtime)

    @app.action(IncidentAction.CREATE_INVOICE)
    async def handle_invoice_button(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        actor: Actor = context["actor"]
        async with reported(runtime, client, body, "open the invoice form", actor):
            ref = unpack(IncidentRef, action.get("value"), secret)
            view = await _render_modal(runtime, actor, ref.incident_id, InvoiceForm())
            await client.views_open(trigger_id=body["trigger_id"], view=view)

    async def handle_invoice_preview(
        ack: AsyncAck,
        body: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        """Any input that moves the money re-prices the preview in place."""
        await ack()
        actor: Actor = context["actor"]
        view = body.get("view") or {}
        async with reported(runtime, client, body, "preview an invoice", actor):
            meta = unpack(InvoiceModal, view.get("private_metadata"), secret)
            form = read_invoice_form((view.get("state") or {}).get("values") or {})
            new_view = await _render_modal(runtime, actor, meta.incident_id, form)
            try:
                await client.views_update(view_id=view["id"], hash=view.get("hash"), view=new_view)
            except SlackApiError as exc:
                if exc.response.get("error") != "hash_conflict":
                    raise
                # The person changed the form again meanwhile; that newer change re-renders.
                log.info("invoice preview for view %s skipped: hash_conflict", view.get("id"))

    for action_id in PREVIEW_TRIGGERS:
        app.action(action_id)(handle_invoice_preview)

    async def check(actor: Actor, view: dict[str, Any]) -> tuple[int, CreateInvoice]:
        """The form read and checked without writing: (incident id, command)."""
        meta = unpack(InvoiceModal, view.get("private_metadata"), secret)
        form = read_invoice_form((view.get("state") or {}).get("values") or {})
        if form.errors:
            raise FormErrors(form.errors)
        # Slack keeps the view id for the modal's life: a redelivered submission finds the
        # invoice the first one made instead of making another.
        command = form.command(meta.incident_id, idempotency_key=f"slack:view:{view['id']}")
        async with runtime.reads() as store:
            ctx = _ctx(runtime, store)
            await check_invoice_for_incident(ctx, actor, command)
            if not form.zero_claim_ok and not await store.find_invoice_by_key(
                command.idempotency_key or ""
            ):
                warning = zero_claim_warning(await preview_invoice(ctx, actor, command))
                if warning is not None:
                    raise _ZeroClaim(meta.incident_id, form, warning)
        return meta.incident_id, command

    async def handle_invoice_submission(
        ack: AsyncAck, view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        """A broken rule is shown next to its field; `create_submitted_invoice` writes."""
        actor: Actor = context["actor"]
        try:
            await check(actor, view)
        except FormErrors as exc:
            await ack(response_action="errors", errors=exc.errors)
            return
        except _ZeroClaim as exc:
            # A second submit with the box ticked creates the invoice.
            message = f"{exc.warning} Tick the box to use the claim anyway, or change the fees."
            present = {b.get("block_id") for b in view.get("blocks") or [] if isinstance(b, dict)}
            if InvoiceBlock.ZERO_CLAIM in present:
                await ack(response_action="errors", errors={InvoiceBlock.ZERO_CLAIM: message})
            else:  # the preview never showed the warning: show it now, box and all
                new_view = await _render_modal(runtime, actor, exc.incident_id, exc.form)
                await ack(response_action="update", view=new_view)
            return
        except DomainError as exc:
            errors: dict[str, str] = (
                {InvoiceBlock.FEES.value: exc.message}
                if isinstance(exc, ForgedPayload)
                else _submission_errors(exc, view)
            )
            await ack(response_action="errors", errors=errors)
            if isinstance(exc, PermissionDenied | ForgedPayload):
                await record_refusal(runtime, actor, "create an invoice", exc.message)
            return
        await ack(response_action="update", view=build_invoice_creating_modal())

    async def create_submitted_invoice(
        body: dict[str, Any],
        view: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        actor: Actor = context["actor"]
        try:
            incident_id, command = await check(actor, view)
        except (DomainError, FormErrors, _ZeroClaim):
            return  # answered with the errors next to their fields
        async with after_ack(runtime, client, body, "create the invoice", actor):
            async with runtime.stores() as store:
                result = await create_invoice_for_incident(_ctx(runtime, store), actor, command)
                invoice = result.invoice
                if result.created:
                    await queue_incident_card(store, incident_id)
                    await store.enqueue(
                        INVOICE_CREATED,
                        f"invoice-created:{invoice.id}",
                        {"invoice_id": invoice.id, "created_by": actor.name},
                    )
                student = await store.get_student(invoice.student_id)
                done = build_invoice_created_modal(
                    invoice,
                    student_name="the student" if student is None else student.full_name,
                    secret=secret,
                    audit=await load_invoice_audit(store, invoice, tz=runtime.settings.tz),
                    created=result.created,
                )
            try:
                await client.views_update(view_id=view["id"], view=done)
            except SlackApiError as exc:  # closed meanwhile: the thread shows the invoice
                log.info("invoice %s: modal not updated (%s)", invoice.number, exc)

    app.view(InvoiceView.CREATE)(ack=handle_invoice_submission, lazy=[create_submitted_invoice])


def outbox_handlers(runtime: Runtime, client: AsyncWebClient) -> dict[str, Any]:
    secret = _secret(runtime)

    async def deliver_invoice_created(payload: dict[str, Any]) -> None:
        """The new invoice in the incident's thread (with Request override at the cap)."""
        async with runtime.stores() as store:
            invoice = await store.get_invoice(int(payload["invoice_id"]))
            if invoice is None or invoice.incident_id is None:
                return  # deleted since; nothing to say
            post = await store.slack_post(SlackPostKind.INCIDENT_CARD, invoice.incident_id)
            audit = await load_invoice_audit(store, invoice, tz=runtime.settings.tz)
        if post is None:
            raise CardNotPostedYet(f"incident #{invoice.incident_id} has no card yet")
        # Rendered now: if an override was approved meanwhile, the message says so already.
        text, blocks = build_invoice_thread_message(
            invoice,
            created_by=str(payload.get("created_by") or "someone"),
            secret=secret,
            audit=audit,
        )
        await client.chat_postMessage(
            channel=post.channel, thread_ts=post.ts, text=text, blocks=blocks
        )

    return {INVOICE_CREATED: deliver_invoice_created}
