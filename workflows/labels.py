"""What a person reads for each stored id: incident flags, statuses, payment methods and kinds.

Ids such as `physical_damage` or `in_repair` are for the database, CSV files and forms' values;
every message, card, modal and report summary shows these labels instead."""

from __future__ import annotations

from collections.abc import Iterable

from workflows.i18n import N_, _

# Plain string keys and no workflow imports but i18n, so any module can use labels (the enums'
# `.label` properties read these tables too). The tables keep the English msgids; the functions
# below give them in the staff language.

INCIDENT_FLAGS: dict[str, str] = {
    "physical_damage": N_("Physical Damage"),
    "screen": N_("Screen"),
    "battery": N_("Battery"),
    "keyboard": N_("Keyboard"),
    "charger": N_("Charger"),
    "wireless": N_("Wireless"),
    "water": N_("Liquid Damage"),
    "lost": N_("Lost"),
    "stolen": N_("Stolen"),
    "other": N_("Other"),
}
NO_FLAGS = N_("No type")

INCIDENT_STATUSES: dict[str, str] = {
    "open": N_("Open"),
    "in_repair": N_("In Repair"),
    "awaiting_parts": N_("Awaiting Parts"),
    "vendor_repair": N_("Vendor Repair"),
    "insurance_claim": N_("Insurance Claim"),
    "ready_for_pickup": N_("Ready for Pickup"),
    "closed": N_("Closed"),
}

INVOICE_STATUSES: dict[str, str] = {
    "unpaid": N_("Unpaid"),
    "first": N_("1st Notice"),
    "second": N_("2nd Notice"),
    "final": N_("Final Notice"),
    "collections": N_("Collections"),
    "paid": N_("Paid"),
    "cancelled": N_("Cancelled"),
}

INVOICE_KINDS: dict[str, str] = {
    "incident": N_("Damage or loss"),
    "premium": N_("Insurance premium"),
    "fee": N_("Fee"),
    "collection": N_("Device collection"),
}

PAYMENT_METHODS: dict[str, str] = {
    "check": N_("Check"),
    "cash": N_("Cash"),
    "card": N_("Card"),
    "online": N_("Online payment"),
}

DEVICE_STATUSES: dict[str, str] = {
    "in_service": N_("In service"),
    "replaced": N_("Replaced"),
    "retired": N_("Retired"),
    "collected": N_("Collected"),
}

DECISIONS: dict[str, str] = {
    "pending": N_("Pending"),
    "approved": N_("Approved"),
    "denied": N_("Denied"),
    "applied": N_("Approved"),  # an approved waiver or refund is applied at once
    "confirmed": N_("Confirmed"),
    "rejected": N_("Rejected"),
}

ADJUSTMENT_KINDS: dict[str, str] = {
    "waiver": N_("Waiver"),
    "refund": N_("Refund"),
}


def _read(label: str | None) -> str:
    """A table's English label in the staff language ("" when there is none)."""
    return _(label) if label else ""


def humanize(value: str) -> str:
    """The fallback for an id without a label (a district's own flag, say): `water_bottle`
    reads "Water bottle"."""
    words = " ".join(value.replace("_", " ").replace("-", " ").split())
    return words[:1].upper() + words[1:]


def flag_label(flag: str) -> str:
    """A known incident flag's name ("Physical Damage"), or a district's own flag humanized."""
    return _read(INCIDENT_FLAGS.get(flag)) or humanize(flag).title()


def flags_text(flags: Iterable[str], empty: str = NO_FLAGS) -> str:
    """Several flags for one line: "Screen, Liquid Damage"."""
    return ", ".join(flag_label(f) for f in flags) or _(empty)


def incident_status_label(status: str) -> str:
    return _read(INCIDENT_STATUSES.get(status)) or humanize(status)


def invoice_status_label(status: str) -> str:
    return _read(INVOICE_STATUSES.get(status)) or humanize(status)


def invoice_kind_label(kind: str) -> str:
    return _read(INVOICE_KINDS.get(kind)) or humanize(kind)


def payment_method_label(method: str) -> str:
    """ "Check", "Cash", "Card", "Online payment"; lower-case it inside a sentence."""
    return _read(PAYMENT_METHODS.get(method)) or humanize(method)


def device_status_label(status: str) -> str:
    return _read(DEVICE_STATUSES.get(status)) or humanize(status)


def decision_label(status: str) -> str:
    """Where a request for an override, waiver, refund or payment stands."""
    return _read(DECISIONS.get(status)) or humanize(status)


def adjustment_kind_label(kind: str) -> str:
    return _read(ADJUSTMENT_KINDS.get(kind)) or humanize(kind)
