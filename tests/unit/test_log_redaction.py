"""Log records are cleaned of secrets and tokens as they are made, keeping their shape."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date

import pytest

from bot.family_links import make_family_token
from bot.log_redaction import MASK, Redactor, configured_secrets, install_log_redaction
from bot.mail.tokens import make_reply_token
from bot.settings import Settings

KEY = "redaction-test-key-0123456789-abcdefgh"


@pytest.fixture
def redactor() -> Redactor:
    redactor = Redactor()
    redactor.add_secrets(["super-secret-password", "abc", None, KEY])
    return redactor


def record(msg: object, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("t", logging.INFO, __file__, 1, msg, args or None, exc_info)


def test_known_values_and_secret_shapes_are_masked(redactor: Redactor) -> None:
    text = redactor.redact(
        "login super-secret-password; token xoxb-1234-abcdef; key sk_live_51Habc123XYZ; "
        "hook whsec_Zm9vYmFy; url postgresql://app:p%40ss@db:5432/dc; short abc stays"
    )
    assert "super-secret-password" not in text and f"login {MASK};" in text
    assert "xoxb-***" in text and "sk_live_***" in text and "whsec_***" in text
    assert "postgresql://app:***@db:5432/dc" in text
    assert "short abc stays" in text  # too short to be a secret worth masking words for


def test_tokens_keep_their_ids_and_lose_their_signatures(redactor: Redactor) -> None:
    family = make_family_token(12, 3, date(2026, 4, 1), KEY)
    reply = make_reply_token(42, 7, KEY)
    text = redactor.redact(f"GET /family/{family} and billing+{reply}@district.org")
    assert family not in text and reply not in text
    assert f"/family/{family.split('.')[0]}.…" in text
    assert "billing+i42n7.…@district.org" in text


def test_access_log_arguments_stay_a_tuple_of_the_same_shape(redactor: Redactor) -> None:
    token = make_reply_token(1, 2, KEY)
    entry = record('%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "GET", f"/r/{token}", "1.1", 200)
    redactor.clean(entry)
    assert isinstance(entry.args, tuple) and len(entry.args) == 5
    assert entry.getMessage() == '1.2.3.4:5 - "GET /r/i1n2.… HTTP/1.1" 200'


def test_objects_holding_a_secret_are_logged_as_cleaned_text(redactor: Redactor) -> None:
    entry = record("failed: %s (%r)", ValueError(f"bad key {KEY}"), {"password": KEY})
    redactor.clean(entry)
    assert KEY not in entry.getMessage()
    untouched = record("count %d of %.1f", 3, 2.5)
    redactor.clean(untouched)
    assert untouched.getMessage() == "count 3 of 2.5"


def test_a_traceback_holding_a_secret_is_cleaned(redactor: Redactor) -> None:
    try:
        raise RuntimeError(f"could not log in with super-secret-password to {KEY}")
    except RuntimeError as exc:
        entry = record("mail failed", exc=exc)
    redactor.clean(entry)
    formatted = logging.Formatter().format(entry)
    assert "RuntimeError: could not log in with ***" in formatted
    assert "super-secret-password" not in formatted and KEY not in formatted


@pytest.fixture
def restore_factory() -> Iterator[None]:
    factory = logging.getLogRecordFactory()
    yield
    logging.setLogRecordFactory(factory)


def test_installed_it_cleans_every_logger(
    restore_factory: None, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        _env_file=None,
        secret_key=KEY,
        secret_key_previous="previous-key-0123456789-abcdefghij",
        smtp_username="relay",
        smtp_password="smtp-password-123",
        database_url="postgresql://dc:db-password-456@db/dc",
    )
    assert "db-password-456" in configured_secrets(settings)
    install_log_redaction(settings)
    install_log_redaction(settings)  # a second call wraps nothing twice
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("uvicorn.error").warning("key %s", KEY)
        logging.getLogger("aiosmtplib").debug("AUTH PLAIN AHJlbGF5AHNtdHAtcGFzc3dvcmQtMTIz")
        logging.getLogger("devicecare").info("old key previous-key-0123456789-abcdefghij")
    assert caplog.messages == [f"key {MASK}", f"AUTH PLAIN {MASK}", f"old key {MASK}"]
