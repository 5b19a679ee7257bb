"""The flat registry of live metric sources, `kind -> config model`: a new provider is one module plus one
line here. A model builds its source with `config.build(SourceContext(base_dir=...))`."""

from __future__ import annotations

from scaler.sources.base import SourceConfig
from scaler.sources.prometheus import PrometheusConfig

SOURCES: dict[str, type[SourceConfig]] = {
    "prometheus": PrometheusConfig,
}
