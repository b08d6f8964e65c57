"""socialrec: recommendation and targeted push for social e-commerce.

The packages live at the repository root (features/, models/, training/, evaluation/, serving/) and
are installed as ``socialrec.features``, ``socialrec.models``, … (see pyproject.toml).
"""

__version__ = "0.1.0"
