"""Kinds of fee schedule items, and which form offers which kind.

The schedule holds parts and fines billed after damage, what is charged when a device comes back
at collection, and so on. One part can sit on the schedule twice at two prices (a cracked screen
at collection is not a screen replaced after an incident), so each form offers only its kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Protocol, TypeVar

from workflows.errors import ValidationError
from workflows.i18n import N_, _


class FeeKind(StrEnum):
    DAMAGE = "damage"  # parts and fines billed on an incident's invoice
    COLLECTION = "collection"  # what is missing or damaged when a device is collected
    ANNUAL = "annual"  # recurring charges; kept on the schedule for reference, no form offers them
    OTHER = "other"  # anything else; no form offers it

    @property
    def label(self) -> str:
        return _(KIND_LABELS[self.value])

    @property
    def offered_on(self) -> str:
        """The form that offers items of this kind, as a person reads it."""
        return _(OFFERED_ON.get(self.value, NO_FORM))


# Where items of each kind are offered, and the kinds' names, in English (msgids): the
# properties above give them in the staff language.
OFFERED_ON: dict[str, str] = {
    "damage": N_("incident invoice"),
    "collection": N_("device collection"),
}
NO_FORM = N_("no form")
KIND_LABELS: dict[str, str] = {
    "damage": N_("Damage"),
    "collection": N_("Collection"),
    "annual": N_("Annual"),
    "other": N_("Other"),
}


def kind_label(value: str) -> str:
    """A stored kind as a person reads it; an unexpected value is shown as it is."""
    return FeeKind(value).label if value in FEE_KINDS else value


FEE_KINDS = tuple(kind.value for kind in FeeKind)

# What each kind was called before kinds were fixed (migration 0017 maps the stored rows).
_LEGACY = {
    "part": FeeKind.DAMAGE,
    "fine": FeeKind.DAMAGE,
    "damage": FeeKind.DAMAGE,
    "loss": FeeKind.DAMAGE,
    "collection": FeeKind.COLLECTION,
    "annual": FeeKind.ANNUAL,
    "fee": FeeKind.ANNUAL,
}


class HasKind(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def name(self) -> str: ...


K = TypeVar("K", bound=HasKind)


def parse_fee_kind(text: str | None) -> FeeKind:
    """A kind typed by a person: its value or label, any case; anything else is refused."""
    cleaned = (text or "").strip().casefold()
    for kind in FeeKind:
        if cleaned in (kind.value, KIND_LABELS[kind.value].casefold()):
            return kind
    raise ValidationError(
        _(
            "Unknown fee kind {text!r}; use one of: {fee_kinds}.",
            text=text,
            fee_kinds=", ".join(FEE_KINDS),
        ),
        field="kind",
    )


def kind_from_legacy(value: str | None) -> FeeKind:
    """The kind an item stored before kinds were fixed gets: parts and fines are damage fees."""
    return _LEGACY.get((value or "").strip().casefold(), FeeKind.OTHER)


def of_kind(items: Iterable[K], kind: FeeKind) -> list[K]:
    """The items a form for `kind` may offer."""
    return [item for item in items if item.kind == kind]


def require_kind(items: Iterable[HasKind], kind: FeeKind, *, what: str, field: str) -> None:
    """Refuse an item of another kind (a forged or stale form); `what` names the form."""
    for item in items:
        if item.kind != kind:
            other, wanted = kind_label(item.kind).lower(), kind.label.lower()
            raise ValidationError(
                _(
                    "\u201c{item}\u201d is a {other} fee; {what} takes {wanted} fees only.",
                    item=item.name,
                    other=other,
                    what=what,
                    wanted=wanted,
                ),
                field=field,
            )
