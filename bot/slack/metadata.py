"""Typed values for buttons and modals' private_metadata, signed so they can't be altered.

Slack signs each request, but the values inside are ours: signing them with SECRET_KEY means a
value edited anywhere on the way (or crafted from scratch) is refused before it is parsed.
Values signed with a key in SECRET_KEY_PREVIOUS still verify, so a rotation breaks no button.
"""

from __future__ import annotations

import base64
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.signing import Keys, as_keys, hmac_signature
from workflows.errors import DomainError
from workflows.i18n import _

VERSION = "v1"
M = TypeVar("M", bound="Payload")


class ForgedPayload(DomainError):
    """A button value or modal metadata that DeviceCare did not write."""


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OpenedFrom(Payload):
    """A modal's private_metadata: who opened it, and the channel its answer goes to. Each
    modal has its own subclass, since a value packed for one doesn't unpack as another."""

    user_id: str
    channel_id: str | None = None


def _sign(secret: str, data: str) -> str:
    return hmac_signature(data, secret, 16)


def pack(model: Payload, keys: Keys) -> str:
    data = base64.urlsafe_b64encode(model.model_dump_json().encode()).decode().rstrip("=")
    body = f"{VERSION}.{type(model).__name__}.{data}"
    return f"{body}.{_sign(as_keys(keys).current, body)}"


def unpack(cls: type[M], text: str | None, keys: Keys) -> M:
    refused = ForgedPayload(
        _("That button or form didn't come from DeviceCare; nothing was changed.")
    )
    if not isinstance(text, str):  # a value from outside may be any JSON type
        raise refused
    try:
        version, name, data, signature = text.split(".")
    except ValueError:
        raise refused from None
    body = f"{version}.{name}.{data}"
    if version != VERSION or name != cls.__name__:
        raise refused
    # The signature is exactly one we wrote (one spelling; the body it covers is compared whole).
    if not as_keys(keys).accepts(signature, lambda key: _sign(key, body)):
        raise refused
    try:
        raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        return cls.model_validate_json(raw)
    except (ValueError, ValidationError):
        raise refused from None
