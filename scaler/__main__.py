"""`python -m scaler` runs the command line."""

from scaler.cli import app

app()
