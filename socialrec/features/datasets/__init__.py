"""Loaders of the real public datasets (``<data root>/<name>/``, each with a SOURCE.md).

Importing this package registers every loader with features.loader under its directory name.
"""

from socialrec.features.datasets import bdsc, beibei, brightkite, epinions, lastfm

__all__ = ["bdsc", "beibei", "brightkite", "epinions", "lastfm"]
