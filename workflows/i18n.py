"""The languages families read, their catalogues, and how dates and money are written in each.

English is written in the templates and the code. Every other language is one catalogue,
`locales/<language>/LC_MESSAGES/messages.po` (in the wheel: `workflows/locales/`): the
languages offered are English and the catalogues found there, so adding a language is adding a
catalogue (docs/guides/translations.md). A catalogue is compiled when first used and kept for
the life of the process.

Dates and money are written by Babel in the language as spoken in the United States (`es_US`),
where CLDR knows that variant, else as the language itself (`vi`). Money is in US dollars and
keeps US digits ("$1,234.56") in every language: it is what the pay form reads back and what a
check is written for. Reading the catalogues and Babel's locale data is reading files that ship
with the code, as `zoneinfo` does; nothing here touches a database or the network.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date
from decimal import Decimal
from io import BytesIO
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency
from babel.support import NullTranslations, Translations

DEFAULT_LANGUAGE = "en"
DOMAIN = "messages"
COUNTRY = "US"  # where the districts are: the variant of each language dates are written in
CURRENCY = "USD"

_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(?:[-_][a-z0-9]{2,8})?$")


def _locales_dir() -> Path:
    # The wheel carries the top-level `locales/` folder inside this package (pyproject's
    # force-include); a checkout or an editable install keeps it at the top level.
    package = Path(__file__).resolve().parent
    installed = package / "locales"
    return installed if installed.is_dir() else package.parent / "locales"


LOCALES_DIR = _locales_dir()


def catalog_path(language: str, root: Path = LOCALES_DIR) -> Path:
    return root / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def _catalogued(root: Path) -> tuple[str, ...]:
    if not root.is_dir():
        return ()
    found = (p.name for p in root.iterdir() if catalog_path(p.name, root).is_file())
    return tuple(sorted(name for name in found if name != DEFAULT_LANGUAGE))


# The one list of languages a guardian may read: everything else falls back to English.
LANGUAGES: tuple[str, ...] = (DEFAULT_LANGUAGE, *_catalogued(LOCALES_DIR))


def language_candidates(language: str | None) -> list[str]:
    """Languages to try, most specific first: "es-MX" -> ["es-mx", "es", "en"]; anything
    malformed just means English."""
    tag = (language or "").strip().lower()
    found: list[str] = []
    if _LANGUAGE_RE.match(tag):
        found.append(tag.replace("_", "-"))
        primary = tag.split("-")[0].split("_")[0]
        if primary not in found:
            found.append(primary)
    if DEFAULT_LANGUAGE not in found:
        found.append(DEFAULT_LANGUAGE)
    return found


def supported_language(preferred: str | None) -> str:
    """The best of LANGUAGES for a guardian's preferred language ("es-MX" -> "es")."""
    for candidate in language_candidates(preferred):
        if candidate in LANGUAGES:
            return candidate
    return DEFAULT_LANGUAGE


@functools.cache
def translations(language: str) -> NullTranslations:
    """The compiled catalogue of a language (English and unknown languages: the msgids)."""
    path = catalog_path(language)
    if language == DEFAULT_LANGUAGE or language not in LANGUAGES or not path.is_file():
        return NullTranslations()
    with path.open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def N_(message: str) -> str:
    """Marks an English msgid kept in code for extraction (`make messages`); translated where
    it is shown, in the reader's language."""
    return message


def gettext(language: str, message: str) -> str:
    return translations(language).gettext(message)


@functools.cache
def format_locale(language: str) -> Locale:
    """The language as written in the district's country ("es" -> es_US), else on its own."""
    for tag in (f"{language}_{COUNTRY}", language):
        try:
            return Locale.parse(tag)
        except (UnknownLocaleError, ValueError):
            continue
    return Locale.parse(f"{DEFAULT_LANGUAGE}_{COUNTRY}")


@functools.cache
def _money_locale(language: str) -> Locale:
    # US digits in every language (see the module's note); the language's own US variant
    # where CLDR has one, which writes dollars the same way.
    locale = format_locale(language)
    return locale if locale.territory == COUNTRY else Locale.parse(f"{DEFAULT_LANGUAGE}_{COUNTRY}")


@functools.lru_cache(maxsize=4096)
def format_money(cents: int, language: str = DEFAULT_LANGUAGE) -> str:
    """Integer cents as dollars: 123456 -> "$1,234.56" (via Decimal, never float)."""
    return format_currency(Decimal(cents).scaleb(-2), CURRENCY, locale=_money_locale(language))


@functools.lru_cache(maxsize=4096)
def format_long_date(value: date, language: str = DEFAULT_LANGUAGE) -> str:
    """March 5, 2026 (en) / 5 de marzo de 2026 (es) / 5 tháng 3, 2026 (vi)."""
    return format_date(value, "long", locale=format_locale(language))


@functools.lru_cache(maxsize=4096)
def format_short_date(value: date, language: str = DEFAULT_LANGUAGE) -> str:
    """Mar 5, 2026 (en) / 5 mar 2026 (es) / 5 thg 3, 2026 (vi)."""
    return format_date(value, "medium", locale=format_locale(language))


# --- Staff's language --------------------------------------------------------------------------
#
# What staff read (Slack, the command line, errors from the rules) is written in English in the
# code, marked with `_()` and `ngettext()`, and read in the staff language: the district's
# (`STAFF_LANGUAGE`, set once at start), or one chosen for a piece of work with `staff_reading`.

_staff_default = DEFAULT_LANGUAGE
_staff_language: ContextVar[str | None] = ContextVar("devicecare_staff_language", default=None)


def set_staff_language(language: str) -> None:
    """The district's staff language, for the life of the process."""
    global _staff_default
    _staff_default = supported_language(language)


def staff_language() -> str:
    return _staff_language.get() or _staff_default


@contextmanager
def staff_reading(language: str | None) -> Iterator[None]:
    """Staff text in `language` (None: the district's) within the block."""
    token = _staff_language.set(None if language is None else supported_language(language))
    try:
        yield
    finally:
        _staff_language.reset(token)


def _(message: str, /, **values: object) -> str:
    """`message` in the staff language, its `{name}` placeholders filled from `values`."""
    text = translations(staff_language()).gettext(message)
    return text.format(**values) if values else text


def ngettext(singular: str, plural: str, n: int, /, **values: object) -> str:
    """The singular or plural form for `n`, in the staff language; `{n}` and `values` filled."""
    text = translations(staff_language()).ngettext(singular, plural, n)
    return text.format(n=n, **values)
