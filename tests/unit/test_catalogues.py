"""Every catalogue shipped translates every message the templates and the code mark, fully.

The messages are extracted as `make messages` does (babel.cfg); a msgid missing from a
catalogue, left empty or fuzzy, or translated with other placeholders than it has, fails here,
so no family ever reads a sentence half in English or a notice that can't fill in its amounts.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
from babel.messages.catalog import Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from workflows.i18n import DEFAULT_LANGUAGE, LANGUAGES, LOCALES_DIR, catalog_path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("bot", "services", "storage", "workflows", "templates")
CATALOGUED = [language for language in LANGUAGES if language != DEFAULT_LANGUAGE]
# %(name)s (templates, python-format) and {name} (str.format in code); "%%" is a literal.
_PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|\{(\w+)\}")

Key = tuple[str | None, str]


@functools.cache
def extracted() -> dict[Key, str | tuple[str, ...]]:
    """(context, msgid) -> the msgid (a (singular, plural) pair for plurals)."""
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)

    def ours(dirname: str) -> bool:
        parts = Path(dirname).relative_to(ROOT).parts
        return not parts or parts[0] in SOURCES

    found: dict[Key, str | tuple[str, ...]] = {}
    for _file, _line, message, _comments, context in extract_from_dir(
        str(ROOT), method_map, options_map, directory_filter=ours
    ):
        if isinstance(message, tuple):
            if None in message:  # a call whose text isn't a literal: nothing to translate
                continue
            key = (context, message[0])
        else:
            key = (context, message)
        found[key] = message
    return found


def _placeholders(text: str) -> set[str]:
    return {a or b for a, b in _PLACEHOLDER.findall(text.replace("%%", ""))}


def _strings(value: str | tuple[str, ...] | list[str] | None) -> list[str]:
    if value is None:
        return [""]
    return [value] if isinstance(value, str) else list(value)


def test_the_extraction_finds_the_templates_and_the_code() -> None:
    messages = extracted()
    assert (None, "Dear %(full_name)s,") in messages  # the notices' base template
    assert (None, "Original subtotal") in messages  # workflows/invoice_audit.py, via N_()
    assert ("payment method", "check") in messages  # bot/mail/render.py, via pgettext()
    assert len(messages) > 300


def test_there_is_a_catalogue_beside_english() -> None:
    assert {"es", "vi"} <= set(CATALOGUED)
    for language in CATALOGUED:
        assert catalog_path(language).is_file()
    assert (LOCALES_DIR / "messages.pot").is_file()


@pytest.mark.parametrize("language", CATALOGUED)
def test_every_message_is_translated_with_the_same_placeholders(language: str) -> None:
    with catalog_path(language).open("rb") as po:
        catalog = read_po(po, locale=language)
    problems: list[str] = []
    for (context, msgid), message in sorted(extracted().items(), key=str):
        entry: Message | None = catalog.get(msgid, context=context)
        name = f"{context}|{msgid}" if context else msgid
        if entry is None:
            problems.append(f"missing: {name!r}")
            continue
        if entry.fuzzy:
            problems.append(f"fuzzy: {name!r}")
        translations = _strings(entry.string)
        if any(not text for text in translations):
            problems.append(f"untranslated: {name!r}")
            continue
        expected = set().union(*(_placeholders(text) for text in _strings(message)))
        for text in translations:
            got = _placeholders(text)
            # A plural form may leave out the count ("1 día"), never add or rename anything.
            allowed = expected | {"num"} if isinstance(message, tuple) else expected
            if not got <= allowed or not (expected - {"num"}) <= got:
                problems.append(f"placeholders {sorted(got)} != {sorted(expected)}: {name!r}")
    assert not problems, f"{language}: " + "\n".join(problems)
