"""``ModelBundle``: everything serving needs from a trained model, as plain files (never pickle).

Layout of a bundle directory::

    meta.json            schema_version, model name, dataset + hash, config, metrics, index info
    users.npy items.npy  IdMaps (fixed-width unicode)
    user_emb.npy item_emb.npy      float32 embeddings; score = user · item
    social.npz           user×user CSR of tie strengths
    seen.npz             user×item CSR of training interactions (binary)
    purchases.npz        user×item CSR of training purchases (binary)
    popularity.npy       float32 per item
    item_category.npy    int64 per item (-1 unknown), categories in meta.json
    push_opt_in.npy      bool per user
    share_ranker.json    learned share-partner weights (optional)
    share_counts.npz share_joins.npz  sharer×recipient counts of training shares / joins (optional)
    user_index.faiss item_index.faiss  FAISS indexes over the embeddings (optional)
    warm_start/          layer-0 parameters a retrain starts from (optional; models/warm_start.py;
                         written by save, never read by load: serving does not need them)
    uplift/              uplift model: LightGBM text boosters + manifest.json (optional;
                         models/uplift.py)

Serving imports this module: it must never import torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import scipy.sparse as sp

from socialrec.features.idmap import IdMap
from socialrec.models import warm_start
from socialrec.models.uplift import MANIFEST, UpliftModel

SCHEMA_VERSION = 1


def save_csr(path: Path, m: sp.csr_matrix) -> None:
    m = m.tocsr()
    np.savez(path, indptr=m.indptr, indices=m.indices, data=m.data, shape=np.asarray(m.shape))


def load_csr(path: Path) -> sp.csr_matrix:
    with np.load(path, allow_pickle=False) as f:
        return sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"]))


@dataclass
class ModelBundle:
    users: IdMap
    items: IdMap
    user_emb: np.ndarray
    item_emb: np.ndarray
    social: sp.csr_matrix
    seen: sp.csr_matrix
    purchases: sp.csr_matrix
    popularity: np.ndarray
    item_category: np.ndarray
    push_opt_in: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    share_ranker: dict[str, Any] | None = None
    share_counts: sp.csr_matrix | None = None
    share_joins: sp.csr_matrix | None = None
    user_index: faiss.Index | None = None
    item_index: faiss.Index | None = None
    warm_start: dict[str, np.ndarray] | None = None  # saved only (models/warm_start.py)
    uplift: UpliftModel | None = None

    def __post_init__(self) -> None:
        self.meta.setdefault("schema_version", SCHEMA_VERSION)
        self.meta.setdefault("categories", [])

    @property
    def categories(self) -> list[str]:
        return self.meta["categories"]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.users.save(path / "users.npy")
        self.items.save(path / "items.npy")
        np.save(path / "user_emb.npy", np.ascontiguousarray(self.user_emb, dtype=np.float32))
        np.save(path / "item_emb.npy", np.ascontiguousarray(self.item_emb, dtype=np.float32))
        save_csr(path / "social.npz", self.social)
        save_csr(path / "seen.npz", self.seen)
        save_csr(path / "purchases.npz", self.purchases)
        np.save(path / "popularity.npy", self.popularity.astype(np.float32))
        np.save(path / "item_category.npy", self.item_category.astype(np.int64))
        np.save(path / "push_opt_in.npy", self.push_opt_in.astype(bool))
        if self.share_ranker is not None:
            (path / "share_ranker.json").write_text(json.dumps(self.share_ranker, indent=2))
        for name in ("share_counts", "share_joins"):
            if getattr(self, name) is not None:
                save_csr(path / f"{name}.npz", getattr(self, name))
        if self.user_index is not None:
            faiss.write_index(self.user_index, str(path / "user_index.faiss"))
        if self.item_index is not None:
            faiss.write_index(self.item_index, str(path / "item_index.faiss"))
        if self.warm_start is not None:
            warm_start.save_state(path, self.warm_start)
        if self.uplift is not None:
            self.uplift.save(path / "uplift")
        (path / "meta.json").write_text(json.dumps(self.meta, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ModelBundle:
        path = Path(path)
        meta = json.loads((path / "meta.json").read_text())
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"{path}: bundle schema_version {meta.get('schema_version')!r}, "
                f"this code reads {SCHEMA_VERSION}"
            )

        def index(name: str) -> faiss.Index | None:
            p = path / name
            return faiss.read_index(str(p)) if p.exists() else None

        ranker = path / "share_ranker.json"

        def optional_csr(name: str) -> sp.csr_matrix | None:
            p = path / f"{name}.npz"
            return load_csr(p) if p.exists() else None

        return cls(
            users=IdMap.load(path / "users.npy"),
            items=IdMap.load(path / "items.npy"),
            user_emb=np.load(path / "user_emb.npy", allow_pickle=False),
            item_emb=np.load(path / "item_emb.npy", allow_pickle=False),
            social=load_csr(path / "social.npz"),
            seen=load_csr(path / "seen.npz"),
            purchases=load_csr(path / "purchases.npz"),
            popularity=np.load(path / "popularity.npy", allow_pickle=False),
            item_category=np.load(path / "item_category.npy", allow_pickle=False),
            push_opt_in=np.load(path / "push_opt_in.npy", allow_pickle=False),
            meta=meta,
            share_ranker=json.loads(ranker.read_text()) if ranker.exists() else None,
            share_counts=optional_csr("share_counts"),
            share_joins=optional_csr("share_joins"),
            user_index=index("user_index.faiss"),
            item_index=index("item_index.faiss"),
            uplift=(UpliftModel.load(path / "uplift") if (path / "uplift" / MANIFEST).exists()
                    else None),
        )
