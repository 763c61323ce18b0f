"""What a person reads for each stored id: incident flags, statuses, payment methods and kinds.

Ids such as `physical_damage` or `in_repair` are for the database, CSV files and forms' values;
every message, card, modal and report summary shows these labels instead."""

from __future__ import annotations

from collections.abc import Iterable

# Plain string keys and no workflow imports, so any module can use labels (the enums'
# `.label` properties read these tables too).

INCIDENT_FLAGS: dict[str, str] = {
    "physical_damage": "Physical Damage",
    "screen": "Screen",
    "battery": "Battery",
    "keyboard": "Keyboard",
    "charger": "Charger",
    "wireless": "Wireless",
    "water": "Liquid Damage",
    "lost": "Lost",
    "stolen": "Stolen",
    "other": "Other",
}
NO_FLAGS = "No type"

INCIDENT_STATUSES: dict[str, str] = {
    "open": "Open",
    "in_repair": "In Repair",
    "awaiting_parts": "Awaiting Parts",
    "vendor_repair": "Vendor Repair",
    "insurance_claim": "Insurance Claim",
    "ready_for_pickup": "Ready for Pickup",
    "closed": "Closed",
}

INVOICE_STATUSES: dict[str, str] = {
    "unpaid": "Unpaid",
    "first": "1st Notice",
    "second": "2nd Notice",
    "final": "Final Notice",
    "collections": "Collections",
    "paid": "Paid",
    "cancelled": "Cancelled",
}

INVOICE_KINDS: dict[str, str] = {
    "incident": "Damage or loss",
    "premium": "Insurance premium",
    "fee": "Fee",
    "collection": "Device collection",
}

PAYMENT_METHODS: dict[str, str] = {
    "check": "Check",
    "cash": "Cash",
    "card": "Card",
    "online": "Online payment",
}

DEVICE_STATUSES: dict[str, str] = {
    "in_service": "In service",
    "replaced": "Replaced",
    "retired": "Retired",
    "collected": "Collected",
}

DECISIONS: dict[str, str] = {
    "pending": "Pending",
    "approved": "Approved",
    "denied": "Denied",
    "applied": "Approved",  # an approved waiver or refund is applied at once
    "confirmed": "Confirmed",
    "rejected": "Rejected",
}

ADJUSTMENT_KINDS: dict[str, str] = {
    "waiver": "Waiver",
    "refund": "Refund",
}


def humanize(value: str) -> str:
    """The fallback for an id without a label (a district's own flag, say): `water_bottle`
    reads "Water bottle"."""
    words = " ".join(value.replace("_", " ").replace("-", " ").split())
    return words[:1].upper() + words[1:]


def flag_label(flag: str) -> str:
    """A known incident flag's name ("Physical Damage"), or a district's own flag humanized."""
    return INCIDENT_FLAGS.get(flag) or humanize(flag).title()


def flags_text(flags: Iterable[str], empty: str = NO_FLAGS) -> str:
    """Several flags for one line: "Screen, Liquid Damage"."""
    return ", ".join(flag_label(f) for f in flags) or empty


def incident_status_label(status: str) -> str:
    return INCIDENT_STATUSES.get(status) or humanize(status)


def invoice_status_label(status: str) -> str:
    return INVOICE_STATUSES.get(status) or humanize(status)


def invoice_kind_label(kind: str) -> str:
    return INVOICE_KINDS.get(kind) or humanize(kind)


def payment_method_label(method: str) -> str:
    """ "Check", "Cash", "Card", "Online payment"; lower-case it inside a sentence."""
    return PAYMENT_METHODS.get(method) or humanize(method)


def device_status_label(status: str) -> str:
    return DEVICE_STATUSES.get(status) or humanize(status)


def decision_label(status: str) -> str:
    """Where a request for an override, waiver, refund or payment stands."""
    return DECISIONS.get(status) or humanize(status)


def adjustment_kind_label(kind: str) -> str:
    return ADJUSTMENT_KINDS.get(kind) or humanize(kind)
