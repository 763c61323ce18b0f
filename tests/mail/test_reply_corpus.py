"""Reply understanding held to its targets over the labelled corpus (tests/fixtures/replies).

Every reply goes through the real parse (quoted notice and signature removed) and
`read_intent`, as the ingestor reads it. Targets: intent >= 95 %, amount and check number
>= 98 % over the payment replies, and no pending payment from a promise, a question or a
quoted amount. bench/reply_understanding.py prints the same figures in full.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.reply_corpus import (
    AMOUNT_TARGET,
    CHECK_TARGET,
    INTENT_TARGET,
    Item,
    Outcome,
    load,
    requote,
    run,
    score,
    styles,
)
from workflows.replies import Intent


@pytest.fixture(scope="module")
def items() -> list[Item]:
    return load()


@pytest.fixture(scope="module")
def outcomes(items: list[Item]) -> list[Outcome]:
    return run(items)


def _misses(outcomes: list[Outcome]) -> str:
    return "\n".join(
        f"{o.item.id}: {'; '.join(o.misses())} — {o.reply_text[:100]!r}"
        for o in outcomes
        if o.misses()
    )


def test_the_corpus_is_broad(items: list[Item]) -> None:
    assert len(items) >= 200
    languages = Counter(item.language for item in items)
    assert languages["es"] >= 60
    intents = Counter(item.intent for item in items)
    assert all(intents[intent] >= 10 for intent in Intent)
    clients = {item.client for item in items}
    for style in ("gmail", "gmail_es", "outlook", "outlook_original", "apple", "yahoo", "android"):
        assert style in clients
    words = " ".join(item.text.lower() for item in items)
    for needle in ("ck ", "chk", "pmt", "pd ", "pymt", "in the mail", "dollars", "dólares"):
        assert needle in words
    assert sum(len(item.invoice_numbers) > 1 for item in items) >= 5


def test_reading_meets_its_targets(outcomes: list[Outcome]) -> None:
    scores = score(outcomes)
    detail = _misses(outcomes)
    assert scores.intent_accuracy >= INTENT_TARGET, detail
    assert scores.amount_accuracy >= AMOUNT_TARGET, detail
    assert scores.check_accuracy >= CHECK_TARGET, detail


def test_no_pending_payment_from_a_promise_a_question_or_a_quoted_amount(
    outcomes: list[Outcome],
) -> None:
    wrong = [o for o in outcomes if o.false_pending]
    assert not wrong, _misses(wrong)


def test_invoice_numbers_and_quote_stripping(outcomes: list[Outcome]) -> None:
    scores = score(outcomes)
    detail = _misses(outcomes)
    assert scores.invoice_accuracy >= 0.98, detail
    assert scores.strip_accuracy >= 0.98, detail


def test_the_reading_does_not_depend_on_the_mail_client(items: list[Item]) -> None:
    """Each reply again under another client's quoting (the styles taken in turn): the quoted
    notice goes, and the reply reads the same. `bench/reply_understanding.py --every-client`
    reads every reply under every style."""
    names = styles()
    moved = [requote(item, names[index % len(names)]) for index, item in enumerate(items)]
    outcomes = run(moved)
    assert not [o for o in outcomes if o.misses()], _misses(outcomes)
