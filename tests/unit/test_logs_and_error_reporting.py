"""One log format (LOG_FORMAT text|json) and Sentry events stripped of family tokens and secrets."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
import uvicorn

from bot.error_reporting import Scrubber, configured_secrets, init_error_reporting
from bot.logs import setup_logging
from bot.settings import Settings


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], level = saved
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line]


def test_json_lines_carry_time_level_logger_message_extras_and_exception(
    restore_logging: None,
) -> None:
    stream = io.StringIO()
    setup_logging(Settings(_env_file=None, log_format="json"), stream)
    log = logging.getLogger("devicecare.test")
    log.info("billing run for %s: %s", "2026-03-02", "3 reminders", extra={"invoices": 3})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("the run failed")
    # uvicorn's own loggers, as configured with log_config=None, use the same handler.
    uvicorn.Config(lambda *_: None, log_config=None, log_level="info")
    logging.getLogger("uvicorn.error").info("Uvicorn running", extra={"color_message": "x"})
    records = [json.loads(line) for line in _lines(stream)]
    assert [r["logger"] for r in records] == ["devicecare.test", "devicecare.test", "uvicorn.error"]
    first = records[0]
    assert (
        first["level"] == "INFO" and first["message"] == "billing run for 2026-03-02: 3 reminders"
    )
    assert first["invoices"] == 3
    assert first["time"].endswith("Z") and first["time"][10] == "T"
    assert "exception" not in first
    assert records[1]["level"] == "ERROR"
    assert "RuntimeError: boom" in records[1]["exception"]
    assert "color_message" not in records[2]


def test_text_lines_share_the_format(restore_logging: None) -> None:
    stream = io.StringIO()
    setup_logging(Settings(_env_file=None), stream)
    logging.getLogger("uvicorn.access").propagate = False  # as uvicorn's own config leaves it
    setup_logging(Settings(_env_file=None), stream)  # ... which setting up again undoes
    logging.getLogger("uvicorn.access").info("GET /healthz 200")
    logging.getLogger("devicecare").warning("careful")
    lines = _lines(stream)
    assert lines[0].endswith("INFO    uvicorn.access: GET /healthz 200")
    assert lines[1].endswith("WARNING devicecare: careful")
    assert lines[0][:4].isdigit() and lines[0].split(" ", 1)[0].endswith("Z")


def test_sentry_events_lose_tokens_secrets_and_personal_data() -> None:
    settings = Settings(
        _env_file=None,
        secret_key="a-long-and-random-secret-key-value",
        smtp_password="hunter2-smtp",
        stripe_secret_key="sk_live_abcdefghijkl",
    )
    scrub = Scrubber(configured_secrets(settings))
    event = {
        "message": "can't send to billing+i12n3.AbCdEf123456@district.org with hunter2-smtp",
        "request": {
            "url": "https://devicecare.example.org/family/g12n0e400.AbCdEfGhIjKlMn",
            "query_string": "token=abc123&page=2",
            "headers": {"Authorization": "Bearer xyz", "User-Agent": "Mozilla"},
            "data": {"email": "jane@example.org"},
            "cookies": {"session": "s"},
        },
        "user": {"email": "jane@example.org"},
        "breadcrumbs": {
            "values": [{"message": "POST https://api.stripe.com key sk_live_abcdefghijkl"}]
        },
        "exception": {
            "values": [{"value": "Bad signature for g7n2e500.ZZZZZZZZZZZZ and xoxb-123-456-abc"}]
        },
    }
    out = scrub.before_send(event, {})
    text = json.dumps(out)
    for leaked in (
        "AbCdEfGhIjKlMn",
        "i12n3.AbCdEf",
        "hunter2",
        "sk_live",
        "xoxb-",
        "ZZZZZZZZZZZZ",
        "Bearer xyz",
        "jane@example.org",
        "abc123",
    ):
        assert leaked not in text, leaked
    assert out["request"]["url"] == "https://devicecare.example.org/family/…"
    assert "user" not in out and "data" not in out["request"]
    assert out["request"]["headers"]["User-Agent"] == "Mozilla"


def test_sentry_dsn_without_sentry_sdk_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "sentry_sdk", None)  # as if the extra isn't installed
    settings = Settings(_env_file=None, sentry_dsn="https://public@sentry.example.org/1")
    with caplog.at_level(logging.INFO, logger="devicecare"):
        assert init_error_reporting(settings) is False
    assert [r.getMessage() for r in caplog.records] == [
        "SENTRY_DSN is set but sentry-sdk is not installed; errors are not reported"
        " (install it with: pip install 'devicecare[sentry]')"
    ]
    assert init_error_reporting(Settings(_env_file=None)) is False  # unset: nothing to say


def test_sentry_starts_with_the_installed_sdk() -> None:
    sentry_sdk = pytest.importorskip("sentry_sdk")
    settings = Settings(_env_file=None, sentry_dsn="https://public@127.0.0.1:9/1")
    try:
        assert init_error_reporting(settings) is True
        client = sentry_sdk.get_client()
        assert client.is_active()
        assert client.options["before_send"] is not None
    finally:
        sentry_sdk.init()  # no DSN: reporting off again for the other tests
