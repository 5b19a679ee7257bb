"""A moto server on a free 127.0.0.1 port, in this process's threads: start, reset between tests, stop."""

from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from moto.server import ThreadedMotoServer

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class MotoServer:
    """A running server; `url` is the endpoint_url every boto3 client should use."""

    url: str

    def reset(self) -> None:
        """Forget every resource (the server keeps state across clients and tests otherwise)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()


def use_test_credentials() -> None:
    """Fake credentials, and no stray retry settings from the environment that would change call counts."""
    os.environ.update(CREDENTIALS)
    for var in ("AWS_PROFILE", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        os.environ.pop(var, None)


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    """Start a ThreadedMotoServer on port 0 (the OS picks a free one) and stop it afterwards."""
    use_test_credentials()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per call is noise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield MotoServer(url=f"http://{host}:{port}")
    finally:
        server.stop()
