"""`devicecare secret …`: make the key that signs links, reply addresses and Slack values;
and what every long-running process does with its secrets before it starts."""

from __future__ import annotations

import typer

from bot.config_errors import ConfigurationError
from bot.log_redaction import install_log_redaction
from bot.secret_key import generate_secret_key, secret_key_problem
from bot.settings import Settings
from workflows.i18n import N_

secret_app = typer.Typer(
    help=N_("The key that signs family links and reply addresses."), no_args_is_help=True
)


@secret_app.command(
    "generate",
    help=N_(
        "Print a new random SECRET_KEY (to put in the environment or .env).\n"
        "\n"
        "To rotate, move the old key into SECRET_KEY_PREVIOUS so links already sent keep working."
    ),
)
def generate() -> None:
    typer.echo(generate_secret_key())


def guard_secrets(settings: Settings) -> None:
    """Refuse to start with a weak SECRET_KEY where it matters (a ConfigurationError: one line,
    exit status 2), then keep every secret out of the logs from here on."""
    problem = secret_key_problem(settings)
    if problem is not None:
        raise ConfigurationError([f"Configuration error: {problem}"])
    install_log_redaction(settings)
