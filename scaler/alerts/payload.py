"""The Alertmanager webhook payload (version 4) as typed data, and a one-alert payload for other callers."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Unknown keys are ignored so a newer Alertmanager that adds fields keeps working; every field the dispatch
# relies on is required and typed.


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Alert(_Payload):
    """One alert as Alertmanager sends it; `fingerprint` identifies its label set."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: datetime  # field names are Alertmanager's wire names
    endsAt: datetime
    generatorURL: str
    fingerprint: str = Field(min_length=1, max_length=128)


class Payload(_Payload):
    """A webhook notification: one group of alerts sharing a route and group labels."""

    version: Literal["4"]
    receiver: str
    status: Literal["firing", "resolved"]
    alerts: list[Alert]
    groupLabels: dict[str, str]
    commonLabels: dict[str, str]
    commonAnnotations: dict[str, str]
    externalURL: str
    groupKey: str
    truncatedAlerts: int = Field(ge=0)


def synthetic_payload(
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
    *,
    status: Literal["firing", "resolved"] = "firing",
    starts_at: datetime,
    receiver: str = "scaler",
) -> Payload:
    """A one-alert payload for callers that are not Alertmanager (health rules), fingerprinted like it."""
    # Same idea as Alertmanager's fingerprint: a stable hash of the sorted label set.
    digest = hashlib.sha256("\xff".join(f"{k}\xfe{v}" for k, v in sorted(labels.items())).encode())
    alert = Alert(
        status=status,
        labels=labels,
        annotations=annotations or {},
        startsAt=starts_at,
        endsAt=datetime(1, 1, 1, tzinfo=UTC),
        generatorURL="",
        fingerprint=digest.hexdigest()[:16],
    )
    return Payload(
        version="4",
        receiver=receiver,
        status=status,
        alerts=[alert],
        groupLabels={},
        commonLabels=labels,
        commonAnnotations=alert.annotations,
        externalURL="",
        groupKey="",
        truncatedAlerts=0,
    )
