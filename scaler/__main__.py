"""`python -m scaler` runs the command line."""

from scaler.cli.main import app

app()
