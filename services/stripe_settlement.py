"""Settling a family's Stripe Checkout: a verified event applied to the invoice it pays.

Applying takes the event once, by its id, in the same transaction as the payment it records,
the receipt it queues and the Slack posts it causes; a replayed event, or a second event about
the same checkout, changes nothing. Money that doesn't fit the invoice (paid already, cancelled,
more than owed, no invoice at all) is never dropped: the event says so and the billing channel
is told what to refund. The HTTP route that verifies and keeps the events is
bot/web/stripe_webhooks.py; the outbox worker hands them here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from storage.db_errors import DuplicateRow
from storage.online_payments import (
    checkout_by_session,
    claim_event,
    guardian_by_id,
    lock_invoice,
    new_checkout,
    queue_payment_alert,
    queue_payment_post,
    record_event_outcome,
)
from storage.uow import SqlUnitOfWork, UnitOfWorkFactory
from workflows.clock import Clock
from workflows.errors import DuplicateReference
from workflows.i18n import _
from workflows.invoices import InvoiceStatus, balance_of
from workflows.money import format_cents
from workflows.online_payments import (
    ENDING_EVENTS,
    STRIPE_ACTOR,
    STRIPE_SOURCE,
    CheckoutEvent,
    CheckoutStatus,
    Outcome,
    excess_alert_text,
    paid_online_text,
    split_online_payment,
    unmatched_alert_text,
)
from workflows.payments import PaymentMethod, RecordPayment, record_payment
from workflows.permissions import Actor
from workflows.ports import Context, InvoiceRecord

log = logging.getLogger("devicecare.stripe")

REPLAY = "replay"
# A unique key another transaction took first (an outbox alert, a checkout row): the retry
# sees its commit and does the right thing.
ATTEMPTS = 3


@dataclass
class Handled:
    outcome: str  # an Outcome, or "replay"
    detail: str = ""
    invoice_id: int | None = None
    payment_id: int | None = None


class StripeSettlement:
    """Applies verified Stripe Checkout events to the invoices they pay, each event once."""

    def __init__(
        self, stores: UnitOfWorkFactory, clock: Clock, tz: ZoneInfo, *, currency: str
    ) -> None:
        self.stores = stores
        self.clock = clock
        self.tz = tz
        self.currency = currency.lower()

    async def apply(self, event: CheckoutEvent) -> Handled:
        """Take the event once and do what it says, all in one transaction."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await _apply_once(self, event)
            except DuplicateRow:
                if attempt == ATTEMPTS:
                    raise
                log.info("stripe event %s met a concurrent change; retrying", event.event_id)
        raise AssertionError("unreachable")


async def _apply_once(settlement: StripeSettlement, event: CheckoutEvent) -> Handled:
    now = settlement.clock.now()
    async with settlement.stores() as store:
        row_id = await claim_event(
            store.session,
            source=STRIPE_SOURCE,
            event_id=event.event_id,
            kind=event.kind,
            amount_cents=event.amount_cents,
            now=now,
        )
        if row_id is None:
            await store.commit()
            return Handled(REPLAY)
        handled = await _settle(settlement, store, event)
        await record_event_outcome(
            store.session,
            row_id,
            outcome=handled.outcome,
            detail=f"checkout {event.session_id}: {handled.detail}",
            invoice_id=handled.invoice_id,
            payment_id=handled.payment_id,
        )
        await store.commit()
        return handled


async def _settle(
    settlement: StripeSettlement, store: SqlUnitOfWork, event: CheckoutEvent
) -> Handled:
    session = store.session
    now = settlement.clock.now()
    invoice_id = event.invoice_id
    if invoice_id is None:
        started = await checkout_by_session(session, event.session_id)
        invoice_id = None if started is None else started.invoice_id
    # The invoice lock serialises every event about it; what is read after it is current.
    invoice = None if invoice_id is None else await lock_invoice(store, invoice_id)
    checkout = await checkout_by_session(session, event.session_id, fresh=True)
    on_invoice = None if invoice is None else invoice.id

    ending = ENDING_EVENTS.get(event.kind)
    if ending is not None:
        if checkout is None or checkout.status != CheckoutStatus.OPEN:
            return Handled(Outcome.IGNORED, f"{ending.value}; no open checkout", on_invoice)
        checkout.status = ending.value
        checkout.completed_at = now
        return Handled(Outcome.APPLIED, f"checkout {ending.value}; nothing was paid", on_invoice)
    if not event.pays:
        status = event.payment_status or "missing"
        return Handled(Outcome.IGNORED, f"payment status {status}", on_invoice)
    if event.amount_cents <= 0:
        return Handled(Outcome.IGNORED, "nothing was charged", on_invoice)

    reference = event.payment_intent or event.session_id
    if invoice is None:
        await queue_payment_alert(
            store,
            key=event.session_id,
            text=unmatched_alert_text(
                received_cents=event.amount_cents, session_id=event.session_id, reference=reference
            ),
        )
        return Handled(Outcome.UNMATCHED, f"no invoice #{invoice_id or '?'}")

    currency = settlement.currency
    if event.currency != currency:
        reason = (
            _("was in {got}, not {expected}", got=event.currency.upper(), expected=currency.upper())
            if event.currency
            else _("was in no currency, not {expected}", expected=currency.upper())
        )
        await _alert_excess(store, event, invoice, event.amount_cents, reason)
        return Handled(Outcome.REJECTED, f"currency {event.currency or 'missing'}", on_invoice)

    # The first paying event marks the checkout paid (creating its row if the Pay button
    # didn't), in the same commit as the payment: a later event about it finds that here.
    if checkout is not None and checkout.status == CheckoutStatus.PAID:
        return Handled(
            Outcome.IGNORED,
            "this checkout was settled by an earlier event",
            on_invoice,
            checkout.payment_id,
        )

    split = split_online_payment(
        event.amount_cents, balance_cents=balance_of(invoice), status=invoice.status
    )
    actor = Actor.system(STRIPE_ACTOR)
    payment_id: int | None = None
    if split.applied_cents:
        try:
            recorded = await record_payment(
                Context(store, settlement.clock, settlement.tz),
                actor,
                RecordPayment(
                    invoice_id=invoice.id,
                    amount_cents=split.applied_cents,
                    method=PaymentMethod.ONLINE,
                    idempotency_key=f"stripe:{event.session_id}",
                    reference=reference,
                ),
            )
        except DuplicateReference as exc:
            # Staff recorded this Stripe payment by hand first: it is not applied again, and
            # answering 200 stops Stripe redelivering it.
            return Handled(Outcome.IGNORED, exc.message, on_invoice)
        payment_id = recorded.payment.id
        await queue_payment_post(
            store,
            invoice_id=invoice.id,
            payment_id=payment_id,
            text=paid_online_text(
                amount_cents=split.applied_cents,
                payer=await _payer(store, event),
                reference=reference,
                balance_cents=balance_of(invoice),
            ),
        )
    if split.excess_cents:
        if invoice.status == InvoiceStatus.CANCELLED:
            reason = _("arrived after the invoice was cancelled")
        elif split.applied_cents:
            reason = _(
                "was more than the balance; {amount} was applied",
                amount=format_cents(split.applied_cents),
            )
        else:
            reason = _("arrived after the invoice was paid in full")
        await _alert_excess(store, event, invoice, split.excess_cents, reason)
        await store.activity.log(
            actor,
            "invoice",
            invoice.id,
            "online_payment_excess",
            after={
                "received_cents": event.amount_cents,
                "applied_cents": split.applied_cents,
                "excess_cents": split.excess_cents,
                "reference": reference,
            },
        )
    if checkout is None:
        checkout = new_checkout(
            session_id=event.session_id,
            invoice_id=invoice.id,
            guardian_id=event.guardian_id if await _guardian_exists(store, event) else None,
            amount_cents=event.amount_cents,
            url=None,
            now=now,
            status=CheckoutStatus.PAID,
        )
        session.add(checkout)
    checkout.status = CheckoutStatus.PAID
    checkout.completed_at = now
    checkout.payment_id = payment_id
    detail = f"applied {split.applied_cents} cents"
    if split.excess_cents:
        detail += f", {split.excess_cents} cents to refund"
    return Handled(split.outcome, detail, on_invoice, payment_id)


async def _alert_excess(
    store: SqlUnitOfWork,
    event: CheckoutEvent,
    invoice: InvoiceRecord,
    excess_cents: int,
    reason: str,
) -> None:
    """Staff are told of money that came in but was not applied, so they can refund it."""
    await queue_payment_alert(
        store,
        key=event.session_id,
        invoice_id=invoice.id,
        text=excess_alert_text(
            invoice_number=invoice.number,
            received_cents=event.amount_cents,
            excess_cents=excess_cents,
            reason=reason,
            reference=event.payment_intent or event.session_id,
        ),
    )


async def _guardian_exists(store: SqlUnitOfWork, event: CheckoutEvent) -> bool:
    return event.guardian_id is not None and (
        await guardian_by_id(store.session, event.guardian_id) is not None
    )


async def _payer(store: SqlUnitOfWork, event: CheckoutEvent) -> str:
    if event.guardian_id is not None:
        guardian = await guardian_by_id(store.session, event.guardian_id)
        if guardian is not None:
            return guardian.full_name
    return event.payer or _("a family")
