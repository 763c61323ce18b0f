"""`python -m bot.cli`: the same command line as `devicecare`."""

from bot.cli.main import app

app()
