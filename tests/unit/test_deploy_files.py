"""The deployment files agree with the code: no container runtime or systemd runs here, so these
tests read compose.yaml, the Dockerfile, .env.example and deploy/systemd/ and check every
command they start is one the CLI has, every process is the Procfile's, and every setting is
named. (The image's install and start scripts are run by test_installed_wheel.py.)"""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from bot.cli import app
from bot.settings import Settings

REPO = Path(__file__).resolve().parents[2]
PROCESS_SERVICES = ("web", "worker", "mail", "scheduler")
VENV_BIN = "/opt/devicecare/bin/"


def _procfile() -> dict[str, list[str]]:
    """Process name -> the `devicecare` arguments it runs."""
    processes = {}
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.strip():
            name, command = line.split(":", 1)
            program, *args = shlex.split(command)
            assert program == "devicecare", line
            processes[name.strip()] = args
    return processes


def _cli_has(args: list[str]) -> bool:
    """Whether `devicecare ARGS` names a command (options and arguments after it aside)."""
    # A group has subcommands (typer carries its own copy of click, so no isinstance).
    command: Any = typer.main.get_command(app)
    for word in args:
        if not hasattr(command, "commands") or word.startswith("-"):
            break
        command = command.commands.get(word)
        if command is None:
            return False
    return not hasattr(command, "commands")


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_the_procfile_names_cli_commands() -> None:
    processes = _procfile()
    # `release` is the platform's release phase (Heroku, Dokku, Scalingo): the migration.
    assert set(processes) == {*PROCESS_SERVICES, "release"}
    assert processes["release"] == ["db", "upgrade"]
    for args in processes.values():
        assert _cli_has(args), args


def test_compose_runs_the_procfile_processes_after_migrate() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "migrate", *PROCESS_SERVICES}
    processes = _procfile()
    for name in PROCESS_SERVICES:
        service, args = services[name], processes[name]
        assert service["command"] == args, name
        assert service["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }, name
    migrate = services["migrate"]
    assert migrate["command"] == processes["release"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "healthcheck" in services["postgres"]
    assert services["web"]["healthcheck"]["test"][-1].count("/healthz") == 1


def test_compose_keeps_the_database_and_photos_in_named_volumes() -> None:
    compose = _compose()
    services = compose["services"]
    volumes = set(compose["volumes"])
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    for name in ("migrate", *PROCESS_SERVICES):
        service = services[name]
        assert service["env_file"] == ".env"
        blob_dir = service["environment"]["BLOB_DIR"]
        assert f"blobs:{blob_dir}" in service["volumes"]
        assert service["environment"]["DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:5432/" in service["environment"]["DATABASE_URL"]
    assert {"pgdata", "blobs"} <= volumes


def test_the_dockerfile_installs_with_the_tested_script_as_a_non_root_user() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in dockerfile.splitlines() if line[:1].isalpha()]
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert len(froms) == 2, "a build stage and a run stage"
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", dockerfile)
    runs = [rest for word, rest in instructions if word == "RUN"]
    assert any(rest.startswith("sh deploy/install.sh /opt/devicecare ") for rest in runs)
    users = [rest.strip() for word, rest in instructions if word == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    assert 'ENTRYPOINT ["devicecare-entrypoint"]' in dockerfile
    assert "COPY deploy/entrypoint.sh /usr/local/bin/devicecare-entrypoint" in dockerfile
    assert 'CMD ["web"]' in dockerfile
    assert re.search(r"HEALTHCHECK .*\n.*/healthz", dockerfile)


def test_the_dockerfile_uses_the_locked_uv() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    locked = re.search(r"^uv==(\S+)", (REPO / "requirements/test.txt").read_text(), re.M)
    assert locked, "requirements/test.txt pins uv"
    assert f"ARG UV_VERSION={locked.group(1)}\n" in dockerfile


def test_env_example_names_every_setting() -> None:
    text = (REPO / ".env.example").read_text()
    named = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, re.M))
    missing = {name.upper() for name in Settings.model_fields} - named
    assert not missing, f".env.example lacks {sorted(missing)}"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((REPO / "deploy" / "systemd" / name).read_text())
    return parser


@pytest.mark.parametrize("process", PROCESS_SERVICES)
def test_systemd_units_start_the_procfile_processes_after_migrate(process: str) -> None:
    unit = _unit(f"devicecare-{process}.service")
    program, *args = shlex.split(unit["Service"]["ExecStart"])
    assert program == VENV_BIN + "devicecare"
    assert args == _procfile()[process]
    assert unit["Service"]["EnvironmentFile"] == "/etc/devicecare/devicecare.env"
    assert unit["Service"]["User"] not in ("", "root")
    assert "devicecare-migrate.service" in unit["Unit"]["Requires"].split()
    assert "devicecare-migrate.service" in unit["Unit"]["After"].split()
    wanted = _unit("devicecare.target")["Unit"]["Wants"].split()
    assert f"devicecare-{process}.service" in wanted


def test_the_systemd_migrate_unit_upgrades_once() -> None:
    unit = _unit("devicecare-migrate.service")
    program, *args = shlex.split(unit["Service"]["ExecStart"])
    assert program == VENV_BIN + "devicecare" and args == _procfile()["release"]
    assert unit["Service"]["Type"] == "oneshot"
    assert unit["Service"]["RemainAfterExit"] == "yes"
    assert unit["Service"]["EnvironmentFile"] == "/etc/devicecare/devicecare.env"
    units = {p.name for p in (REPO / "deploy" / "systemd").iterdir()}
    expected = {f"devicecare-{p}.service" for p in (*PROCESS_SERVICES, "migrate")}
    assert units == expected | {"devicecare.target"}


def test_cli_check_refuses_unknown_commands() -> None:
    assert not _cli_has(["db", "nonsense"]) and not _cli_has(["db"])
    assert _cli_has(["fees", "apply", "techfee"])
