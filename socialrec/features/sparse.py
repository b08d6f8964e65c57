"""Small sparse-matrix helpers shared by graph building, tie strength, models and evaluation."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: The sparse matrices the helpers take (any scipy format converts; these are the ones used).
SparseMatrix = sp.csr_matrix | sp.csc_matrix | sp.coo_matrix


def binary(m: SparseMatrix) -> sp.csr_matrix:
    """A float32 CSR copy of ``m`` with every stored nonzero set to 1 (duplicates merged first)."""
    m = sp.csr_matrix(m, dtype=np.float32, copy=True)
    m.eliminate_zeros()
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def is_binary(m: SparseMatrix) -> bool:
    """Already what :func:`binary` makes (canonical CSR of ones): callers can skip the copy."""
    return (isinstance(m, sp.csr_matrix) and m.has_canonical_format
            and bool((m.data == 1).all()))
