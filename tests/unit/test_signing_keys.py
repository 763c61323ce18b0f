"""One signer for every token: signs with SECRET_KEY, verifies with it or any older key."""

from __future__ import annotations

from datetime import date

import pytest

from bot.family_links import LinkProblem, make_family_token, read_family_token
from bot.mail.tokens import ReplyToken, make_reply_token, verify_reply_token
from bot.settings import Settings
from bot.signing import SigningKeys, signing_keys, split_keys
from bot.slack.metadata import ForgedPayload, Payload, pack, unpack

OLD, NEW, OTHER = "old-key-" + "o" * 30, "new-key-" + "n" * 30, "unknown-" + "u" * 30
ROTATED = SigningKeys(NEW, (OLD,))
TODAY = date(2026, 3, 2)


class Ref(Payload):
    incident_id: int


def test_settings_give_the_current_key_and_the_older_ones() -> None:
    settings = Settings(_env_file=None, secret_key=NEW, secret_key_previous=f"{OLD}, ,{OTHER} ")
    keys = signing_keys(settings)
    assert keys.current == NEW and keys.previous == (OLD, OTHER)
    assert signing_keys(Settings(_env_file=None, secret_key=NEW)).previous == ()
    assert split_keys(" a ,, b,") == ("a", "b")


def test_keys_never_show_in_their_repr() -> None:
    assert NEW not in repr(ROTATED) and OLD not in repr(ROTATED)


def test_new_tokens_are_signed_with_the_current_key() -> None:
    assert make_reply_token(1, 2, ROTATED) == make_reply_token(1, 2, NEW)
    assert pack(Ref(incident_id=3), ROTATED) == pack(Ref(incident_id=3), NEW)
    ends = date(2026, 4, 1)
    assert make_family_token(5, 6, ends, ROTATED) == make_family_token(5, 6, ends, NEW)


def test_old_tokens_verify_after_rotation_and_unknown_keys_do_not() -> None:
    ends = date(2026, 4, 1)
    assert read_family_token(make_family_token(5, 6, ends, OLD), ROTATED, TODAY).guardian_id == 5
    assert verify_reply_token(make_reply_token(1, 2, OLD), ROTATED) == ReplyToken(1, 2)
    assert unpack(Ref, pack(Ref(incident_id=3), OLD), ROTATED) == Ref(incident_id=3)

    with pytest.raises(LinkProblem):
        read_family_token(make_family_token(5, 6, ends, OTHER), ROTATED, TODAY)
    assert verify_reply_token(make_reply_token(1, 2, OTHER), ROTATED) is None
    with pytest.raises(ForgedPayload):
        unpack(Ref, pack(Ref(incident_id=3), OTHER), ROTATED)


def test_once_the_old_key_is_dropped_its_tokens_stop_working() -> None:
    assert verify_reply_token(make_reply_token(1, 2, OLD), SigningKeys(NEW)) is None
