"""Incident statuses, the workflow between them, and which roles may use restricted ones."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from workflows.errors import InvalidTransition, PermissionDenied, ValidationError
from workflows.i18n import _
from workflows.labels import INCIDENT_STATUSES

if TYPE_CHECKING:
    # Only for annotations: permissions imports this module for the role templates.
    from workflows.permissions import Actor


class IncidentStatus(StrEnum):
    OPEN = "open"
    IN_REPAIR = "in_repair"
    AWAITING_PARTS = "awaiting_parts"
    VENDOR_REPAIR = "vendor_repair"
    INSURANCE_CLAIM = "insurance_claim"
    READY_FOR_PICKUP = "ready_for_pickup"
    CLOSED = "closed"

    @property
    def label(self) -> str:
        return _(INCIDENT_STATUSES[self.value])


DEFAULT_RESTRICTED: frozenset[IncidentStatus] = frozenset(
    {IncidentStatus.AWAITING_PARTS, IncidentStatus.VENDOR_REPAIR, IncidentStatus.INSURANCE_CLAIM}
)

_S = IncidentStatus
TRANSITIONS: dict[IncidentStatus, frozenset[IncidentStatus]] = {
    _S.OPEN: frozenset(s for s in _S if s is not _S.OPEN),
    _S.IN_REPAIR: frozenset(
        {_S.AWAITING_PARTS, _S.VENDOR_REPAIR, _S.INSURANCE_CLAIM, _S.READY_FOR_PICKUP, _S.CLOSED}
    ),
    _S.AWAITING_PARTS: frozenset({_S.IN_REPAIR, _S.VENDOR_REPAIR, _S.CLOSED}),
    _S.VENDOR_REPAIR: frozenset({_S.IN_REPAIR, _S.READY_FOR_PICKUP, _S.CLOSED}),
    _S.INSURANCE_CLAIM: frozenset({_S.IN_REPAIR, _S.VENDOR_REPAIR, _S.READY_FOR_PICKUP, _S.CLOSED}),
    _S.READY_FOR_PICKUP: frozenset({_S.CLOSED, _S.IN_REPAIR}),
    _S.CLOSED: frozenset({_S.OPEN}),  # reopen when the same damage comes back
}


def may_use(actor: Actor, status: IncidentStatus, restricted: frozenset[str]) -> bool:
    """Whether the actor may see, pick or filter by `status` given the district's restrictions."""
    if status not in restricted:
        return True
    return actor.is_superadmin or status in actor.allowed_statuses


def visible_statuses(actor: Actor, restricted: frozenset[str]) -> list[IncidentStatus]:
    """Statuses to offer in pickers and filters, in workflow order."""
    return [s for s in IncidentStatus if may_use(actor, s, restricted)]


def next_statuses(
    actor: Actor, current: IncidentStatus, restricted: frozenset[str]
) -> list[IncidentStatus]:
    """Statuses the actor may move an incident to from `current`."""
    allowed = TRANSITIONS[current]
    return [s for s in IncidentStatus if s in allowed and may_use(actor, s, restricted)]


def check_transition(
    actor: Actor,
    current: IncidentStatus,
    target: IncidentStatus,
    restricted: frozenset[str],
) -> None:
    """Raise unless the actor may move an incident from `current` to `target`."""
    # Permission first, and without naming the status, so a hidden status stays hidden.
    if not may_use(actor, target, restricted):
        raise PermissionDenied(_("You can't move incidents to that status."), field="status")
    if target == current:
        raise InvalidTransition(
            _("The incident is already {target}.", target=target.label), field="status"
        )
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(
            _(
                "An incident can't go from {current} to {target}.",
                current=current.label,
                target=target.label,
            ),
            field="status",
        )


def check_filter(actor: Actor, status: IncidentStatus, restricted: frozenset[str]) -> None:
    """Raise if the actor asks to filter by a status their role can't see."""
    if not may_use(actor, status, restricted):
        raise PermissionDenied(_("You can't filter by that status."), field="status")


def _normalise(text: str) -> str:
    return "_".join(text.strip().lower().replace("-", " ").split())


_BY_NAME: dict[str, IncidentStatus] = {
    **{_normalise(INCIDENT_STATUSES[s.value]): s for s in IncidentStatus},
    **{s.value: s for s in IncidentStatus},
}


def parse_status(text: str) -> IncidentStatus:
    """Accept a status value ("awaiting_parts") or its label ("Awaiting Parts")."""
    status = _BY_NAME.get(_normalise(text))
    if status is None:
        shown = text.strip()[:40]
        raise ValidationError(
            _('"{shown}" isn\'t a known incident status.', shown=shown), field="status"
        )
    return status
