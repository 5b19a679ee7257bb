"""The runbook fixtures (a moto server per session, the world the shipped runbooks touch) for the CLI tests."""

from tests.runbook.conftest import _credentials, moto, moto_session, server_client, server_world  # noqa: F401
