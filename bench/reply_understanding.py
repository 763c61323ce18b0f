"""Reply understanding benchmark: how well parents' replies are read, and how fast.

    .venv/bin/python bench/reply_understanding.py [--rounds 20] [--misses] [--every-client]

The labelled corpus (tests/fixtures/replies: 396 replies, English and Spanish, each under the
district's notice quoted the way Gmail, Outlook, Apple Mail, Yahoo, Android or Thunderbird
quote it) goes through what the ingestor runs: `parse_message` on the reply as a message (quoted
history and signature removed), then `read_intent` on the new text. It prints, for the tuning
corpus, the held-out replies (written after the rules were tuned) and both together:

- intent accuracy, and precision / recall per intent;
- amount and check-number accuracy over the replies that report a payment;
- invoice-number accuracy (the numbers the new text names, in order) over every reply;
- how often the quoted notice was removed cleanly;
- false pending payments: a pending payment the ingestor would create from a promise, a
  question or another non-payment, or with an amount the parent didn't report (a quoted one).

With --every-client, every reply is also read under every quoting style of quoting.yaml (not
only the client it was written for), and the replies read differently are counted.

Then the throughput (replies/second) of parse + read and of `read_intent` alone, each beside
a bare floor: the standard library's parse of the same messages (no quote stripping), and the
same new texts lower-cased and searched by one regular expression.

Targets: intent >= 95 %, amount and check number >= 98 %, no false pending payment. The exit
status is non-zero when a target is missed.
"""

from __future__ import annotations

import argparse
import email
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.mail.parse import parse_message  # noqa: E402
from tests.reply_corpus import (  # noqa: E402
    ALL_FILES,
    AMOUNT_TARGET,
    CHECK_TARGET,
    CORPUS_FILES,
    HOLDOUT_FILES,
    INTENT_TARGET,
    INVOICE_PREFIX,
    Item,
    Outcome,
    Scores,
    load,
    requote,
    run,
    score,
    styles,
)
from workflows.replies import Intent, read_intent  # noqa: E402

_FLOOR = re.compile(r"\$\s?\d+(?:\.\d{2})?|\bpaid\b|\bcheck\b")


def _pct(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.1f} %)" if whole else "-"


def report(name: str, outcomes: Sequence[Outcome], scores: Scores) -> None:
    languages = {o.item.language for o in outcomes}
    spanish = sum(o.item.language == "es" for o in outcomes)
    print(f"\n{name}: {scores.total} replies ({spanish} Spanish)" if "es" in languages else name)
    print(f"  intent            {_pct(scores.intent_right, scores.total)}")
    print(f"  amount            {_pct(scores.amount_right, scores.payments)}  (payment replies)")
    print(f"  check number      {_pct(scores.check_right, scores.payments)}  (payment replies)")
    print(f"  invoice numbers   {_pct(scores.invoices_right, scores.total)}")
    print(f"  quote stripped    {_pct(scores.stripped, scores.total)}")
    pending = sum(o.pending for o in outcomes)
    false = sum(scores.false_pending.values())
    causes = ", ".join(f"{n} {cause}" for cause, n in sorted(scores.false_pending.items()))
    print(
        f"  pending payments  {pending} created, {false} false" + (f" ({causes})" if false else "")
    )
    print("  per intent        precision   recall   (replies)")
    for intent in Intent:
        tp, fp, fn = scores.per_intent[intent]
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        print(f"    {intent.value:<14}  {precision:9.3f}  {recall:7.3f}   ({tp + fn})")


def every_client(items: Sequence[Item]) -> None:
    names = styles()
    wrong: dict[str, int] = {}
    for name in names:
        outcomes = run([requote(item, name) for item in items])
        wrong[name] = sum(bool(o.misses()) for o in outcomes)
    total = len(items) * len(names)
    print(
        f"\nEvery reply under every client ({len(names)} styles): "
        f"{total - sum(wrong.values())}/{total} read right"
    )
    for name, count in wrong.items():
        if count:
            print(f"  {name:<22} {count} replies read wrong")


def _timed(rounds: int, items: Sequence[Item], work: Callable[[Item], object]) -> float:
    """Replies per second, the best of `rounds` passes over the corpus."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for item in items:
            work(item)
        best = min(best, time.perf_counter() - started)
    return len(items) / best


def throughput(items: Sequence[Item], rounds: int) -> None:
    texts = {item.id: parse_message(item.raw).reply_text for item in items}

    def full(item: Item) -> object:
        text = parse_message(item.raw).reply_text
        return read_intent(text, today=item.today, invoice_prefix=INVOICE_PREFIX)

    def reading(item: Item) -> object:
        return read_intent(texts[item.id], today=item.today, invoice_prefix=INVOICE_PREFIX)

    def parse_floor(item: Item) -> object:
        payload = email.message_from_bytes(item.raw).get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        return _FLOOR.findall(text.lower())

    def read_floor(item: Item) -> object:
        return _FLOOR.findall(texts[item.id].lower())

    pairs = [
        ("parse + read_intent", full, "stdlib parse, lower, one re", parse_floor),
        ("read_intent alone", reading, "lower, one re", read_floor),
    ]
    print(f"\nThroughput over {len(items)} replies (best of {rounds} passes)")
    for label, work, floor_label, floor in pairs:
        ours, bare = _timed(rounds, items, work), _timed(rounds, items, floor)
        print(
            f"  {label:<20} {ours:>8,.0f}/s   floor ({floor_label}) {bare:>9,.0f}/s   "
            f"{bare / ours:.1f}x the cost"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="timed passes (default 20)")
    parser.add_argument("--misses", action="store_true", help="list every reply read wrong")
    parser.add_argument(
        "--every-client", action="store_true", help="read every reply under every quoting style"
    )
    args = parser.parse_args(argv)

    outcomes: dict[str, list[Outcome]] = {}
    for name, files in (
        ("Tuning corpus", CORPUS_FILES),
        ("Held-out replies", HOLDOUT_FILES),
        ("All", ALL_FILES),
    ):
        outcomes[name] = run(load(files))
        report(name, outcomes[name], score(outcomes[name]))

    every = outcomes["All"]
    misses = [o for o in every if o.misses()]
    if misses:
        print(
            f"\n{len(misses)} replies with a miss"
            + ("" if args.misses else " (--misses lists them)")
        )
        if args.misses:
            for o in misses:
                print(f"  {o.item.id} [{o.item.client}] {'; '.join(o.misses())}")
                print(f"      {o.reply_text[:160]!r}")

    if args.every_client:
        every_client([o.item for o in every])
    throughput([o.item for o in every], args.rounds)

    total = score(every)
    print(
        f"\nTargets: intent >= {INTENT_TARGET:.0%}, amount and check number >= "
        f"{AMOUNT_TARGET:.0%} / {CHECK_TARGET:.0%}, no false pending payment: "
        + ("met" if total.meets_targets() else "MISSED")
    )
    return 0 if total.meets_targets() else 1


if __name__ == "__main__":
    raise SystemExit(main())
