"""Syncs in Slack: where a device's facts came from, a source's suggested holder, and the
nightly summary and alerts of the syncs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.slack.blocks import Block, context_block, plain, section
from bot.slack.incident_blocks import escape_mrkdwn as esc
from bot.sync.runner import held_text
from storage.sync_provenance import HolderSuggestion, Provenance
from workflows.i18n import N_, _
from workflows.sync import SOURCE_LABELS

SAMPLE_SHOWN = 10
_FACTS = (
    ("model", N_("Model")),
    ("part_number", N_("part number")),
    ("asset_tag", N_("asset tag")),
)


def _and(words: Sequence[str]) -> str:
    if len(words) == 1:
        return words[0]
    return _("{items} and {last}", items=", ".join(words[:-1]), last=words[-1])


def synced_words(at: datetime | None, tz: ZoneInfo) -> str:
    if at is None:
        return _("not synced yet")
    local = at.astimezone(tz)
    when = f"{local.day} {local:%b %H:%M}"
    return _("synced {when}", when=when)


def provenance_line(record: Provenance, tz: ZoneInfo) -> str:
    """E.g. "Model and AppleCare+ from Apple School Manager · synced 6 Dec 02:00"."""
    facts = record.facts
    named = [_(word) for key, word in _FACTS if facts.get(key)]
    plans = sorted({c.get("plan", "") for c in facts.get("coverage") or [] if c.get("plan")})
    named += plans
    if facts.get("status"):
        named.append(_("status"))
    if facts.get("org_unit"):
        named.append(_("OU {unit}", unit=facts["org_unit"]))
    what = _and(named) if named else _("Listed")
    what = what[0].upper() + what[1:]
    line = _(
        "{facts} from {source} \u00b7 {synced}",
        facts=esc(what),
        source=esc(record.label),
        synced=synced_words(record.synced_at, tz),
    )
    own = facts.get("source_status")
    if own and own != "ACTIVE":
        # e.g. Google's DISABLED: locked there as lost or stolen, still in service here.
        line += " \u00b7 " + _(
            "{status} in {source}", status=esc(str(own)), source=esc(record.label)
        )
    return line


def suggestion_line(suggestion: HolderSuggestion, holder_name: str | None) -> str:
    """The source's most recent user, offered and never assigned."""
    who = esc(suggestion.email)
    if suggestion.student_name is not None:
        who = f"{esc(suggestion.student_name)} ({who})"
        where = (
            _("not assigned in DeviceCare")
            if holder_name is None
            else _("DeviceCare has it assigned to {holder}", holder=esc(holder_name))
        )
    else:
        where = _("no student in DeviceCare has that email")
    return _(
        ":bust_in_silhouette: {source}'s most recent user: {who} \u2014 {where}",
        source=esc(suggestion.label),
        who=who,
        where=where,
    )


def sync_context(
    provenance: Sequence[Provenance],
    suggestion: HolderSuggestion | None,
    holder_name: str | None,
    tz: ZoneInfo,
    offer: Block | None = None,
) -> list[Block]:
    """The lines `/device` adds under the device's facts (nothing for a device no source lists),
    and `offer`, the button that assigns the suggested holder, when staff may take it."""
    lines = [provenance_line(p, tz) for p in provenance]
    if suggestion is not None:
        lines.append(suggestion_line(suggestion, holder_name))
    blocks = [context_block(*lines)] if lines else []
    if offer is not None:
        blocks.append({"type": "actions", "elements": [offer]})
    return blocks


def _label(payload: dict[str, Any]) -> str:
    source = str(payload.get("source", ""))
    return SOURCE_LABELS.get(source, source)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in counts.items()) or _("nothing listed")


def _sample(payload: dict[str, Any]) -> list[Block]:
    rows = [str(r) for r in payload.get("sample") or []][:SAMPLE_SHOWN]
    if not rows:
        return []
    return [section(_("*First rows*") + "\n" + "\n".join(f"\u2022 {esc(r)}" for r in rows))]


def build_sync_summary(payload: dict[str, Any]) -> tuple[str, list[Block]]:
    """The nightly run's result for one source: its counts and first rows."""
    name = _label(payload)
    counts = _counts(dict(payload.get("counts") or {}))
    if payload.get("status") == "no_changes":
        text = _(
            "Nightly sync from {source}: nothing changed ({counts}).", source=name, counts=counts
        )
    else:
        text = _("Nightly sync from {source}: {counts}.", source=name, counts=counts)
    blocks: list[Block] = [
        {"type": "header", "text": plain(_("Sync from {source}", source=name))},
        section(esc(text)),
        *_sample(payload),
    ]
    return text, blocks


def build_sync_alert(payload: dict[str, Any]) -> tuple[str, list[Block]]:
    """A run that failed, or that stopped because it would take away too much."""
    name = _label(payload)
    source = str(payload.get("source", ""))
    if payload.get("status") == "held":
        why = held_text(
            source,
            int(payload.get("removals", 0)),
            int(payload.get("base", 0)),
            float(payload.get("max_share", 0.0)),
        )
        text = _("The sync from {source} was held: nothing was changed.", source=name)
        blocks = [section(f":warning: {esc(why)}"), *_sample(payload)]
        return text, blocks
    error = esc(str(payload.get("error") or _("unknown error"))).replace("`", "'")
    text = _("The sync from {source} failed: nothing was changed.", source=name)
    then = (
        _("The next nightly run tries again.")
        if payload.get("trigger") == "nightly"
        else _("Run `devicecare sync {source}` again once the cause is fixed.", source=source)
    )
    failed = _(":x: *The sync from {source} failed*; nothing was changed.", source=esc(name))
    blocks = [
        section(f"{failed}\n`{error}`\n{then}"),
        context_block(_("`devicecare sync status` shows each source's last run.")),
    ]
    return text, blocks
