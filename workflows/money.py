"""Money helpers. Amounts live as int cents everywhere; Decimal only appears at these edges."""

import re
from decimal import ROUND_HALF_UP, Decimal

from workflows.errors import ValidationError
from workflows.i18n import _

MAX_AMOUNT_CENTS = 10_000_000_00

# Either properly grouped thousands ("1,234,567") or a plain digit run; fraction checked later
# so that "1.234" gets a precise message instead of a generic one.
_AMOUNT_RE = re.compile(r"(?P<whole>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]*)(?:\.(?P<frac>[0-9]*))?")
_MINUS_SIGNS = ("-", "\u2212")
_SHOWN_MAX = 30


def _shown(text: str) -> str:
    # Echo the input back so the user sees what was rejected, but never a wall of text.
    if len(text) > _SHOWN_MAX:
        text = text[: _SHOWN_MAX - 1] + "\u2026"
    return f'"{text}"'


def parse_amount(text: str, *, field: str = "amount") -> int:
    """Parse a human-typed dollar amount ("125", "$1,234.56", " 29.00 ") into cents."""
    stripped = text.strip()
    if not stripped:
        raise ValidationError(_("Enter an amount, for example 25.00."), field=field)
    shown = _shown(stripped)

    body = stripped
    negative = False
    # Accept the sign before or after the dollar sign ("-$5", "$-5") only to reject it clearly.
    for _pass in range(2):
        if body.startswith(_MINUS_SIGNS):
            negative = True
            body = body[1:].lstrip()
        elif body.startswith("$"):
            body = body[1:].lstrip()

    match = _AMOUNT_RE.fullmatch(body)
    if match is None or not any(ch.isdigit() for ch in body):
        raise ValidationError(
            _("{shown} isn't a valid amount; use a form like 25.00.", shown=shown), field=field
        )
    if negative:
        raise ValidationError(
            _("{shown} is negative; amounts can't be below zero.", shown=shown), field=field
        )

    digits = match.group("whole").replace(",", "").lstrip("0")
    fraction = match.group("frac") or ""
    if len(fraction) > 2:
        raise ValidationError(
            _("{shown} has more than two decimal places.", shown=shown), field=field
        )
    # Check the length before int() so enormous inputs can't hit Python's digit limit.
    if len(digits) > len(str(MAX_AMOUNT_CENTS // 100)):
        raise _too_large(shown, field)
    cents = int(digits or "0") * 100 + int(fraction.ljust(2, "0"))
    if cents > MAX_AMOUNT_CENTS:
        raise _too_large(shown, field)
    return cents


def _too_large(shown: str, field: str) -> ValidationError:
    limit = format_cents(MAX_AMOUNT_CENTS)
    message = _("{shown} is more than the largest allowed amount, {max}.", shown=shown, max=limit)
    return ValidationError(message, field=field)


def format_cents(cents: int) -> str:
    """Render cents as dollars: 123456 -> "$1,234.56", -500 -> "-$5.00"."""
    sign = "-" if cents < 0 else ""
    dollars, rest = divmod(abs(cents), 100)
    return f"{sign}${dollars:,}.{rest:02d}"


def to_decimal(cents: int) -> Decimal:
    """Cents as a Decimal dollar value, for exports and payment processors."""
    return Decimal(cents).scaleb(-2)


def percent_of(cents: int, percent: Decimal) -> int:
    """cents x percent / 100, rounded half-up to the whole cent."""
    pct = Decimal(percent)
    if not pct.is_finite():
        raise ValidationError(
            _("{percent} isn't a usable percentage.", percent=percent), field="percent"
        )
    value = Decimal(cents) * pct / 100
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))
