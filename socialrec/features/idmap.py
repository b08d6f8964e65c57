"""String ids <-> dense ints, stable across retrains (new ids are appended, never renumbered)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd


class IdMap:
    """Maps external string ids to dense ints ``0..n-1`` in order of first appearance.

    >>> m = IdMap(["b", "a"]); m.add(["a", "c"]); m.to_index(["c", "b"]).tolist()
    [2, 0]
    """

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        self.add(ids)

    def add(self, ids: Iterable[str]) -> np.ndarray:
        """Append ids not seen yet; return the index of every given id."""
        out = []
        for raw in ids:
            key = str(raw)
            idx = self._index.get(key)
            if idx is None:
                idx = len(self._ids)
                self._index[key] = idx
                self._ids.append(key)
            out.append(idx)
        return np.asarray(out, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, key: object) -> bool:
        return str(key) in self._index

    def get(self, key: str) -> int | None:
        return self._index.get(str(key))

    def to_index(self, ids: Iterable[str], missing: int | None = None) -> np.ndarray:
        """Index of each id; unknown ids raise ``KeyError`` unless ``missing`` gives their value."""
        if missing is None:
            return np.asarray([self._index[str(k)] for k in ids], dtype=np.int64)
        return np.asarray([self._index.get(str(k), missing) for k in ids], dtype=np.int64)

    def to_index_series(self, ids: pd.Series) -> np.ndarray:
        """Vectorised :meth:`to_index` for a pandas column (unknown ids -> -1)."""
        lookup = pd.Series(np.arange(len(self._ids), dtype=np.int64), index=self._ids)
        return ids.astype(str).map(lookup).fillna(-1).to_numpy(dtype=np.int64)

    def to_ids(self, index: Iterable[int]) -> list[str]:
        return [self._ids[int(i)] for i in index]

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def save(self, path: str | Path) -> None:
        """Saved as a fixed-width unicode ``.npy`` (loadable with ``allow_pickle=False``)."""
        np.save(Path(path), np.asarray(self._ids, dtype=str), allow_pickle=False)

    @classmethod
    def load(cls, path: str | Path) -> IdMap:
        return cls(np.load(Path(path), allow_pickle=False).tolist())
