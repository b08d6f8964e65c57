"""Console entry point: ``socialrec``. The commands live in training/cli.py."""

from socialrec.training.cli import app

__all__ = ["app"]
