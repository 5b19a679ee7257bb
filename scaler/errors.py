"""The project's one error hierarchy: bad input, and provider errors marked transient or permanent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ScalerError(Exception):
    """Root of every error scaler raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where (a dotted field path, a row, a column) and what."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}" if self.where else self.what


class InputError(ScalerError):
    """A file or payload a user gave us is wrong. Lists every problem found, naming the source."""

    kind = "input"

    def __init__(self, source: str, problems: Sequence[Problem] | str):
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        self.source = str(source)
        self.problems = list(problems)
        super().__init__(self.message())

    def message(self) -> str:
        head = f"{self.source}: invalid {self.kind}"
        if len(self.problems) == 1:
            return f"{head}: {self.problems[0]}"
        lines = [f"{head} ({len(self.problems)} problems):"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class ConfigError(InputError):
    """A policy, runbook or controller config that does not validate."""

    kind = "config"


class DataError(InputError):
    """Recorded metrics (CSV, Prometheus JSON) that cannot be replayed as they are."""

    kind = "data"


class ProviderError(ScalerError):
    """A call to an outside system failed. `transient` says whether retrying can help."""

    transient: bool = False

    def __init__(self, message: str, *, provider: str = "", code: str = ""):
        self.provider = provider
        self.code = code
        super().__init__(message)


class TransientError(ProviderError):
    """Throttling, 5xx, connection resets, timeouts: worth retrying with backoff."""

    transient = True


class PermanentError(ProviderError):
    """Validation, access denied, not found: retrying cannot help."""

    transient = False
