"""Parents' emails in Slack: each reply in its invoice's thread in the billing channel, held
and unverified ones labelled in the channel, bounce alerts, and Confirm / Not received on a
payment a parent reports (decided on the server at click time; the first decision wins)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.signing import signing_keys
from bot.slack.kept_posts import post_and_keep
from bot.slack.listeners import Click, ModalForm, Slack, Submitted, on_click, wire
from bot.slack.reply_blocks import (
    BounceAlert,
    PartView,
    PendingPaymentRef,
    PendingView,
    ReplyAction,
    ReplyBlock,
    ReplyCard,
    ReplyPostKind,
    ReplyView,
    already_decided_text,
    amount_block,
    build_bounce_alert,
    build_confirm_payment_modal,
    build_reply_message,
    build_split_modal,
    read_confirm_form,
    read_split_form,
)
from storage import models as m
from storage.db_errors import DuplicateRow
from storage.inbox import (
    BOUNCE_ALERT_KIND,
    PENDING_DECIDED_KIND,
    REPLY_POST_KIND,
    Inbox,
    InvoiceRef,
    ReplyFacts,
    outbox_payload,
)
from storage.lookups import get_guardian, get_notice
from storage.uow import SqlUnitOfWork
from workflows.errors import ConflictError, ValidationError
from workflows.i18n import N_, _
from workflows.payments import PaymentMethod
from workflows.pending_payments import (
    PendingDecision,
    PendingStatus,
    check_confirmation,
    check_split,
    confirm_pending_payment,
    edit_split,
    missing_details,
    reject_pending_payment,
    use_full_balance,
)
from workflows.permissions import Permission, require

log = logging.getLogger("devicecare.slack")


class BillingChannelMissing(RuntimeError):
    """SLACK_BILLING_CHANNEL isn't set; the post waits in the outbox until it is."""


async def post_in_invoice_thread(
    runtime: Runtime,
    client: AsyncWebClient,
    invoice_id: int,
    thread: m.SlackPost | None,
    *,
    text: str,
    blocks: list[dict[str, Any]] | None = None,
    needs: str,
) -> None:
    """Post in `thread`; without one, start the invoice's thread in the billing channel (and
    keep it as the invoice's, unless another post started it at the same moment). `needs`
    says what the missing channel would show."""
    if thread is not None:
        await client.chat_postMessage(
            channel=thread.channel, thread_ts=thread.ts, text=text, blocks=blocks
        )
        return
    channel = runtime.settings.slack_billing_channel
    if not channel:
        raise BillingChannelMissing(f"set SLACK_BILLING_CHANNEL to {needs}")
    kind = ReplyPostKind.INVOICE_THREAD
    try:
        await post_and_keep(
            runtime, client, kind, invoice_id, channel=channel, text=text, blocks=blocks
        )
    except DuplicateRow:  # another post started the thread at the same moment
        log.info("invoice %s already has a thread", invoice_id)


def pending_view(
    pending: m.PendingPayment,
    decided_by: str | None,
    parts: Sequence[tuple[m.PendingPaymentPart, InvoiceRef]] = (),
) -> PendingView:
    return PendingView(
        amount_given=bool(pending.amount_given),
        parts=tuple(
            PartView(
                invoice_id=part.invoice_id,
                number=invoice.number,
                amount_cents=part.amount_cents,
                # a confirmed part shows what was owed before it was recorded
                balance_cents=invoice.balance_cents
                + (part.amount_cents if part.payment_id is not None else 0),
            )
            for part, invoice in parts
        ),
        id=pending.id,
        amount_cents=pending.amount_cents,
        method=pending.method,
        reference=pending.reference,
        paid_on=pending.paid_on,
        status=pending.status,
        decided_by=decided_by,
        decided_at=pending.decided_at,
        missing=tuple(missing_details(pending)),
    )


def reply_card(facts: ReplyFacts, extra: dict[str, Any] | None = None) -> ReplyCard:
    extra = extra or {}
    message, invoice = facts.message, facts.invoice
    return ReplyCard(
        inbound_id=message.id,
        from_name=extra.get("from_name") or None,
        from_address=message.from_address,
        subject=message.subject,
        body=message.body_text,
        intent=message.intent,
        route=message.route,
        status=message.status,
        received_at=message.received_at,
        invoice_number=None if invoice is None else invoice.number,
        invoice_status=None if invoice is None else invoice.status,
        balance_cents=None if invoice is None else invoice.balance_cents,
        student_name=None if facts.student is None else facts.student.full_name,
        claimed_guardian=None if facts.guardian is None else facts.guardian.full_name,
        pending=None
        if facts.pending is None
        else pending_view(facts.pending, facts.decided_by, facts.parts),
        photos=int(extra.get("photos") or 0),
        incident_id=None if invoice is None else invoice.incident_id,
        notes=tuple(str(n) for n in extra.get("notes") or ()),
    )


async def _decide(
    slack: Slack,
    confirm: bool,
    pending_id: int,
    *,
    method: PaymentMethod | None = None,
    reference: str | None = None,
) -> bool:
    """Confirm or reject; True when this click made the decision."""
    runtime, actor = slack.runtime, slack.actor
    result: PendingDecision | None = None
    conflict: ConflictError | None = None
    try:
        async with runtime.stores() as store:
            ctx = slack.context(store)
            inbox = Inbox(store)
            # Record Payments is checked here, at click time, by the workflow.
            if confirm:
                result = await confirm_pending_payment(
                    ctx, inbox, actor, pending_id, method=method, reference=reference
                )
            else:
                result = await reject_pending_payment(ctx, inbox, actor, pending_id)
            if result.changed:
                await store.outbox.enqueue(
                    PENDING_DECIDED_KIND,
                    f"pending-decided:{pending_id}",
                    {"pending_payment_id": pending_id},
                )
            await store.commit()
    except ConflictError as exc:
        conflict = exc  # the other decision won; say who made it, below
    if result is not None and result.changed:
        return True  # the message updates in place when the outbox delivers the decision
    async with runtime.stores() as store:
        inbox = Inbox(store)
        pending = await inbox.get_pending_payment(pending_id)
        decided_by = (
            None
            if pending is None or pending.decided_by_id is None
            else await store.people.staff_name(pending.decided_by_id)
        )
        await store.commit()
    if pending is None or pending.status == PendingStatus.PENDING:
        raise conflict or ConflictError(_("That reported payment can't be decided now."))
    await slack.tell(already_decided_text(pending_view(pending, decided_by), slack.tz))
    return False


async def _confirm_or_ask(click: Click[PendingPaymentRef]) -> None:
    """Confirm, or first ask for what the family didn't say (method, check number)."""
    pending_id = click.ref.pending_payment_id
    async with click.runtime.stores() as store:
        inbox = Inbox(store)
        pending = await inbox.get_pending_payment(pending_id)
        invoice = None if pending is None else await inbox.get_invoice(pending.invoice_id)
        parts = await inbox.pending_parts_now(pending)
        await store.commit()
    if pending is not None and pending.status == PendingStatus.PENDING and missing_details(pending):
        require(click.actor, Permission.RECORD_PAYMENTS)  # refuse before showing the form
        view = build_confirm_payment_modal(
            pending_view(pending, None, parts),
            None if invoice is None else invoice.number,
            secret=click.keys,
        )
        await click.open_view(view)
        return
    await _decide(click, True, pending_id)


async def _refresh_post(store: SqlUnitOfWork, pending_id: int) -> None:
    """Show the reported payment's new split in its Slack message (via the outbox; a
    repeated submission only refreshes it again)."""
    await store.outbox.enqueue(
        PENDING_DECIDED_KIND,
        f"pending-split:{pending_id}:{uuid.uuid4().hex}",
        {"pending_payment_id": pending_id},
        fresh_key=True,
    )


@on_click(ReplyAction.CONFIRM, what="confirm a reported payment", ref=PendingPaymentRef)
async def handle_pending_payment_confirm(click: Click[PendingPaymentRef]) -> None:
    await _confirm_or_ask(click)


@on_click(ReplyAction.CONFIRM_BALANCE, what="confirm a reported payment", ref=PendingPaymentRef)
async def handle_pending_payment_confirm_balance(click: Click[PendingPaymentRef]) -> None:
    """ "I paid it online", no amount, one invoice: record its full balance."""
    try:
        async with click.runtime.stores() as store:
            # Record Payments is checked here, at click time, by the workflow.
            pending = await use_full_balance(
                click.context(store), Inbox(store), click.actor, click.ref.pending_payment_id
            )
            await _refresh_post(store, pending.id)
            await store.commit()
    except ConflictError:
        pass  # decided already: `_decide` says by whom
    await _confirm_or_ask(click)


@on_click(ReplyAction.EDIT_SPLIT, what="change a reported payment's split", ref=PendingPaymentRef)
async def handle_pending_payment_edit_split(click: Click[PendingPaymentRef]) -> None:
    require(click.actor, Permission.RECORD_PAYMENTS)  # refuse before showing the form
    async with click.runtime.stores() as store:
        inbox = Inbox(store)
        pending = await inbox.get_pending_payment(click.ref.pending_payment_id)
        parts = await inbox.pending_parts_now(pending)
        decided_by = (
            None
            if pending is None or pending.decided_by_id is None
            else await store.people.staff_name(pending.decided_by_id)
        )
        await store.commit()
    if pending is None or not parts:
        raise ConflictError(_("This reported payment has no split to change."))
    view = pending_view(pending, decided_by, parts)
    if pending.status != PendingStatus.PENDING:
        await click.tell(already_decided_text(view, click.tz))
        return
    await click.open_view(build_split_modal(view, secret=click.keys))


@on_click(ReplyAction.REJECT, what="reject a reported payment", ref=PendingPaymentRef)
async def handle_pending_payment_reject(click: Click[PendingPaymentRef]) -> None:
    await _decide(click, False, click.ref.pending_payment_id)


def _split_block(field: str | None) -> str:
    """The split form's input an error belongs to (the total when it names none)."""
    if field and field.startswith("amount:") and field[len("amount:") :].isdigit():
        return amount_block(int(field[len("amount:") :]))
    return str(ReplyBlock.TOTAL)


split_form: ModalForm[PendingPaymentRef, tuple[str, dict[int, str]]] = ModalForm(
    ReplyView.SPLIT,
    meta=PendingPaymentRef,
    what="change a reported payment's split",
    doing=N_("change the split"),
    fields=_split_block,
    clear=True,
)


@split_form.check
async def check_split_form(form: Submitted[PendingPaymentRef]) -> tuple[str, dict[int, str]]:
    """The split form read and checked without writing: (total, amounts)."""
    total, amounts = read_split_form(form.values)
    async with form.runtime.reads() as store:
        pending_id = form.meta.pending_payment_id
        await check_split(Inbox(store), form.actor, pending_id, total=total, amounts=amounts)
    return total, amounts


@split_form.write
async def save_split(form: Submitted[PendingPaymentRef], split: tuple[str, dict[int, str]]) -> None:
    total, amounts = split
    async with form.runtime.stores() as store:
        pending = await edit_split(
            form.context(store), Inbox(store), form.actor,
            form.meta.pending_payment_id, total=total, amounts=amounts,
        )  # fmt: skip
        await _refresh_post(store, pending.id)
        await store.commit()


def _confirm_block(field: str | None) -> str:
    return ReplyBlock.REFERENCE if field == "reference" else ReplyBlock.METHOD


confirm_form: ModalForm[PendingPaymentRef, tuple[PaymentMethod, str | None]] = ModalForm(
    ReplyView.CONFIRM,
    meta=PendingPaymentRef,
    what="confirm a reported payment",
    doing=N_("confirm the payment"),
    fields=_confirm_block,
    clear=True,
)


@confirm_form.check
async def check_confirm_form(
    form: Submitted[PendingPaymentRef],
) -> tuple[PaymentMethod, str | None]:
    """The confirm form read and checked without writing: (method, reference). A decision
    already made passes: `_decide` says who made it."""
    method_text, reference = read_confirm_form(form.values)
    try:
        method = PaymentMethod(method_text)
    except ValueError:
        raise ValidationError(_("Choose a method."), field="method") from None
    try:
        async with form.runtime.reads() as store:
            await check_confirmation(
                Inbox(store), form.actor, form.meta.pending_payment_id,
                method=method, reference=reference,
            )  # fmt: skip
    except ConflictError:
        pass
    return method, reference


@confirm_form.write
async def confirm_submitted(
    form: Submitted[PendingPaymentRef], details: tuple[PaymentMethod, str | None]
) -> None:
    method, reference = details
    await _decide(form, True, form.meta.pending_payment_id, method=method, reference=reference)


def register(app: AsyncApp, runtime: Runtime) -> None:
    wire(
        app,
        runtime,
        handle_pending_payment_confirm,
        handle_pending_payment_confirm_balance,
        handle_pending_payment_edit_split,
        handle_pending_payment_reject,
        split_form,
        confirm_form,
    )


def outbox_handlers(runtime: Runtime, client: AsyncWebClient) -> dict[str, Any]:
    secret = signing_keys(runtime.settings)
    tz = runtime.settings.tz

    def billing_channel() -> str:
        channel = runtime.settings.slack_billing_channel
        if not channel:
            raise BillingChannelMissing("set SLACK_BILLING_CHANNEL to show parents' emails")
        return channel

    async def deliver_reply(payload: dict[str, Any]) -> None:
        """Routed replies go in the invoice's thread (the first one starts it); unverified ones
        are also shown in the channel; held ones are posted in the channel, labelled."""
        inbound_id = int(payload["inbound_id"])
        async with runtime.stores() as store:
            facts = await Inbox(store).reply_facts(inbound_id)
            posted = await store.slack_posts.get(ReplyPostKind.MAIL_REPLY, inbound_id)
            thread = (
                None
                if facts is None or facts.invoice is None
                else await store.slack_posts.get(ReplyPostKind.INVOICE_THREAD, facts.invoice.id)
            )
            await store.commit()
        if facts is None:
            return
        text, blocks = build_reply_message(reply_card(facts, payload), secret=secret, tz=tz)
        if posted is not None:  # a retry after the post went out: refresh it, don't repeat it
            await client.chat_update(channel=posted.channel, ts=posted.ts, text=text, blocks=blocks)
            return
        in_thread = facts.invoice is not None and facts.message.status in ("routed", "flagged")
        if in_thread and thread is not None:
            response = await client.chat_postMessage(
                channel=thread.channel,
                thread_ts=thread.ts,
                text=text,
                blocks=blocks,
                reply_broadcast=facts.message.status == "flagged",
            )
        else:
            response = await client.chat_postMessage(
                channel=billing_channel(), text=text, blocks=blocks
            )
        channel, ts = str(response.get("channel") or billing_channel()), str(response["ts"])
        async with runtime.stores() as store:
            await store.slack_posts.save(ReplyPostKind.MAIL_REPLY, inbound_id, channel, ts)
            await store.commit()
        if in_thread and thread is None and facts.invoice is not None:
            try:
                async with runtime.stores() as store:
                    await store.slack_posts.save(
                        ReplyPostKind.INVOICE_THREAD, facts.invoice.id, channel, ts
                    )
                    await store.commit()
            except DuplicateRow:  # another worker started the thread at the same moment
                log.info("invoice %s already has an email thread", facts.invoice.id)

    async def deliver_decision(payload: dict[str, Any]) -> None:
        """The reply's message shows the decision in place of its buttons."""
        pending_id = int(payload["pending_payment_id"])
        async with runtime.stores() as store:
            pending = await Inbox(store).get_pending_payment(pending_id)
            if pending is None or pending.inbound_message_id is None:
                await store.commit()
                return
            inbound_id = pending.inbound_message_id
            facts = await Inbox(store).reply_facts(inbound_id)
            posted = await store.slack_posts.get(ReplyPostKind.MAIL_REPLY, inbound_id)
            # What the ingest noted for the post (sender's name, photos, notes).
            extra = await outbox_payload(store, f"mail-reply:{inbound_id}")
            await store.commit()
        if facts is None or posted is None:
            return  # not posted yet: the post, when it goes out, shows the decision
        text, blocks = build_reply_message(reply_card(facts, extra), secret=secret, tz=tz)
        await client.chat_update(channel=posted.channel, ts=posted.ts, text=text, blocks=blocks)

    async def deliver_bounce(payload: dict[str, Any]) -> None:
        """Tell billing staff which guardian's address bounced, and for which invoice."""
        inbound_id = int(payload["inbound_id"])
        async with runtime.stores() as store:
            message = await Inbox(store).get_message(inbound_id)
            posted = await store.slack_posts.get(ReplyPostKind.MAIL_BOUNCE, inbound_id)
            alert = await _bounce_alert(store, payload, message)
            await store.commit()
        if message is None or alert is None or posted is not None:
            return
        text, blocks = build_bounce_alert(alert, tz=tz)
        channel = billing_channel()
        response = await client.chat_postMessage(channel=channel, text=text, blocks=blocks)
        async with runtime.stores() as store:
            await store.slack_posts.save(
                ReplyPostKind.MAIL_BOUNCE,
                inbound_id,
                str(response.get("channel") or billing_channel()),
                str(response["ts"]),
            )
            await store.commit()

    return {
        REPLY_POST_KIND: deliver_reply,
        PENDING_DECIDED_KIND: deliver_decision,
        BOUNCE_ALERT_KIND: deliver_bounce,
    }


async def _bounce_alert(
    store: SqlUnitOfWork, payload: dict[str, Any], message: m.InboundMessage | None
) -> BounceAlert | None:
    if message is None:
        return None
    guardians: list[str] = []
    for guardian_id in payload.get("guardian_ids") or ():
        guardian = await get_guardian(store, int(guardian_id))
        if guardian is None:
            continue
        students = await Inbox(store).students_of_guardian(guardian.id)
        of = " " + _("(guardian of {students})", students=", ".join(students)) if students else ""
        guardians.append(f"{guardian.full_name}{of}")
    invoices: list[str] = []
    for notice_id in payload.get("notice_ids") or ():
        notice = await get_notice(store, int(notice_id))
        if notice is None or notice.invoice_id is None:
            continue
        invoice = await store.invoices.get(notice.invoice_id)
        if invoice is not None and invoice.number not in invoices:
            invoices.append(invoice.number)
    return BounceAlert(
        addresses=tuple(str(a) for a in payload.get("addresses") or ()),
        guardians=tuple(guardians),
        invoices=tuple(invoices),
        subject=message.subject,
        received_at=message.received_at,
    )
