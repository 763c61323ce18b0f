"""The labelled corpus of parents' replies (tests/fixtures/replies) and how it is scored.

Each item is what a parent typed; `quoting.yaml` puts the district's notice under it the way
the parent's mail client would. The reply is built as a real message and read the way the
ingestor reads it: `parse_message` (which removes the quoted history and signature), then
`read_intent` over the new text. The benchmark (bench/reply_understanding.py) prints the
scores and tests/unit/test_reply_corpus.py holds them to the targets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import yaml

from bot.mail.parse import parse_message
from workflows.replies import Intent, ReadIntent, read_intent

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "replies"
CORPUS_FILES = ("corpus_en.yaml", "corpus_es.yaml")
# Written after the rules were tuned on CORPUS_FILES, each set after the one before it was
# folded in (docs/performance.md has the first score of each).
HOLDOUT_FILES = (
    "holdout_en.yaml",
    "holdout_es.yaml",
    "holdout2_en.yaml",
    "holdout2_es.yaml",
    "holdout3_en.yaml",
    "holdout3_es.yaml",
    "holdout4_en.yaml",
    "holdout4_es.yaml",
)
ALL_FILES = CORPUS_FILES + HOLDOUT_FILES
INVOICE_PREFIX = "INV"

# Targets (docs/performance.md, "Reading replies").
INTENT_TARGET = 0.95
AMOUNT_TARGET = 0.98
CHECK_TARGET = 0.98


@dataclass(frozen=True)
class Item:
    id: str
    language: str
    client: str
    notice: str
    text: str
    today: date
    intent: Intent
    amount_cents: int | None
    check_number: str | None
    invoice_numbers: tuple[str, ...]
    body: str  # the whole reply body, quoted notice included
    raw: bytes  # the reply as a message

    @property
    def quoted(self) -> str:
        """What of the body the parent didn't type (the quoted notice and its header)."""
        return self.body.replace(self.text, "", 1)


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.split("\n"))


def load(files: Sequence[str] = ALL_FILES) -> list[Item]:
    quoting = _quoting()
    notices: dict[str, str] = quoting["notices"]
    styles: dict[str, str] = quoting["styles"]
    items: list[Item] = []
    seen: set[str] = set()
    for name in files:
        data = yaml.safe_load((FIXTURES / name).read_text(encoding="utf-8"))
        language = "es" if name.endswith("_es.yaml") else "en"
        today = data["today"]
        for entry in data["items"]:
            if entry["id"] in seen:
                raise ValueError(f"duplicate corpus id {entry['id']}")
            seen.add(entry["id"])
            items.append(_item(entry, language, today, notices, styles))
    return items


def _item(
    entry: dict[str, Any],
    language: str,
    today: date,
    notices: dict[str, str],
    styles: dict[str, str],
) -> Item:
    label = entry["label"]
    notice_name = entry.get("notice", language)
    text = entry["text"].strip("\n")
    body = _body(styles[entry["client"]], notices[notice_name], text)
    amount = label["amount_cents"]
    check = label["check_number"]
    return Item(
        id=entry["id"],
        language=language,
        client=entry["client"],
        notice=notice_name,
        text=text,
        today=today,
        intent=Intent(label["intent"]),
        amount_cents=None if amount is None else int(amount),
        check_number=None if check is None else str(check),
        invoice_numbers=tuple(label.get("invoice_numbers") or ()),
        body=body,
        raw=_message(entry["id"], body, notice_name),
    )


def _body(style: str, notice: str, text: str) -> str:
    return (
        style.replace("{notice_quoted2}", _quote(_quote(notice)))
        .replace("{notice_quoted}", _quote(notice))
        .replace("{notice}", notice)
        .replace("{reply}", text)
    )


def styles() -> list[str]:
    """The quoting styles of quoting.yaml, by name."""
    return list(_quoting()["styles"])


def _quoting() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((FIXTURES / "quoting.yaml").read_text("utf-8"))
    return loaded


def requote(item: Item, style: str) -> Item:
    """The same reply as another client would have quoted the notice under it."""
    quoting = _quoting()
    body = _body(quoting["styles"][style], quoting["notices"][item.notice], item.text)
    return replace(item, client=style, body=body, raw=_message(item.id, body, item.notice))


def _message(item_id: str, body: str, notice: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Parent {item_id} <parent.{item_id}@families.example>"
    msg["To"] = "billing@lincoln.k12.example"
    number = {"es": "INV-000517", "digest": "INV-000530"}.get(notice, "INV-000482")
    msg["Subject"] = f"Re: Invoice {number}"
    msg["Date"] = format_datetime(datetime(2026, 3, 4, 15, 0, tzinfo=UTC))
    msg["Message-ID"] = f"<{item_id}@families.example>"
    msg["In-Reply-To"] = "<notice-1931@lincoln.k12.example>"
    msg.set_content(body)
    return msg.as_bytes()


# -- scoring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    item: Item
    reply_text: str
    read: ReadIntent

    @property
    def amount_cents(self) -> int | None:
        return None if self.read.payment is None else self.read.payment.amount_cents

    @property
    def check_number(self) -> str | None:
        return None if self.read.payment is None else self.read.payment.check_number

    @property
    def stripped(self) -> bool:
        """The quoted notice and its header are gone and the parent's first line is kept."""
        kept = self.item.text.strip().split("\n")[0].strip()
        quoted = (line.strip().lstrip("> ").strip() for line in self.item.quoted.split("\n"))
        leaked = any(len(line) >= 12 and line in self.reply_text for line in quoted)
        return kept in self.reply_text and not leaked

    @property
    def pending(self) -> bool:
        """Would the ingestor create a pending payment from this reply (bot/mail/ingest.py)."""
        return self.read.intent == Intent.PAYMENT and bool(self.amount_cents)

    def misses(self) -> list[str]:
        item, found = self.item, []
        if self.read.intent != item.intent:
            found.append(f"intent {self.read.intent.value} != {item.intent.value}")
        if item.intent == Intent.PAYMENT and self.amount_cents != item.amount_cents:
            found.append(f"amount {self.amount_cents} != {item.amount_cents}")
        if item.intent == Intent.PAYMENT and self.check_number != item.check_number:
            found.append(f"check {self.check_number} != {item.check_number}")
        if self.read.invoice_numbers != item.invoice_numbers:
            found.append(
                f"invoices {list(self.read.invoice_numbers)} != {list(item.invoice_numbers)}"
            )
        if not self.stripped:
            found.append("quoted history left in the new text (or the new text cut)")
        if self.false_pending:
            found.append(f"false pending payment ({self.false_pending})")
        return found

    @property
    def false_pending(self) -> str | None:
        """Why a pending payment created from this reply would be wrong, or None."""
        if not self.pending:
            return None
        item = self.item
        if item.intent == Intent.QUESTION:
            return "from a question"
        if item.intent != Intent.PAYMENT:
            return "from a promise or a non-payment"
        if self.amount_cents != item.amount_cents:
            shown = f"{(self.amount_cents or 0) / 100:.2f}"
            if shown.removesuffix(".00") not in item.text and shown in item.quoted:
                return "from a quoted amount"
            return "with the wrong amount"
        return None


def run(
    items: Sequence[Item], reader: Callable[[str, date], ReadIntent] | None = None
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for item in items:
        reply_text = parse_message(item.raw).reply_text
        if reader is None:
            read = read_intent(reply_text, today=item.today, invoice_prefix=INVOICE_PREFIX)
        else:
            read = reader(reply_text, item.today)
        outcomes.append(Outcome(item, reply_text, read))
    return outcomes


@dataclass
class Scores:
    total: int = 0
    intent_right: int = 0
    payments: int = 0
    amount_right: int = 0
    check_right: int = 0
    invoices_right: int = 0
    stripped: int = 0
    false_pending: Counter[str] = field(default_factory=Counter)
    per_intent: dict[Intent, tuple[int, int, int]] = field(default_factory=dict)  # tp, fp, fn

    @property
    def intent_accuracy(self) -> float:
        return self.intent_right / self.total if self.total else 0.0

    @property
    def amount_accuracy(self) -> float:
        return self.amount_right / self.payments if self.payments else 0.0

    @property
    def check_accuracy(self) -> float:
        return self.check_right / self.payments if self.payments else 0.0

    @property
    def invoice_accuracy(self) -> float:
        return self.invoices_right / self.total if self.total else 0.0

    @property
    def strip_accuracy(self) -> float:
        return self.stripped / self.total if self.total else 0.0

    def meets_targets(self) -> bool:
        return (
            self.intent_accuracy >= INTENT_TARGET
            and self.amount_accuracy >= AMOUNT_TARGET
            and self.check_accuracy >= CHECK_TARGET
            and not self.false_pending
        )


def score(outcomes: Sequence[Outcome]) -> Scores:
    """Intent over every reply; amount and check number over the replies that report a
    payment (the reading of a non-payment is judged by its intent and by false pending
    payments); invoice numbers over every reply."""
    s = Scores(total=len(outcomes))
    counts: dict[Intent, list[int]] = {intent: [0, 0, 0] for intent in Intent}
    for outcome in outcomes:
        item, read = outcome.item, outcome.read
        if read.intent == item.intent:
            s.intent_right += 1
            counts[item.intent][0] += 1
        else:
            counts[read.intent][1] += 1
            counts[item.intent][2] += 1
        if item.intent == Intent.PAYMENT:
            s.payments += 1
            s.amount_right += outcome.amount_cents == item.amount_cents
            s.check_right += outcome.check_number == item.check_number
        s.invoices_right += read.invoice_numbers == item.invoice_numbers
        s.stripped += outcome.stripped
        if outcome.false_pending:
            s.false_pending[outcome.false_pending] += 1
    s.per_intent = {intent: (tp, fp, fn) for intent, (tp, fp, fn) in counts.items()}
    return s
