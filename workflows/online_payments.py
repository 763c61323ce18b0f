"""Rules for paying an invoice online (Stripe Checkout): the amount a family may pay, what a
provider's payment does to an invoice, and whether a signed webhook is fresh enough to trust.

Plain functions over plain values; the web routes and the store call them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from workflows.errors import ValidationError
from workflows.i18n import DEFAULT_LANGUAGE, N_, format_money, staff_reading, translations
from workflows.invoices import InvoiceStatus
from workflows.money import MAX_AMOUNT_CENTS, format_cents, parse_amount

# Stripe refuses a USD charge under $0.50.
STRIPE_MINIMUM_CENTS = 50
# A second click on Pay within this window goes to the checkout the first click opened.
CHECKOUT_REUSE_WINDOW = timedelta(minutes=10)
STRIPE_SOURCE = "stripe"
STRIPE_ACTOR = "Online payments (Stripe)"


class Outcome(StrEnum):
    """What a provider's event did (`payment_events.outcome`)."""

    APPLIED = "applied"
    IGNORED = "ignored"
    UNMATCHED = "unmatched"
    EXCESS = "excess"
    REJECTED = "rejected"


class CheckoutStatus(StrEnum):
    OPEN = "open"
    PAID = "paid"
    EXPIRED = "expired"
    FAILED = "failed"


# --- what a family may pay -----------------------------------------------------------------


class PayAmountProblem(ValidationError):
    """A Pay form the page can't act on; `code` names it (and picks its translation)."""

    def __init__(self, code: str, message: str, **amounts: int) -> None:
        super().__init__(message, field="amount")
        self.code = code
        self.amounts = amounts  # cents the message names, for the translations


# What each problem says to a family reading another language, by code, as English msgids
# for the catalogues (workflows.i18n); {typed}, {balance} and {minimum} are dollar amounts. The
# English page shows the problem's own message, which may say more (parse_amount's reasons).
PAY_PROBLEMS = {
    "cancelled": N_("This invoice was cancelled; there is nothing to pay."),
    "nothing_owed": N_("This invoice is already paid in full."),
    "amount_invalid": N_("Enter the amount in dollars, for example 25.00."),
    "amount_zero": N_("Enter an amount more than $0.00."),
    "amount_over_balance": N_("{typed} is more than the {balance} still owed on this invoice."),
    "amount_below_minimum": N_(
        "Online payments must be at least {minimum}; please pay a smaller balance another way."
    ),
    "unavailable": N_(
        "Online payment is unavailable right now. Nothing was charged; please try again in a "
        "few minutes, or pay another way."
    ),
}


def translated_pay_problem(code: str, amounts: dict[str, int], english: str, language: str) -> str:
    """A Pay-form problem in `language`; the English message when it has no translation."""
    template = PAY_PROBLEMS.get(code)
    if template is None:
        return english
    translated = translations(language).gettext(template)
    if translated == template:
        return english
    return translated.format(
        **{name: format_money(cents, language) for name, cents in amounts.items()}
    )


def choose_pay_amount(text: str | None, *, balance_cents: int, status: str) -> int:
    """The cents to charge: the whole balance when `text` is empty, else the dollars typed.

    Refuses anything unreadable, zero or negative, with more than two decimals, more than
    is owed, or under the card processor's minimum.
    """
    if status == InvoiceStatus.CANCELLED:
        raise PayAmountProblem("cancelled", "This invoice was cancelled; there is nothing to pay.")
    if balance_cents <= 0:
        raise PayAmountProblem("nothing_owed", "This invoice is already paid in full.")
    typed = (text or "").strip()
    if not typed:
        cents = balance_cents
    else:
        try:
            # A family reads this, not staff: the English page shows parse_amount's own reason
            # in English (other languages read PAY_PROBLEMS), whatever the staff language.
            with staff_reading(DEFAULT_LANGUAGE):
                cents = parse_amount(typed)
        except ValidationError as exc:
            raise PayAmountProblem("amount_invalid", exc.message) from exc
        if cents <= 0:
            raise PayAmountProblem("amount_zero", "Enter an amount more than $0.00.")
        if cents > balance_cents:
            raise PayAmountProblem(
                "amount_over_balance",
                f"{format_cents(cents)} is more than the {format_cents(balance_cents)} still "
                "owed on this invoice.",
                typed=cents,
                balance=balance_cents,
            )
    if cents < STRIPE_MINIMUM_CENTS:
        raise PayAmountProblem(
            "amount_below_minimum",
            f"Online payments must be at least {format_cents(STRIPE_MINIMUM_CENTS)}; "
            "please pay a smaller balance another way.",
            minimum=STRIPE_MINIMUM_CENTS,
        )
    return cents


# --- the Checkout Session we ask for -------------------------------------------------------


@dataclass(frozen=True)
class CheckoutRequest:
    invoice_id: int
    invoice_number: str
    guardian_id: int
    guardian_email: str | None
    amount_cents: int
    currency: str
    page_url: str  # the family page the link opened: Stripe sends the family back there


def checkout_session_params(req: CheckoutRequest) -> dict[str, Any]:
    """The body of `POST /v1/checkout/sessions` for one invoice payment."""
    metadata = {
        "invoice_id": str(req.invoice_id),
        "invoice_number": req.invoice_number,
        "guardian_id": str(req.guardian_id),
        "amount_cents": str(req.amount_cents),
    }
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": req.currency,
                    "unit_amount": req.amount_cents,
                    "product_data": {"name": f"Invoice {req.invoice_number}"},
                },
            }
        ],
        "client_reference_id": str(req.invoice_id),
        "metadata": metadata,
        # Copied onto the charge too, so Stripe's dashboard shows the invoice on the payment.
        "payment_intent_data": {"metadata": metadata},
        "success_url": f"{req.page_url}?paid={req.invoice_number}",
        "cancel_url": f"{req.page_url}?cancelled=1",
    }
    if req.guardian_email:
        params["customer_email"] = req.guardian_email
    return params


def checkout_idempotency_key(req: CheckoutRequest, now: datetime) -> str:
    """The same for clicks on the same link, invoice and amount within one reuse window, so a
    double-click that races past the stored checkout still gets Stripe's one session."""
    window = int(now.timestamp() // CHECKOUT_REUSE_WINDOW.total_seconds())
    link = hashlib.sha256(req.page_url.encode()).hexdigest()[:16]
    return f"devicecare-checkout-{req.invoice_id}-{req.amount_cents}-{link}-{window}"


# --- webhooks -------------------------------------------------------------------------------


def webhook_age_problem(signed_at: int, now: datetime, tolerance_seconds: int) -> str | None:
    """Why a signature made at `signed_at` (Unix seconds) can't be trusted now, or None.

    Both directions count: an old one may be a captured request replayed, and one from the
    future means a clock is wrong enough that age can't be judged.
    """
    age = now.timestamp() - signed_at
    if age > tolerance_seconds:
        return f"signed {int(age)} s ago, more than the {tolerance_seconds} s allowed"
    if -age > tolerance_seconds:
        return f"signed {int(-age)} s in the future, more than the {tolerance_seconds} s allowed"
    return None


PAYING_EVENTS = frozenset(
    {"checkout.session.completed", "checkout.session.async_payment_succeeded"}
)
ENDING_EVENTS = {
    "checkout.session.expired": CheckoutStatus.EXPIRED,
    "checkout.session.async_payment_failed": CheckoutStatus.FAILED,
}
HANDLED_EVENTS = PAYING_EVENTS | frozenset(ENDING_EVENTS)


@dataclass(frozen=True)
class CheckoutEvent:
    """The parts of a `checkout.session.*` event that decide what happens."""

    event_id: str
    kind: str
    session_id: str
    payment_status: str  # paid / unpaid / no_payment_required
    amount_cents: int
    currency: str
    invoice_id: int | None  # from the metadata we set, else client_reference_id
    guardian_id: int | None
    payment_intent: str | None
    payer: str | None  # the name or email the payer gave Stripe

    @property
    def pays(self) -> bool:
        return self.kind in PAYING_EVENTS and self.payment_status == "paid"


class MalformedEvent(ValueError):
    """A signed body that isn't a Stripe event we can read."""


def _int_or_none(value: Any) -> int | None:
    text = str(value).strip() if value is not None else ""
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 12 else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value.strip()[:200] or None if isinstance(value, str) else None


def read_checkout_event(event: Any) -> CheckoutEvent | None:
    """A checkout event's facts; None for event types we don't act on."""
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise MalformedEvent("not a Stripe event")
    kind = event.get("type")
    if not isinstance(kind, str):
        raise MalformedEvent("an event type that is not text")
    if kind not in HANDLED_EVENTS:
        return None
    obj = _dict(_dict(event.get("data")).get("object"))
    if not isinstance(obj.get("id"), str):
        raise MalformedEvent(f"{kind} without a checkout session")
    amount = obj.get("amount_total")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise MalformedEvent(f"{kind} without a whole amount_total")
    if amount > MAX_AMOUNT_CENTS:  # Stripe takes far less; the column takes 64 bits at most
        raise MalformedEvent(f"{kind} with an amount_total past {format_cents(MAX_AMOUNT_CENTS)}")
    metadata = _dict(obj.get("metadata"))
    details = _dict(obj.get("customer_details"))
    intent = obj.get("payment_intent")
    if isinstance(intent, dict):  # expanded
        intent = intent.get("id")
    return CheckoutEvent(
        event_id=event["id"],
        kind=str(kind),
        session_id=obj["id"],
        payment_status=str(obj.get("payment_status") or ""),
        amount_cents=amount,
        currency=str(obj.get("currency") or "").lower(),
        invoice_id=_int_or_none(metadata.get("invoice_id"))
        or _int_or_none(obj.get("client_reference_id")),
        guardian_id=_int_or_none(metadata.get("guardian_id")),
        payment_intent=intent if isinstance(intent, str) else None,
        payer=_text(details.get("name"))
        or _text(details.get("email"))
        or _text(obj.get("customer_email")),
    )


# --- what a payment does to an invoice ------------------------------------------------------


@dataclass(frozen=True)
class PaymentSplit:
    applied_cents: int  # recorded against the invoice
    excess_cents: int  # received but not owed: to refund or credit

    @property
    def outcome(self) -> Outcome:
        return Outcome.EXCESS if self.excess_cents else Outcome.APPLIED


def split_online_payment(amount_cents: int, *, balance_cents: int, status: str) -> PaymentSplit:
    """Money already taken by the provider: apply what the invoice still owes, and name the
    rest so staff refund it (never dropped, never an overpayment on the invoice)."""
    owed = 0 if status == InvoiceStatus.CANCELLED else max(balance_cents, 0)
    applied = min(amount_cents, owed)
    return PaymentSplit(applied, amount_cents - applied)


def paid_online_text(*, amount_cents: int, payer: str, reference: str, balance_cents: int) -> str:
    return (
        f"Paid online: {format_cents(amount_cents)} by {payer} (Stripe, ref {reference}). "
        f"Balance now {format_cents(balance_cents)}."
    )


def excess_alert_text(
    *, invoice_number: str, received_cents: int, excess_cents: int, reason: str, reference: str
) -> str:
    return (
        f"Stripe payment of {format_cents(received_cents)} for invoice {invoice_number} "
        f"(ref {reference}) {reason}: {format_cents(excess_cents)} needs a refund or credit "
        "in Stripe."
    )


def unmatched_alert_text(*, received_cents: int, session_id: str, reference: str) -> str:
    return (
        f"Stripe payment of {format_cents(received_cents)} (checkout {session_id}, ref "
        f"{reference}) names no invoice we know. Find the family in Stripe and record or "
        "refund it."
    )
