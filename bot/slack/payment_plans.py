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
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.signing import signing_keys
from bot.slack.blocks import Block, esc
from bot.slack.errors import FormErrors
from bot.slack.listeners import Click, ModalForm, Submitted, in_block_id, on_click, wire
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
from workflows.clock import local_date
from workflows.errors import ConflictError
from workflows.i18n import N_, _
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

log = logging.getLogger("devicecare.slack")

FIRST_DUE_DAYS = 14  # the modal's first due date when there is no plan to start from


async def plan_blocks_for(runtime: Runtime, actor: Actor, invoice_id: int) -> list[Block]:
    """The plan's section for the invoice view, with the controls the viewer may use."""
    async with runtime.reads() as store:
        invoice = await store.invoices.get(invoice_id)
        view = await plan_view(store, invoice_id)
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


async def _open_modal(click: Click[PlanControls]) -> None:
    require(click.actor, PLAN_PERMISSION)
    invoice_id = click.ref.invoice_id
    async with click.runtime.reads() as store:
        brief = await load_invoice_brief(store, invoice_id)
        invoice = await store.invoices.get(invoice_id)
        current = await plan_view(store, invoice_id)
    if invoice is None or invoice.status not in OPEN_STATUSES or brief.balance_cents <= 0:
        raise ConflictError(
            _("Invoice {number} has nothing left to pay on a plan.", number=brief.number)
        )
    today = local_date(click.runtime.clock.now(), click.tz)
    first_due = today + timedelta(days=FIRST_DUE_DAYS)
    if current is not None and current.states[0].due_on >= today:
        first_due = current.states[0].due_on
    await click.open_view(build_plan_modal(brief, current, first_due=first_due, secret=click.keys))


async def _clear(click: Click[PlanControls]) -> None:
    runtime = click.runtime
    async with runtime.stores() as store:
        outcome = await clear_payment_plan(
            click.context(store),
            PlanRows(store, runtime.clock),
            click.actor,
            click.ref.invoice_id,
        )
        await store.commit()
    number = esc(outcome.invoice.number)
    if outcome.changed:
        text = _(
            ":wastebasket: Payment plan on {number} cleared. Reminders follow the "
            "invoice's due date again.",
            number=number,
        )
    else:
        text = _("Invoice {number} has no payment plan; nothing was changed.", number=number)
    await click.tell(text)


def _menu_choice(action: Mapping[str, Any]) -> str:
    return str((action.get("selected_option") or {}).get("value") or "")


@on_click(
    PlanAction.OPEN, what="open the payment plan form", ref=PlanControls, ref_from=in_block_id
)
async def handle_payment_plan_open(click: Click[PlanControls]) -> None:
    await _open_modal(click)


@on_click(
    PlanAction.MENU,
    what=lambda action: (
        "clear a payment plan"
        if _menu_choice(action) == PlanMenu.CLEAR
        else "open the payment plan form"
    ),
    ref=PlanControls,
    ref_from=in_block_id,
)
async def handle_payment_plan_menu(click: Click[PlanControls]) -> None:
    if _menu_choice(click.action) == PlanMenu.CLEAR:
        await _clear(click)
    else:
        await _open_modal(click)


plan_form: ModalForm[PlanModal, SetPaymentPlan] = ModalForm(
    PlanModalId.SUBMIT,
    meta=PlanModal,
    what="set a payment plan",
    doing=N_("set the payment plan"),
    fields=FIELD_BLOCKS,
    default_field=PlanBlock.COUNT,
    working=lambda _form: build_plan_done_view(
        [_(":hourglass_flowing_sand: Setting the plan; the schedule will show here.")]
    ),
)


@plan_form.check
async def check_payment_plan_form(form: Submitted[PlanModal]) -> SetPaymentPlan:
    """The form read and checked without writing."""
    read = read_plan_form(form.values)
    if read.errors or read.count is None or read.first_due is None:
        raise FormErrors(read.errors)
    command = SetPaymentPlan(
        invoice_id=form.meta.invoice_id,
        count=read.count,
        first_due=read.first_due,
        frequency=read.frequency,
        note=read.note,
    )
    async with form.runtime.reads() as store:
        rows = PlanRows(store, form.runtime.clock)
        await check_payment_plan(form.context(store), rows, form.actor, command)
    return command


@plan_form.write
async def set_submitted_plan(form: Submitted[PlanModal], command: SetPaymentPlan) -> None:
    async with form.runtime.stores() as store:
        rows = PlanRows(store, form.runtime.clock)
        outcome = await set_payment_plan(form.context(store), rows, form.actor, command)
        await store.commit()
    number = esc(outcome.invoice.number)
    lines = [
        _(
            ":white_check_mark: *Payment plan set on {number}:* {schedule}.",
            number=number,
            schedule=esc(describe_schedule(outcome.schedule)),
        )
    ]
    if outcome.changed:
        lines.append(
            _(
                "The schedule ({amount}) is on its way to the family; reminders now follow "
                "the installments.",
                amount=format_cents(sum(i.amount_cents for i in outcome.schedule)),
            )
        )
    else:
        lines.insert(0, _("_This plan was already set; nothing was done twice._"))
    await form.show(build_plan_done_view(lines), f"payment plan on {number}")


def register(app: AsyncApp, runtime: Runtime) -> None:
    wire(app, runtime, handle_payment_plan_open, handle_payment_plan_menu, plan_form)


# --- outbox ----------------------------------------------------------------------------------


def outbox_handlers(runtime: Runtime, client: AsyncWebClient) -> dict[str, Any]:
    async def deliver_plan_message(payload: dict[str, Any]) -> None:
        """In the invoice's thread in the billing channel (starting it when there is none)."""
        invoice_id = int(payload["invoice_id"])
        async with runtime.stores() as store:
            invoice = await store.invoices.get(invoice_id)
            view = await plan_view(store, invoice_id)
            thread = await store.slack_posts.get(ReplyPostKind.INVOICE_THREAD, invoice_id)
            await store.commit()
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
