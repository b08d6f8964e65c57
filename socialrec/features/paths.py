"""Where relative paths are anchored: the project directory.

A config's relative paths (``dataset.root``, the SQLite tracking and event stores, MLflow's
artifact root, the experiments file) are relative to the project directory, so every command finds
the same files whatever its working directory: the root of the checkout when socialrec runs from
one (the directory holding its pyproject.toml), else the working directory (an installed wheel).
"""

from __future__ import annotations

from pathlib import Path

#: The ``socialrec`` package directory (its default configs are in ``configs/`` under it).
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def project_dir() -> Path:
    """The checkout's root when socialrec runs from one, else the working directory."""
    checkout = PACKAGE_DIR.parent
    return checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()
