"""Settings of the dashboard, built once at the entry point."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WebSettings:
    """Where user dashboards live (YAML files, loaded at start) and how often live mode polls."""

    dashboards_dir: Path | None = None
    live_refresh_s: int = 15
