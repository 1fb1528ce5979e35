"""Where the harness keeps downloads and builds."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_cache_dir() -> Path:
    """$HMM_HARNESS_CACHE, else $XDG_CACHE_HOME/hmm-harness, else ~/.cache/hmm-harness."""
    if explicit := os.environ.get("HMM_HARNESS_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hmm-harness"
