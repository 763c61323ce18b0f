"""Create invoice from an incident: the modal, its live insurance preview, the submission,
and the message in the incident's thread."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.signing import Keys, signing_keys
from bot.slack.blocks import form_values
from bot.slack.cards import CardNotPostedYet, queue_incident_card
from bot.slack.errors import FormErrors
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
from bot.slack.listeners import (
    Answer,
    Click,
    ModalForm,
    Submitted,
    in_view_metadata,
    on_click,
    wire,
)
from storage.uow import SqlUnitOfWork
from workflows.errors import NotFound, ValidationError
from workflows.i18n import N_, _
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


def _ctx(runtime: Runtime, store: SqlUnitOfWork) -> Context:
    return Context(store, runtime.clock, runtime.settings.tz)


async def _modal_facts(
    store: SqlUnitOfWork, incident_id: int
) -> tuple[IncidentSummary, list[FeeItemRecord]]:
    """The incident line at the top of the modal and the fees that apply to it."""
    incident = await store.incidents.get(incident_id)
    if incident is None:
        raise NotFound(_("Incident #{number} doesn't exist.", number=incident_id))
    device = await store.devices.get(incident.device_id)
    student = (
        None if incident.student_id is None else await store.people.student(incident.student_id)
    )
    existing = [
        _("{number} ({amount} owed)", number=inv.number, amount=format_cents(inv.total_cents))
        for inv in await store.invoices.for_incident(incident_id)
        if inv.status != InvoiceStatus.CANCELLED
    ]
    summary = IncidentSummary(
        incident_id=incident.id,
        student_name=student.full_name if student is not None else _("No student"),
        device_label=(
            _("Unknown device") if device is None else f"{device.model} ({device.serial})"
        ),
        occurred_on=incident.occurred_on,
        flags=tuple(incident.flag_names),
        existing_invoices=tuple(existing),
    )
    fees: list[FeeItemRecord] = applicable_fees(
        await store.fee_items.active(),
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
        await store.commit()
    return build_invoice_modal(
        summary=summary,
        fees=fees,
        preview=preview,
        form=form,
        secret=_secret(runtime),
        problems=problems,
    )


class _ZeroClaim(Answer):
    """Insurance would pay $0.00 yet use a claim, and the technician hasn't said to go on."""

    def __init__(self, form: Submitted[InvoiceModal], read: InvoiceForm, warning: str) -> None:
        super().__init__(warning)
        self.form = form
        self.read = read
        self.warning = warning

    async def response(self) -> dict[str, Any]:
        # A second submit with the box ticked creates the invoice.
        message = _(
            "{warning} Tick the box to use the claim anyway, or change the fees.",
            warning=self.warning,
        )
        view = self.form.view
        present = {b.get("block_id") for b in view.get("blocks") or [] if isinstance(b, dict)}
        if InvoiceBlock.ZERO_CLAIM in present:
            return {"response_action": "errors", "errors": {InvoiceBlock.ZERO_CLAIM: message}}
        # The preview never showed the warning: show it now, box and all.
        form = self.form
        new_view = await _render_modal(form.runtime, form.actor, form.meta.incident_id, self.read)
        return {"response_action": "update", "view": new_view}


@on_click(IncidentAction.CREATE_INVOICE, what="open the invoice form", ref=IncidentRef)
async def handle_invoice_button(click: Click[IncidentRef]) -> None:
    view = await _render_modal(click.runtime, click.actor, click.ref.incident_id, InvoiceForm())
    await click.open_view(view)


@on_click(PREVIEW_TRIGGERS, what="preview an invoice", ref=InvoiceModal, ref_from=in_view_metadata)
async def handle_invoice_preview(click: Click[InvoiceModal]) -> None:
    """Any input that moves the money re-prices the preview in place."""
    view = click.body.get("view") or {}
    form = read_invoice_form(form_values(view))
    new_view = await _render_modal(click.runtime, click.actor, click.ref.incident_id, form)
    try:
        await click.client.views_update(view_id=view["id"], hash=view.get("hash"), view=new_view)
    except SlackApiError as exc:
        if exc.response.get("error") != "hash_conflict":
            raise
        # The person changed the form again meanwhile; that newer change re-renders.
        log.info("invoice preview for view %s skipped: hash_conflict", view.get("id"))


invoice_form: ModalForm[InvoiceModal, CreateInvoice] = ModalForm(
    InvoiceView.CREATE,
    meta=InvoiceModal,
    what="create an invoice",
    doing=N_("create the invoice"),
    fields=FIELD_BLOCKS,
    default_field=InvoiceBlock.FEES,
    working=lambda _form: build_invoice_creating_modal(),
)


@invoice_form.check
async def check_invoice_form(form: Submitted[InvoiceModal]) -> CreateInvoice:
    """The form read and checked without writing."""
    read = read_invoice_form(form.values)
    if read.errors:
        raise FormErrors(read.errors)
    incident_id = form.meta.incident_id
    command = read.command(incident_id, idempotency_key=form.idempotency_key)
    async with form.runtime.reads() as store:
        ctx = form.context(store)
        await check_invoice_for_incident(ctx, form.actor, command)
        if not read.zero_claim_ok and not await store.invoices.by_key(
            command.idempotency_key or ""
        ):
            warning = zero_claim_warning(await preview_invoice(ctx, form.actor, command))
            if warning is not None:
                raise _ZeroClaim(form, read, warning)
    return command


@invoice_form.write
async def create_submitted_invoice(form: Submitted[InvoiceModal], command: CreateInvoice) -> None:
    actor, incident_id = form.actor, form.meta.incident_id
    async with form.runtime.stores() as store:
        result = await create_invoice_for_incident(form.context(store), actor, command)
        invoice = result.invoice
        if result.created:
            await queue_incident_card(store, incident_id)
            await store.outbox.enqueue(
                INVOICE_CREATED,
                f"invoice-created:{invoice.id}",
                {"invoice_id": invoice.id, "created_by": actor.name},
            )
        student = await store.people.student(invoice.student_id)
        done = build_invoice_created_modal(
            invoice,
            student_name=_("the student") if student is None else student.full_name,
            secret=form.keys,
            audit=await load_invoice_audit(store, invoice, tz=form.tz),
            created=result.created,
        )
        await store.commit()
    await form.show(done, f"invoice {invoice.number}")


def register(app: AsyncApp, runtime: Runtime) -> None:
    wire(app, runtime, handle_invoice_button, handle_invoice_preview, invoice_form)


def outbox_handlers(runtime: Runtime, client: AsyncWebClient) -> dict[str, Any]:
    secret = _secret(runtime)

    async def deliver_invoice_created(payload: dict[str, Any]) -> None:
        """The new invoice in the incident's thread (with Request override at the cap)."""
        async with runtime.stores() as store:
            invoice = await store.invoices.get(int(payload["invoice_id"]))
            if invoice is None or invoice.incident_id is None:
                await store.commit()
                return  # deleted since; nothing to say
            post = await store.slack_posts.get(SlackPostKind.INCIDENT_CARD, invoice.incident_id)
            audit = await load_invoice_audit(store, invoice, tz=runtime.settings.tz)
            await store.commit()
        if post is None:
            raise CardNotPostedYet(f"incident #{invoice.incident_id} has no card yet")
        # Rendered now: if an override was approved meanwhile, the message says so already.
        text, blocks = build_invoice_thread_message(
            invoice,
            created_by=str(payload.get("created_by") or _("someone")),
            secret=secret,
            audit=audit,
        )
        await client.chat_postMessage(
            channel=post.channel, thread_ts=post.ts, text=text, blocks=blocks
        )

    return {INVOICE_CREATED: deliver_invoice_created}
