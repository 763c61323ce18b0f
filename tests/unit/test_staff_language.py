"""Staff text: English in the code, read in the district's staff language or one chosen for a
piece of work."""

from __future__ import annotations

import pytest

from bot.settings import Settings
from workflows.i18n import (
    _,
    ngettext,
    set_staff_language,
    staff_language,
    staff_reading,
    translations,
)


@pytest.fixture(autouse=True)
def _english_after() -> object:
    yield None
    set_staff_language("en")


def a_translated_message(language: str) -> tuple[str, str]:
    """A msgid with no placeholders that `language`'s catalogue translates."""
    catalogue = translations(language)
    for msgid, msgstr in catalogue._catalog.items():  # type: ignore[attr-defined]
        if isinstance(msgid, str) and msgid and "{" not in msgid and "%" not in msgid:
            if msgstr and msgstr != msgid:
                return msgid, msgstr
    raise AssertionError(f"nothing translated in {language}")


def test_english_is_the_code_and_values_fill_placeholders() -> None:
    assert staff_language() == "en"
    assert _("Invoice {number} was sent.", number="INV-7") == "Invoice INV-7 was sent."
    assert _("Costs {x}") == "Costs {x}"  # no values: the text as written, braces and all
    assert ngettext("{n} photo", "{n} photos", 1) == "1 photo"
    assert ngettext("{n} photo", "{n} photos", 3) == "3 photos"


@pytest.mark.parametrize("language", ["es", "vi"])
def test_the_district_language_and_a_chosen_one(language: str) -> None:
    msgid, msgstr = a_translated_message(language)
    set_staff_language(language)
    assert staff_language() == language
    assert _(msgid) == msgstr
    with staff_reading("en"):
        assert _(msgid) == msgid
    assert _(msgid) == msgstr


def test_unknown_languages_read_english() -> None:
    set_staff_language("xx")
    assert staff_language() == "en"
    with staff_reading("es-MX"):
        assert staff_language() == "es"


def test_the_setting_takes_only_a_catalogued_language() -> None:
    assert Settings(_env_file=None, staff_language=" ES ").staff_language == "es"
    with pytest.raises(ValueError, match="no catalogue"):
        Settings(_env_file=None, staff_language="klingon")
