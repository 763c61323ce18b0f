"""Payment plans in Slack: Set payment plan… and Clear payment plan on `/billing invoice`, the
modal and its field errors, and the plan's messages (set, cleared, missed installment) in the
invoice's thread in the billing channel.

Permission (Record Payments) is checked again on the server at every click and submission.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.signing import signing_keys
from bot.slack.blocks import Block, esc
from bot.slack.errors import (
    FormErrors,
    after_ack,
    modal_errors,
    record_refusal,
    reported,
    tell_user,
)
from bot.slack.metadata import ForgedPayload, unpack
from bot.slack.payment_plan_blocks import (
    FIELD_BLOCKS,
    PlanAction,
    PlanBlock,
    PlanControls,
    PlanMenu,
    PlanModal,
    PlanModalId,
    build_installment_missed_message,
    build_plan_cleared_message,
    build_plan_done_view,
    build_plan_modal,
    build_plan_set_message,
    plan_blocks,
    read_plan_form,
)
from bot.slack.replies import post_in_invoice_thread
from bot.slack.reply_blocks import ReplyPostKind
from bot.slack.waivers import load_invoice_brief
from storage.payment_plans import PlanRows, plan_view
from storage.store import SqlStore
from workflows.clock import local_date
from workflows.errors import ConflictError, DomainError, PermissionDenied
from workflows.invoices import OPEN_STATUSES
from workflows.money import format_cents
from workflows.payment_plans import (
    PLAN_PERMISSION,
    PLAN_POSTED,
    PlanEvent,
    SetPaymentPlan,
    check_payment_plan,
    clear_payment_plan,
    describe_schedule,
    set_payment_plan,
)
from workflows.permissions import Actor, require
from workflows.ports import Context

log = logging.getLogger("devicecare.slack")

FIRST_DUE_DAYS = 14  # the modal's first due date when there is no plan to start from


async def plan_blocks_for(runtime: Runtime, actor: Actor, invoice_id: int) -> list[Block]:
    """The plan's section for the invoice view, with the controls the viewer may use."""
    async with runtime.reads() as store:
        invoice = await store.get_invoice(invoice_id)
        view = await plan_view(store.session, invoice_id)
    if invoice is None:
        return []
    can_change = (
        actor.can(PLAN_PERMISSION) and invoice.status in OPEN_STATUSES and invoice.balance_cents > 0
    )
    return plan_blocks(
        view,
        invoice_id=invoice_id,
        secret=signing_keys(runtime.settings),
        can_change=can_change,
    )


def _field_errors(exc: DomainError, view: Mapping[str, Any]) -> dict[str, str]:
    errors = modal_errors(exc, FIELD_BLOCKS, PlanBlock.COUNT)
    present = {b.get("block_id") for b in view.get("blocks") or [] if isinstance(b, dict)}
    return {
        (block if block in present else PlanBlock.COUNT): text for block, text in errors.items()
    }


def register(app: AsyncApp, runtime: Runtime) -> None:
    secret = signing_keys(runtime.settings)
    tz = runtime.settings.tz

    def ctx_for(store: SqlStore) -> Context:
        return Context(store, runtime.clock, tz)

    async def open_modal(
        body: dict[str, Any], client: AsyncWebClient, actor: Actor, invoice_id: int
    ) -> None:
        require(actor, PLAN_PERMISSION)
        async with runtime.reads() as store:
            brief = await load_invoice_brief(store, invoice_id)
            invoice = await store.get_invoice(invoice_id)
            current = await plan_view(store.session, invoice_id)
        if invoice is None or invoice.status not in OPEN_STATUSES or brief.balance_cents <= 0:
            raise ConflictError(f"Invoice {brief.number} has nothing left to pay on a plan.")
        today = local_date(runtime.clock.now(), tz)
        first_due = today + timedelta(days=FIRST_DUE_DAYS)
        if current is not None and current.states[0].due_on >= today:
            first_due = current.states[0].due_on
        view = build_plan_modal(brief, current, first_due=first_due, secret=secret)
        await client.views_open(trigger_id=body["trigger_id"], view=view)

    async def clear(
        body: dict[str, Any], client: AsyncWebClient, actor: Actor, invoice_id: int
    ) -> None:
        async with runtime.stores() as store:
            outcome = await clear_payment_plan(
                ctx_for(store), PlanRows(store.session, runtime.clock), actor, invoice_id
            )
        number = esc(outcome.invoice.number)
        if outcome.changed:
            text = (
                f":wastebasket: Payment plan on {number} cleared. Reminders follow the "
                "invoice's due date again."
            )
        else:
            text = f"Invoice {number} has no payment plan; nothing was changed."
        await tell_user(client, body, text)

    @app.action(PlanAction.OPEN)
    async def handle_payment_plan_open(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        actor: Actor = context["actor"]
        async with reported(runtime, client, body, "open the payment plan form", actor):
            ref = unpack(PlanControls, action.get("block_id"), secret)
            await open_modal(body, client, actor, ref.invoice_id)

    @app.action(PlanAction.MENU)
    async def handle_payment_plan_menu(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        actor: Actor = context["actor"]
        choice = str((action.get("selected_option") or {}).get("value") or "")
        what = "clear a payment plan" if choice == PlanMenu.CLEAR else "open the payment plan form"
        async with reported(runtime, client, body, what, actor):
            ref = unpack(PlanControls, action.get("block_id"), secret)
            if choice == PlanMenu.CLEAR:
                await clear(body, client, actor, ref.invoice_id)
            else:
                await open_modal(body, client, actor, ref.invoice_id)

    async def check(actor: Actor, view: dict[str, Any]) -> SetPaymentPlan:
        """The form read and checked without writing."""
        meta = unpack(PlanModal, view.get("private_metadata"), secret)
        form = read_plan_form((view.get("state") or {}).get("values") or {})
        if form.errors or form.count is None or form.first_due is None:
            raise FormErrors(form.errors)
        command = SetPaymentPlan(
            invoice_id=meta.invoice_id,
            count=form.count,
            first_due=form.first_due,
            frequency=form.frequency,
            note=form.note,
        )
        async with runtime.reads() as store:
            await check_payment_plan(
                ctx_for(store), PlanRows(store.session, runtime.clock), actor, command
            )
        return command

    async def handle_payment_plan_submission(
        ack: AsyncAck, view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        """A broken rule is shown next to its field; `set_submitted_plan` writes."""
        actor: Actor = context["actor"]
        try:
            await check(actor, view)
        except FormErrors as exc:
            await ack(response_action="errors", errors=exc.errors)
            return
        except DomainError as exc:
            errors: dict[str, str] = (
                {PlanBlock.COUNT.value: exc.message}
                if isinstance(exc, ForgedPayload)
                else _field_errors(exc, view)
            )
            await ack(response_action="errors", errors=errors)
            if isinstance(exc, PermissionDenied | ForgedPayload):
                await record_refusal(runtime, actor, "set a payment plan", exc.message)
            return
        working = ":hourglass_flowing_sand: Setting the plan; the schedule will show here."
        await ack(response_action="update", view=build_plan_done_view([working]))

    async def set_submitted_plan(
        body: dict[str, Any],
        view: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        actor: Actor = context["actor"]
        try:
            command = await check(actor, view)
        except (DomainError, FormErrors):
            return  # answered with the errors next to their fields
        async with after_ack(runtime, client, body, "set the payment plan", actor):
            async with runtime.stores() as store:
                outcome = await set_payment_plan(
                    ctx_for(store), PlanRows(store.session, runtime.clock), actor, command
                )
            number = esc(outcome.invoice.number)
            lines = [
                f":white_check_mark: *Payment plan set on {number}:* "
                f"{esc(describe_schedule(outcome.schedule))}."
            ]
            if outcome.changed:
                lines.append(
                    f"The schedule ({format_cents(sum(i.amount_cents for i in outcome.schedule))})"
                    " is on its way to the family; reminders now follow the installments."
                )
            else:
                lines.insert(0, "_This plan was already set; nothing was done twice._")
            try:
                await client.views_update(view_id=view["id"], view=build_plan_done_view(lines))
            except SlackApiError as exc:  # closed meanwhile: the invoice's thread shows it
                log.info("payment plan on %s: modal not updated (%s)", number, exc)

    app.view(PlanModalId.SUBMIT)(ack=handle_payment_plan_submission, lazy=[set_submitted_plan])


# --- outbox ----------------------------------------------------------------------------------


def outbox_handlers(runtime: Runtime, client: AsyncWebClient) -> dict[str, Any]:
    async def deliver_plan_message(payload: dict[str, Any]) -> None:
        """In the invoice's thread in the billing channel (starting it when there is none)."""
        invoice_id = int(payload["invoice_id"])
        async with runtime.stores() as store:
            invoice = await store.get_invoice(invoice_id)
            view = await plan_view(store.session, invoice_id)
            thread = await store.slack_post(ReplyPostKind.INVOICE_THREAD, invoice_id)
        if invoice is None:
            return  # deleted since; nothing to say
        event = PlanEvent(str(payload["event"]))
        by = str(payload.get("by") or "someone")
        if event is PlanEvent.SET:
            text, blocks = build_plan_set_message(
                invoice.number, view, by=by, note=payload.get("note")
            )
        elif event is PlanEvent.CLEARED:
            text, blocks = build_plan_cleared_message(invoice.number, by=by)
        else:
            text, blocks = build_installment_missed_message(invoice.number, payload)
        await post_in_invoice_thread(
            runtime,
            client,
            invoice_id,
            thread,
            text=text,
            blocks=blocks,
            needs="post payment plan messages",
        )

    return {PLAN_POSTED: deliver_plan_message}
