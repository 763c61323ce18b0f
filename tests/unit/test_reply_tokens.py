"""Reply tokens: round trip, and nothing forged or altered gets through."""

from __future__ import annotations

import pytest

from bot.mail.tokens import (
    ReplyToken,
    make_reply_token,
    reply_address,
    token_from_address,
    verify_reply_token,
)

SECRET = "s3cret"


def test_round_trip_through_the_reply_address() -> None:
    token = make_reply_token(42, 7, SECRET)
    address = reply_address("billing@district.org", token)
    assert address == f"billing+{token}@district.org"
    assert token_from_address(f"<{address}>") == token
    assert verify_reply_token(token, SECRET) == ReplyToken(42, 7)


@pytest.mark.parametrize(
    "forged",
    [
        make_reply_token(42, 7, "another-key"),
        make_reply_token(42, 7, SECRET).replace("i42", "i43"),
        make_reply_token(42, 7, SECRET).replace("n7.", "n8."),
        make_reply_token(42, 7, SECRET)[:-1] + "A",
        "i42n7",
        "i42n7.",
        "",
        "../../etc/passwd",
    ],
)
def test_forged_or_altered_tokens_verify_to_nothing(forged: str) -> None:
    assert verify_reply_token(forged, SECRET) is None


def test_addresses_without_a_token() -> None:
    assert token_from_address("billing@district.org") is None
    assert token_from_address("not an address") is None
    assert reply_address("billing+old@district.org", "t") == "billing+t@district.org"
    with pytest.raises(ValueError):
        reply_address("nobody", "t")
