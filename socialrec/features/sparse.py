"""Small sparse-matrix helpers shared by graph building, tie strength, models and evaluation."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def binary(m: sp.spmatrix) -> sp.csr_matrix:
    """A float32 CSR copy of ``m`` with every stored nonzero set to 1 (duplicates merged first)."""
    m = sp.csr_matrix(m, dtype=np.float32, copy=True)
    m.eliminate_zeros()
    m.sum_duplicates()
    m.data[:] = 1.0
    return m
