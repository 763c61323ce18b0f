"""Links into a school payment portal that has no API (RevTrak, MySchoolBucks, SchoolCash, ...).

The district configures a URL template; the page and the emails fill it per invoice so the family
lands on the right item with the amount filled in where the portal accepts it.
"""

from __future__ import annotations

import string
from urllib.parse import quote

from workflows.errors import ValidationError
from workflows.i18n import _
from workflows.money import to_decimal

PLACEHOLDERS = frozenset({"invoice_number", "amount", "amount_cents", "student_id", "student_name"})


def check_portal_template(template: str) -> None:
    """Refuse a template with unknown placeholders or one that is not an http(s) address."""
    if not template.startswith(("https://", "http://")):
        raise ValidationError(_("The payment portal address must start with https://"))
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValidationError(
            _("The payment portal address has a broken placeholder: {exc}", exc=exc)
        ) from exc
    unknown = fields - PLACEHOLDERS
    if unknown:
        raise ValidationError(
            _(
                "Unknown placeholder(s) in the payment portal address: {unknown}; use {known}",
                unknown=", ".join(sorted("{" + name + "}" for name in unknown)),
                known=", ".join(sorted("{" + name + "}" for name in PLACEHOLDERS)),
            )
        )


def portal_url(
    template: str,
    *,
    invoice_number: str,
    amount_cents: int,
    student_id: str,
    student_name: str,
) -> str:
    """The portal address for one invoice; every value is URL-encoded."""
    check_portal_template(template)
    values = {
        "invoice_number": invoice_number,
        "amount": f"{to_decimal(amount_cents):.2f}",
        "amount_cents": str(amount_cents),
        "student_id": student_id,
        "student_name": student_name,
    }
    return template.format(**{key: quote(value, safe="") for key, value in values.items()})
