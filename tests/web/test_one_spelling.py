"""Every signed token has exactly one spelling, and https deployments send HSTS."""

from __future__ import annotations

import base64
from datetime import date

import pytest

from bot.family_links import LinkProblem, make_family_token, read_family_token
from bot.mail.tokens import make_reply_token, verify_reply_token
from bot.slack.metadata import ForgedPayload, Payload, pack, unpack
from storage.uow import UnitOfWorkFactory
from tests.web.conftest import WebFactory, WebHarness
from tests.web.family_data import add_family

SECRET = "one-spelling-secret"
TODAY = date(2026, 3, 2)


def _other_last_character(token: str) -> str:
    """The same signature bytes written with different spare bits in the last character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    signature = token.rsplit(".", 1)[1]
    padded = signature + "=" * (-len(signature) % 4)
    decoded = base64.urlsafe_b64decode(padded)
    index = alphabet.index(signature[-1])
    for other in alphabet:
        if other == signature[-1]:
            continue
        candidate = signature[:-1] + other
        if base64.urlsafe_b64decode(candidate + "=" * (-len(candidate) % 4)) == decoded:
            return token[: -len(signature)] + candidate
    raise AssertionError(f"no spare bits in {signature!r} ({index})")


# A reply token's 15 signature bytes fill its 20 characters exactly: it has no spare bits.


def _family_variants(token: str) -> list[str]:
    prefix, signature = token.split(".")
    return [
        "g0" + token[1:],
        prefix.replace("n", "n0", 1) + "." + signature,
        prefix.replace("e", "e0", 1) + "." + signature,
        token + "\n",
        " " + token,
        token + " ",
        _other_last_character(token),
        token.upper(),
        token + "=",
    ]


def test_a_family_link_has_one_spelling() -> None:
    token = make_family_token(8, 3, date(2026, 4, 15), SECRET)
    assert read_family_token(token, SECRET, TODAY).guardian_id == 8
    for variant in _family_variants(token):
        with pytest.raises(LinkProblem):
            read_family_token(variant, SECRET, TODAY)


def test_a_reply_token_has_one_spelling() -> None:
    token = make_reply_token(42, 7, SECRET)
    assert verify_reply_token(token, SECRET) is not None
    prefix, signature = token.split(".")
    variants = [
        "i042" + token[3:],
        prefix.replace("n", "n0", 1) + "." + signature,
        token + "\n",
        " " + token,
        token + "A",
        prefix + "." + signature + signature,
    ]
    for variant in variants:
        assert verify_reply_token(variant, SECRET) is None, variant


class Demo(Payload):
    incident_id: int


def test_a_slack_value_has_one_spelling() -> None:
    text = pack(Demo(incident_id=7), SECRET)
    assert unpack(Demo, text, SECRET) == Demo(incident_id=7)
    version, name, data, signature = text.split(".")
    variants = [
        _other_last_character(text),
        f"{version}.{name}.{data}=.{signature}",
        f"{version}.{name}.{data}.{signature}\u00e9",
        f"{version}.{name}.{data}.\u00e9{signature[1:]}",
        text + "\n",
    ]
    for variant in variants:
        with pytest.raises(ForgedPayload):
            unpack(Demo, variant, SECRET)
    for not_text in (5, ["v1"], {"v1": 1}):
        with pytest.raises(ForgedPayload):
            unpack(Demo, not_text, SECRET)  # type: ignore[arg-type]


async def test_the_family_page_opens_for_one_spelling_only(
    web: WebHarness, stores: UnitOfWorkFactory
) -> None:
    family = await add_family(stores)
    token = web.url(family.guardian_id).rsplit("/", 1)[1]
    assert (await web.http.get(f"/family/{token}")).status_code == 200
    prefix, signature = token.split(".")
    for variant in (
        f"g0{token[1:]}",
        f"{prefix.replace('e', 'e0', 1)}.{signature}",
        _other_last_character(token),
        f"{token}%20",
    ):
        response = await web.http.get(f"/family/{variant}")
        assert response.status_code == 404, variant


async def test_hsts_is_sent_when_the_public_url_is_https(make_web: WebFactory) -> None:
    secure = await make_web(public_base_url="https://devicecare.example.org")
    response = await secure.http.get("/healthz")
    assert response.headers["strict-transport-security"] == "max-age=31536000"
    plain = await make_web(public_base_url="http://localhost:3000")
    assert "strict-transport-security" not in (await plain.http.get("/healthz")).headers
