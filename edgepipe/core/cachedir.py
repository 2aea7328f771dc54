"""Where edgepipe keeps what it can make again (measurements, packaged models, venvs, the agent):
one definition of the user's cache folder, so every cache moves together with $XDG_CACHE_HOME."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """$XDG_CACHE_HOME/edgepipe/PARTS (~/.cache/edgepipe/PARTS when unset or empty); not created."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "edgepipe", *parts)
