"""Errors a runbook run can end with, all under ScalerError so callers catch one root."""

from __future__ import annotations

from scaler.errors import InputError, ScalerError


class ParamError(InputError):
    """Run parameters that do not fit the runbook's declared parameters (every problem listed)."""

    kind = "parameters"


class RunbookNotFound(ScalerError):
    """No runbook with this name in the runbooks directory."""


class RunNotFound(ScalerError):
    """No run with this id in the journal."""


class NotARunbookName(RunbookNotFound):
    """Text given as a runbook name that cannot be one (a path, say): refused before any file is read."""


class NotARunId(RunNotFound):
    """Text given as a run id that cannot be one (a path, say): refused before any lock file is made."""


class RunConflict(ScalerError):
    """Another unfinished run holds the same concurrency scope; the new run is refused, not queued."""

    def __init__(self, message: str, *, scope: str, holder: str) -> None:
        self.scope = scope
        self.holder = holder
        super().__init__(message)


class RunBusy(ScalerError):
    """Another process or thread is executing this run right now."""


class ApprovalError(ScalerError):
    """An approval that cannot be accepted: nothing is waiting, or this person may not approve."""


class StepFailed(ScalerError):
    """A step's action, verification or deadline failed in a way retrying did not fix."""


class StepTimeout(StepFailed):
    """A step ran out of its `timeout` while waiting or retrying."""
