"""The parser and classifiers against mail nobody here wrote (../shared/corpora, when present).

Real replies, auto-replies and bounces from other projects' test suites: nothing may crash,
every sisimai `rfc3834-*` file is an auto-reply, every RFC 3464 report with a failed action is a
bounce, and talon's replies keep some new text. The counts are printed with the results.
"""

from __future__ import annotations

import email
import email.message
import mailbox
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from pathlib import Path

import pytest

from bot.mail.classify import bounce_recipients, is_auto_reply
from bot.mail.parse import PARSE_POLICY, ParsedMail, parse_message

CORPORA = Path(__file__).resolve().parents[3] / "shared" / "corpora"
SKIP_NAMES = {"PROVENANCE", "LICENSE.upstream", "README.md"}
DSN_FOLDERS = ("flufl.bounce__wRAR-mirror", "sisimai__set-of-emails")
FAILED_ACTION = re.compile(r"^action:\s*failed", re.IGNORECASE | re.MULTILINE)

pytestmark = pytest.mark.skipif(
    not CORPORA.is_dir(), reason=f"shared corpora not present at {CORPORA}"
)


@dataclass(frozen=True)
class Sample:
    corpus: str
    relative: str  # path inside the corpus folder, plus "#n" for one message of an mbox
    raw: bytes


@dataclass(frozen=True)
class Result:
    sample: Sample
    mail: ParsedMail
    body_only: ParsedMail | None  # header-less reply bodies, read as a text or HTML part


def _samples() -> Iterator[Sample]:
    for path in sorted(CORPORA.rglob("*")):
        if not path.is_file() or path.name in SKIP_NAMES:
            continue
        corpus = path.relative_to(CORPORA).parts[0]
        relative = str(path.relative_to(CORPORA / corpus))
        raw = path.read_bytes()
        yield Sample(corpus, relative, raw)
        if path.parent.name == "mailbox" and path.name.startswith("mbox"):
            for index, message in enumerate(mailbox.mbox(path, create=False)):
                yield Sample(corpus, f"{relative}#{index}", message.as_bytes())


def _is_body_only(sample: Sample) -> bool:
    """Reply bodies without headers: the reply-parser corpora and talon's non-.eml files."""
    if sample.corpus in ("github__email_reply_parser", "zapier__email-reply-parser"):
        return True
    if sample.corpus == "mailgun__talon":
        return not sample.relative.endswith(".eml")
    return False


def _as_body(sample: Sample) -> bytes:
    kind = "html" if sample.relative.endswith(".html") else "plain"
    return f"Content-Type: text/{kind}; charset=utf-8\r\n\r\n".encode() + sample.raw


@pytest.fixture(scope="module")
def results() -> list[Result]:
    out = []
    for sample in _samples():
        mail = parse_message(sample.raw)
        body = parse_message(_as_body(sample)) if _is_body_only(sample) else None
        out.append(Result(sample, mail, body))
    return out


def _failed_delivery_report(raw: bytes) -> bool:
    """Independent of the classifier: a multipart/report whose delivery-status says failed."""
    if b"multipart/report" not in raw.lower():
        return False
    message = email.message_from_bytes(raw, policy=policy.compat32)
    if message.get_content_type() != "multipart/report":
        return False
    for part in message.walk():
        if part.get_content_type() not in (
            "message/delivery-status",
            "message/global-delivery-status",
        ):
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            text = "\n".join(str(block) for block in payload)
        else:
            decoded = part.get_payload(decode=True)
            text = decoded.decode("utf-8", "replace") if isinstance(decoded, bytes) else ""
        if FAILED_ACTION.search(text):
            return True
    return False


def test_counts(results: list[Result], capsys: pytest.CaptureFixture[str]) -> None:
    counts: Counter[tuple[str, str]] = Counter(
        (result.sample.corpus, result.mail.kind) for result in results
    )
    with capsys.disabled():
        print(f"\nshared corpora: {len(results)} messages")
        for (corpus, kind), count in sorted(counts.items()):
            print(f"  {corpus:32} {kind:10} {count:4}")
    assert len(results) > 800


def _message(sample: Sample) -> email.message.EmailMessage:
    message = email.message_from_bytes(sample.raw, policy=PARSE_POLICY)
    assert isinstance(message, email.message.EmailMessage)
    return message


def test_every_rfc3834_file_is_an_auto_reply(results: list[Result]) -> None:
    rfc3834 = [
        r
        for r in results
        if r.sample.corpus == "sisimai__set-of-emails"
        and re.fullmatch(r"maildir/bsd/rfc3834-\d+\.eml", r.sample.relative)
    ]
    assert len(rfc3834) >= 6
    wrong = [r.sample.relative for r in rfc3834 if r.mail.kind != "auto_reply"]
    assert wrong == []
    # The classifiers themselves, on the message objects (parse_message uses them too).
    assert all(is_auto_reply(_message(r.sample)) for r in rfc3834)
    assert all(bounce_recipients(_message(r.sample)) is None for r in rfc3834)


def test_every_failed_delivery_report_is_a_bounce(
    results: list[Result], capsys: pytest.CaptureFixture[str]
) -> None:
    reports = [
        r
        for r in results
        if r.sample.corpus in DSN_FOLDERS and _failed_delivery_report(r.sample.raw)
    ]
    with capsys.disabled():
        print(f"\nfailed delivery reports: {len(reports)}")
    assert len(reports) >= 200
    wrong = [r.sample.relative for r in reports if r.mail.kind != "bounce"]
    assert wrong == []
    assert all(bounce_recipients(_message(r.sample)) is not None for r in reports)
    named = sum(1 for r in reports if r.mail.bounced_recipients)
    assert named >= 0.95 * len(reports)  # nearly all name the failed address


def test_known_non_bounces_are_not_bounces(results: list[Result]) -> None:
    not_bounces = [r for r in results if r.sample.relative.startswith("maildir/not/is-not-bounce")]
    assert not_bounces
    assert all(r.mail.kind != "bounce" for r in not_bounces)


def test_talon_replies_keep_new_text(results: list[Result]) -> None:
    replies = []
    for r in results:
        if r.sample.corpus != "mailgun__talon" or "/signature/" in f"/{r.sample.relative}":
            continue  # talon's signature folder holds fragments, not replies
        mail = r.body_only or r.mail
        replies.append((r.sample.relative, mail))
    assert len(replies) >= 25
    empty = [name for name, mail in replies if mail.kind == "reply" and not mail.reply_text]
    assert empty == []
    quoted = [name for name, mail in replies if "wrote:" in mail.reply_text]
    assert quoted == []  # and none keeps the quoted history's header


def test_reply_parser_bodies_lose_their_quoted_history(results: list[Result]) -> None:
    bodies = [r for r in results if r.body_only is not None and r.sample.corpus != "mailgun__talon"]
    assert len(bodies) >= 40
    for r in bodies:
        assert r.body_only is not None
        for line in r.body_only.reply_text.splitlines():
            assert not line.startswith(">"), r.sample.relative
