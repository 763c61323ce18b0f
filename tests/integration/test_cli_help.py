"""`devicecare --help` and every command's help read the staff language (STAFF_LANGUAGE)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bot.cli import app
from bot.reports.catalogue import REPORTS
from bot.settings import get_settings
from workflows.i18n import gettext, set_staff_language
from workflows.portal_import import PRESETS

WIDE = {"COLUMNS": "400"}  # one line per help text, so whole sentences can be looked for


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.delenv("STAFF_LANGUAGE", raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield monkeypatch
    set_staff_language("en")
    get_settings.cache_clear()


def help_of(*words: str) -> str:
    result = CliRunner().invoke(app, [*words, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


def test_help_reads_spanish_when_the_staff_do(cli_env: pytest.MonkeyPatch) -> None:
    cli_env.setenv("STAFF_LANGUAGE", "es")
    get_settings.cache_clear()
    root = help_of()
    assert (
        "DeviceCare: dispositivos estudiantiles dañados y perdidos, desde el reporte hasta el pago."
        in root
    )
    assert "Imprimir la versión instalada y salir." in root  # an option
    assert "Personal y roles." in root  # a group in the list of commands
    assert "Entregar los avisos y las publicaciones de Slack en cola." in root  # a command
    assert "Staff and roles." not in root

    add = help_of("staff", "add")
    assert "Agregar un miembro del personal (o cambiar su rol) antes de que esté en Slack." in add
    assert "El correo de trabajo del miembro del personal." in add  # the argument
    assert "Nombre del rol, p. ej. Technician." in add  # an option
    assert "Display name." not in add

    report = REPORTS["overdue"]
    assert report.columns is not None
    title, description = (
        gettext("es", report.columns.title),
        gettext("es", report.columns.description),
    )
    assert title != report.columns.title
    overdue = help_of("report", "overdue")
    assert (
        f"{title}: {description}" in overdue
    )  # a report's help, made of its title and description
    assert "Escribir cada fila como CSV." in overdue

    # The command tree typer builds next stays English (the documentation is made from it).
    fresh = typer.main.get_command(app)
    assert fresh.help == "DeviceCare: damaged and lost student devices, from report to payment."


def test_help_stays_english_by_default(cli_env: pytest.MonkeyPatch) -> None:
    root = help_of()
    assert "DeviceCare: damaged and lost student devices, from report to payment." in root
    assert "Print the installed version and exit." in root
    assert "Staff and roles." in root
    add = help_of("staff", "add")
    assert "Add a staff member (or change their role) before they are in Slack." in add
    assert "The staff member's work email." in add
    assert "Role name, e.g. Technician." in add
    report = REPORTS["overdue"]
    assert report.columns is not None
    assert f"{report.columns.title}: {report.columns.description}" in help_of("report", "overdue")


def test_help_is_english_when_the_settings_cant_be_read(cli_env: pytest.MonkeyPatch) -> None:
    cli_env.setenv("STAFF_LANGUAGE", "es")
    cli_env.setenv("PORT", "not-a-port")
    get_settings.cache_clear()
    assert "Staff and roles." in help_of()


def test_the_preset_option_names_every_preset() -> None:
    # Its help is one msgid, so the preset names are written out in it.
    payments = typer.main.get_command(app).commands["payments"]  # type: ignore[attr-defined]
    preset = next(p for p in payments.commands["import"].params if p.name == "preset")
    assert f"({', '.join(sorted(PRESETS))})" in preset.help
