"""`scaler serve`: the HTTP server (/metrics, probes, the Alertmanager webhook) until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from scaler.errors import ConfigError, ScalerError
from scaler.server.serve import load_serve_config, serving
from scaler.units import split_listen

log = logging.getLogger(__name__)


def serve(
    config: Annotated[Path, typer.Argument(help="Serve config YAML (listen, webhook, runbooks, triggers)")],
    listen: Annotated[str | None, typer.Option(help="Override `listen`, e.g. 127.0.0.1:0")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Serve /metrics, /healthz, /readyz and the Alertmanager webhook that starts runbooks."""
    from scaler import logs

    if log_level.lower() not in logs.LEVELS:
        typer.echo(f"--log-level: expected debug, info, warning or error, got {log_level!r}", err=True)
        raise typer.Exit(2)
    logs.setup(log_level, "text")  # provider libraries' wire logging stays off, even at debug
    try:
        if listen is not None:
            split_listen(listen)
        cfg, token = load_serve_config(config)
    except ValueError as e:
        typer.echo(f"--listen: {e}", err=True)
        raise typer.Exit(2) from None
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with serving(cfg, token, source=config, listen=listen) as s:
            # One machine-readable line, so scripts and tests can find a port chosen with :0.
            typer.echo(f"scaler serve: listening on {s.server.url}")
            sys.stdout.flush()
            while not stop.wait(0.5):
                pass
            log.info("signal received: stopping (runs in flight finish first)")
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    except (ScalerError, OSError) as e:  # OSError: the journal or audit file cannot be created
        typer.echo(f"scaler serve: {e}", err=True)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    typer.run(serve)
