"""The flat registry of live metric sources: a new provider is one module plus one line here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from scaler.sources.base import MetricSource
from scaler.sources.prometheus import PrometheusConfig, PrometheusSource


@dataclass(frozen=True)
class Kind:
    """One provider: the pydantic model of its config section, and how to build a source from it.

    `build(config, base_dir)` reads any secrets the config points at; relative files resolve against
    `base_dir` (the directory of the config file).
    """

    config: type[BaseModel]
    build: Callable[[Any, Path | None], MetricSource]


SOURCES: dict[str, Kind] = {
    "prometheus": Kind(
        config=PrometheusConfig, build=lambda cfg, base_dir: PrometheusSource(cfg, base_dir=base_dir)
    ),
}
