"""The Google Admin settings: the key from a variable or a file, one line for each mistake, and
no part of the key or a token in a log."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from bot.config_errors import ConfigurationError, load_settings
from bot.settings import Settings
from bot.sync.credentials import CredentialError
from bot.sync.google import API_URL, GoogleAdminDevices, google_source
from bot.sync.http import Backoff
from tests.sync_standins.google import FakeGoogle, device, key_file_text, new_private_key
from workflows.clock import FixedClock

NOW = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
SA_EMAIL = "devicecare-sync@district-devices.iam.gserviceaccount.com"
ADMIN = "sync-admin@district.org"


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return new_private_key()


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_off_without_a_key() -> None:
    plain = settings()
    assert plain.google_enabled is False
    assert plain.google_customer_id == "my_customer"
    assert google_source(plain) is None


def test_a_key_file_with_its_token_uri_and_the_overrides(
    tmp_path: Path, private_key: rsa.RSAPrivateKey
) -> None:
    path = tmp_path / "google-key.json"
    path.write_text(
        key_file_text(private_key, client_email=SA_EMAIL, token_uri="https://oauth2.example/t")
    )
    configured = settings(
        google_service_account_file=path,
        google_admin_subject=ADMIN,
        google_org_unit="/Students",
        google_full_sync_days=3,
    )
    assert configured.google_enabled is True
    source = google_source(configured)
    assert isinstance(source, GoogleAdminDevices)
    assert source.name == "google"
    assert source.key.client_email == SA_EMAIL
    assert source.subject == ADMIN
    assert source.token_url == "https://oauth2.example/t"  # the key file's token_uri
    assert source.api_url == API_URL
    assert source.org_unit == "Students"
    assert source.full_every == timedelta(days=3)

    moved = google_source(
        settings(
            google_service_account_file=path,
            google_admin_subject=ADMIN,
            google_api_url="http://127.0.0.1:9/",
            google_token_url="http://127.0.0.1:9/token",
            google_customer_id="C01abc234",
        )
    )
    assert moved is not None
    assert (moved.api_url, moved.token_url, moved.customer_id) == (
        "http://127.0.0.1:9",
        "http://127.0.0.1:9/token",
        "C01abc234",
    )


def test_a_key_without_a_subject_is_an_error_not_off(private_key: rsa.RSAPrivateKey) -> None:
    text = key_file_text(private_key, client_email=SA_EMAIL, token_uri="https://t/token")
    with pytest.raises(CredentialError, match="GOOGLE_ADMIN_SUBJECT is not set"):
        google_source(settings(google_service_account_json=SecretStr(text)))


def test_a_malformed_key_file_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    path.write_text('{"type": "service_account", "private_key": "SECRET-MATERIAL"}')
    with pytest.raises(CredentialError) as caught:
        google_source(settings(google_service_account_file=path, google_admin_subject=ADMIN))
    message = str(caught.value)
    assert message == (
        "GOOGLE_SERVICE_ACCOUNT_FILE: not a Google service account key (client_email is missing)"
    )

    missing = tmp_path / "nowhere.json"
    with pytest.raises(CredentialError, match="^GOOGLE_SERVICE_ACCOUNT_FILE: can't read"):
        google_source(settings(google_service_account_file=missing, google_admin_subject=ADMIN))


def test_a_malformed_key_in_the_environment_is_a_configuration_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT_JSON", '{"client_email": "a@b.c", "private_key": "')
    with pytest.raises(ConfigurationError) as caught:
        load_settings(Settings)
    assert caught.value.lines == [
        "Configuration error: GOOGLE_SERVICE_ACCOUNT_JSON: not a Google service account key "
        "(not JSON)"
    ]


def test_both_a_key_and_a_key_file_is_refused(
    tmp_path: Path, private_key: rsa.RSAPrivateKey
) -> None:
    text = key_file_text(private_key, client_email=SA_EMAIL, token_uri="https://t/token")
    path = tmp_path / "k.json"
    path.write_text(text)
    with pytest.raises(CredentialError, match="GOOGLE_SERVICE_ACCOUNT_FILE, not both"):
        google_source(
            settings(
                google_service_account_json=SecretStr(text),
                google_service_account_file=path,
                google_admin_subject=ADMIN,
            )
        )


@pytest.fixture
async def google(private_key: rsa.RSAPrivateKey) -> AsyncIterator[FakeGoogle]:
    fake = FakeGoogle(now=lambda: NOW)
    await fake.start()
    fake.register(SA_EMAIL, private_key.public_key())
    fake.admins.add(ADMIN)
    try:
        yield fake
    finally:
        await fake.stop()


async def test_no_key_token_or_assertion_reaches_a_log(
    google: FakeGoogle, private_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    text = key_file_text(private_key, client_email=SA_EMAIL, token_uri=google.token_url)
    google.devices = [device(f"S{i}") for i in range(5)]
    google.fail_next("503", "expire_token", "rate_limit_403", after=1)

    async def no_wait(seconds: float) -> None:
        return None

    source = google_source(
        settings(
            google_service_account_json=SecretStr(text),
            google_admin_subject=ADMIN,
            google_api_url=google.base_url,
        ),
        backoff=Backoff(sleep=no_wait),
        clock=FixedClock(NOW),
    )
    assert source is not None
    source.page_size = 2
    with caplog.at_level(logging.DEBUG):
        snapshot = await source.fetch()
    assert len(snapshot.devices) == 5
    assert "retrying" in caplog.text  # the retries were logged
    logged = caplog.text
    pem_line = text.split("\\n")[1]
    assert pem_line not in logged
    for token in google.tokens:
        assert token not in logged
    assert "eyJ" not in logged  # no JWT (its base64 header starts so)
