"""After SECRET_KEY is rotated (the old key kept in SECRET_KEY_PREVIOUS), a parent's reply to a
notice sent before the rotation still threads under its invoice; a reply address signed with
a key that was never configured is held as forged."""

from __future__ import annotations

from typing import Any

import pytest

from bot.mail.ingest import Ingestor
from bot.mail.tokens import make_reply_token, reply_address
from tests.mail.conftest import REPLY_BASE, SECRET, billed_family, email_bytes
from tests.slack.conftest import SlackHarness

NEW_KEY = "rotated-mail-key-0123456789-abcdefghijklmnop"


@pytest.fixture
def slack_settings() -> dict[str, Any]:
    # billed_family signs its reply address with SECRET, the key before the rotation.
    return {"secret_key": NEW_KEY, "secret_key_previous": SECRET}


async def test_a_reply_to_a_notice_sent_before_the_rotation_still_threads(
    slack: SlackHarness,
) -> None:
    billed = await billed_family(slack.runtime.stores, slack.clock)
    ingestor = Ingestor.from_runtime(slack.runtime)

    result = await ingestor.ingest(
        email_bytes(to=billed.reply_to, body="I mailed check #1043 for $50 on Monday.")
    )

    assert (result.route, result.invoice_id) == ("token", billed.invoice_id)


async def test_a_reply_address_signed_with_an_unknown_key_is_held_as_forged(
    slack: SlackHarness,
) -> None:
    billed = await billed_family(slack.runtime.stores, slack.clock)
    ingestor = Ingestor.from_runtime(slack.runtime)
    forged = make_reply_token(billed.invoice_id, billed.notice_id, "never-configured-" + SECRET)

    result = await ingestor.ingest(email_bytes(to=reply_address(REPLY_BASE, forged)))

    assert (result.route, result.status, result.invoice_id) == ("forged", "held", None)
