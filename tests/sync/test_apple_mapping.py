"""The Apple School Manager client's pure parts: the signed client assertion, the key it is
signed with, and how Apple's device and coverage resources become DeviceCare's records."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pydantic import SecretStr

from bot.settings import Settings
from bot.sync.apple import (
    AUDIENCE,
    AppleSchoolManager,
    Unreadable,
    apple_source,
    client_assertion,
    default_scope,
    load_private_key,
    next_cursor,
    read_coverage,
    read_device,
    source_device,
)
from bot.sync.credentials import CredentialError
from tests.sync_standins.apple import coverage_attributes, device_attributes, new_key, pem_of
from workflows.sync import SourceCoverage

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def _part(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


# --- the client assertion ------------------------------------------------------------------


def test_the_assertion_is_an_es256_jwt_the_public_key_verifies() -> None:
    key = new_key()
    token = client_assertion(key, client_id="SCHOOLAPI.abc", key_id="K1", now=NOW, jti="j-1")

    head, body, signature = token.split(".")
    assert "=" not in token  # base64url without padding
    assert json.loads(_part(head)) == {"alg": "ES256", "kid": "K1"}
    assert json.loads(_part(body)) == {
        "sub": "SCHOOLAPI.abc",
        "aud": AUDIENCE,
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 3600,
        "jti": "j-1",
        "iss": "SCHOOLAPI.abc",
    }
    raw = _part(signature)
    assert len(raw) == 64  # r||s, not DER
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key.public_key().verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))


def test_each_assertion_has_its_own_id_and_stays_within_180_days() -> None:
    key = new_key()
    first = client_assertion(key, client_id="c", key_id="k", now=NOW)
    second = client_assertion(key, client_id="c", key_id="k", now=NOW, lifetime=timedelta(days=180))
    one, two = (json.loads(_part(t.split(".")[1])) for t in (first, second))
    assert one["jti"] != two["jti"]
    assert two["exp"] - two["iat"] == 180 * 86_400


def test_the_scope_follows_the_kind_of_account() -> None:
    assert default_scope("SCHOOLAPI.1234") == "school.api"
    assert default_scope("BUSINESSAPI.1234") == "business.api"
    assert default_scope("something-else") == "school.api"


# --- the key -------------------------------------------------------------------------------


def test_the_key_is_read_as_apple_gives_it_and_as_environments_mangle_it() -> None:
    key = new_key()
    pkcs8 = pem_of(key)
    sec1 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    one_line = pkcs8.strip().replace("\n", "\\n")  # how a .env file often carries it
    for text in (pkcs8, sec1, one_line, f"  {pkcs8}\n\n"):
        loaded = load_private_key(text)
        assert loaded.private_numbers() == key.private_numbers()


def _rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _p384_pem() -> str:
    return pem_of(ec.generate_private_key(ec.SECP384R1()))  # type: ignore[arg-type]


def _encrypted_pem() -> str:
    return (
        new_key()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass"),
        )
        .decode()
    )


def _public_pem() -> str:
    return (
        new_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.mark.parametrize(
    "make", [_rsa_pem, _p384_pem, _encrypted_pem, _public_pem, lambda: "not a key at all"]
)
def test_anything_but_a_p256_private_key_is_one_line_naming_the_setting(make: Any) -> None:
    pem = make()
    with pytest.raises(CredentialError) as caught:
        load_private_key(pem)
    message = str(caught.value)
    assert message.startswith("APPLE_PRIVATE_KEY ")
    assert "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    for line in pem.splitlines()[1:-1]:
        assert line not in message


# --- devices and coverage ------------------------------------------------------------------


def _item(kind: str, item_id: str, attributes: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "id": item_id, "attributes": attributes}


def test_a_device_becomes_a_source_device() -> None:
    # Apple's documented example, less what DeviceCare doesn't read.
    attributes = {
        "serialNumber": "XABC123X0ABC123X0",
        "addedToOrgDateTime": "2025-04-30T22:05:14.192Z",
        "releasedFromOrgDateTime": None,
        "deviceModel": 'iMac 21.5"',
        "productFamily": "Mac",
        "productType": "iMac16,2",
        "partNumber": "FD311LL/A",
        "status": "UNASSIGNED",
    }
    device = read_device(_item("orgDevices", "XABC123X0ABC123X0", attributes))
    mapped = source_device(device, ())
    assert (mapped.external_id, mapped.serial, mapped.model, mapped.part_number) == (
        "XABC123X0ABC123X0",
        "XABC123X0ABC123X0",
        'iMac 21.5"',
        "FD311LL/A",
    )
    assert mapped.status == "in_service"  # unassigned from MDM is still in service
    assert mapped.coverages == ()


def test_a_released_device_is_retired_and_blank_facts_are_unknown() -> None:
    attributes = device_attributes("S1", released=date(2025, 9, 1))
    attributes.update(deviceModel="", partNumber=None)
    mapped = source_device(read_device(_item("orgDevices", "S1", attributes)), None)
    assert mapped.status == "retired"
    assert mapped.model is None and mapped.part_number is None
    assert mapped.coverages is None


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"serialNumber": None}, "no serialNumber"),
        ({"serialNumber": "  "}, "no serialNumber"),
        ({"serialNumber": 12}, "serialNumber is not text"),
        ({"deviceModel": ["iPad"]}, "deviceModel is not text"),
    ],
)
def test_a_device_apple_does_not_describe_is_unreadable(change: dict[str, Any], why: str) -> None:
    attributes = device_attributes("S1") | change
    with pytest.raises(Unreadable, match=f"device 'S1': {why}"):
        read_device(_item("orgDevices", "S1", attributes))


def test_coverage_from_apples_example_keeps_its_days() -> None:
    warranty = {
        "contractCancelDateTime": None,
        "startDateTime": "2025-02-02T00:00:00Z",
        "isRenewable": False,
        "isCanceled": False,
        "description": "Limited Warranty",
        "agreementNumber": None,
        "endDateTime": "2026-02-02T00:00:00Z",
        "status": "ACTIVE",
        "paymentType": "NONE",
    }
    plus = warranty | {
        "startDateTime": "2025-04-17T00:00:00Z",
        "endDateTime": "2026-04-17T00:00:00Z",
        "description": "AppleCare+",
        "agreementNumber": "0000000001",
        "isRenewable": True,
        "paymentType": "SUBSCRIPTION",
    }
    assert read_coverage(_item("appleCareCoverage", "X", warranty)) == SourceCoverage(
        "Apple", "Limited Warranty", date(2025, 2, 2), date(2026, 2, 2)
    )
    # Midnight UTC is the contract's day, even for a district west of Greenwich.
    assert read_coverage(_item("appleCareCoverage", "1", plus)) == SourceCoverage(
        "Apple", "AppleCare+", date(2025, 4, 17), date(2026, 4, 17), "0000000001"
    )


def test_cancelled_coverage_ends_on_its_cancel_day() -> None:
    cancelled = coverage_attributes(
        "AppleCare+ for Schools", date(2024, 8, 1), date(2027, 7, 31), cancelled=date(2025, 1, 6)
    )
    plan = read_coverage(_item("appleCareCoverage", "1", cancelled))
    assert plan is not None and plan.end == date(2025, 1, 6)
    never = coverage_attributes(
        "AppleCare+ for Schools", date(2024, 8, 1), date(2027, 7, 31), cancelled=date(2024, 7, 1)
    )
    assert read_coverage(_item("appleCareCoverage", "2", never)) is None  # never in force


def test_coverage_without_its_days_is_left_out_and_a_bad_day_is_unreadable() -> None:
    undated = coverage_attributes("AppleCare+", date(2024, 1, 1), date(2025, 1, 1))
    undated["endDateTime"] = None
    assert read_coverage(_item("appleCareCoverage", "1", undated)) is None
    garbled = undated | {"endDateTime": "next spring"}
    with pytest.raises(Unreadable, match="coverage '1': endDateTime 'next spring'"):
        read_coverage(_item("appleCareCoverage", "1", garbled))
    long_name = undated | {"endDateTime": "2025-01-01T00:00:00Z", "description": "A" * 300}
    plan = read_coverage(_item("appleCareCoverage", "1", long_name))
    assert plan is not None and len(plan.plan) == 200


def test_the_next_page_comes_from_the_cursor_or_the_next_link() -> None:
    assert next_cursor({"meta": {"paging": {"nextCursor": "abc", "limit": 100}}}) == "abc"
    assert next_cursor({"links": {"next": "https://api-school.apple.com/v1/orgDevices?cursor=x1"}})
    assert next_cursor({"links": {"self": "s"}, "meta": {"paging": {"limit": 100}}}) is None
    with pytest.raises(Unreadable):
        next_cursor({"links": {"next": "https://api-school.apple.com/v1/orgDevices"}})
    with pytest.raises(Unreadable):
        next_cursor({"meta": {"paging": {"nextCursor": 5}}})


# --- settings ------------------------------------------------------------------------------


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_no_client_id_means_no_apple_source() -> None:
    assert apple_source(_settings()) is None
    assert not _settings(apple_client_id=" ").apple_enabled


def test_the_source_is_built_from_a_key_in_a_variable_or_a_file(tmp_path: Path) -> None:
    key = new_key()
    source = apple_source(
        _settings(
            apple_client_id="BUSINESSAPI.x",
            apple_key_id="K1",
            apple_private_key=SecretStr(pem_of(key)),
            apple_api_url="https://api-business.apple.com",
        )
    )
    assert isinstance(source, AppleSchoolManager)
    assert (source.scope, source.api_url) == ("business.api", "https://api-business.apple.com")
    assert "PRIVATE" not in repr(source)
    held = tmp_path / "apple.pem"
    held.write_text(pem_of(key))
    from_file = apple_source(
        _settings(apple_client_id="SCHOOLAPI.y", apple_key_id="K1", apple_private_key_file=held)
    )
    assert from_file is not None and from_file.scope == "school.api"
    assert from_file.token_url == "https://account.apple.com/auth/oauth2/token"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"apple_private_key": SecretStr("x")}, "APPLE_KEY_ID is not set"),
        ({"apple_key_id": "K1"}, "APPLE_PRIVATE_KEY is not set"),
        (
            {"apple_key_id": "K1", "apple_private_key": SecretStr("garbage")},
            "APPLE_PRIVATE_KEY is not a P-256 EC private key",
        ),
        (
            {"apple_key_id": "K1", "apple_private_key_file": Path("/nonexistent/apple.pem")},
            "APPLE_PRIVATE_KEY_FILE: can't read",
        ),
    ],
)
def test_a_half_set_account_is_one_line_naming_the_setting(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(CredentialError) as caught:
        apple_source(_settings(apple_client_id="SCHOOLAPI.z", **values))
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
