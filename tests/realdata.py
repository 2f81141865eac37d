"""Where the real captures and videos live, and how tests skip without them.

The data stays outside the repository (licences differ, the repo stays small):
``../shared/data`` next to the project root, or ``$FOOTFALL_REAL_DATA``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO_ROOT = Path(__file__).resolve().parent.parent


def real_data_dir() -> Path:
    """The real-data folder; it may not exist on a developer's machine."""
    return Path(os.environ.get("FOOTFALL_REAL_DATA", _REPO_ROOT.parent / "shared" / "data"))


def require_real_data(relpath: str) -> Path:
    """Path of one real-data file, or skip the calling test with the reason."""
    path = real_data_dir() / relpath
    if not path.exists():
        pytest.skip(f"real data {relpath} not found under {real_data_dir()} (set FOOTFALL_REAL_DATA)")
    return path
