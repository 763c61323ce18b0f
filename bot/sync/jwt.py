"""Compact JWS for the sources' sign-in assertions (RFC 7515): the two encoded parts and the
signature, whichever algorithm signs them (Apple's ES256, Google's RS256)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signed_jwt(
    header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]
) -> str:
    """`header.claims.signature`, where `sign` turns the signing input into the JWS signature."""
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    return f"{signing_input}.{b64url(sign(signing_input.encode('ascii')))}"
