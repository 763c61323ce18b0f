"""Action, callback and block ids shared between features. Never loose strings."""

from __future__ import annotations

from enum import StrEnum

from bot.slack.metadata import Payload


class IncidentAction(StrEnum):
    """Buttons on the incident card (and in /incident and /device replies)."""

    CHANGE_STATUS = "incident.change_status"
    ADD_NOTE = "incident.add_note"
    ADD_PHOTOS = "incident.add_photos"
    CREATE_INVOICE = "incident.create_invoice"
    REPLACE_DEVICE = "incident.replace_device"
    REQUEST_OVERRIDE = "incident.request_override"
    CLOSE = "incident.close"


class IncidentRef(Payload):
    """The value of every incident-card button."""

    incident_id: int


class SlackPostKind(StrEnum):
    """What a `slack_posts` row points at."""

    INCIDENT_CARD = "incident_card"
    OVERRIDE_REQUEST = "override_request"
