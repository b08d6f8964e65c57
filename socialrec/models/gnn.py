"""The social GNN: LightGCN propagation over user–item and trust-weighted user–user edges.

One graph holds users ``[0, U)`` and items ``[U, U + I)``. Its adjacency joins the user–item
interaction edges (weighted by event kind) and the user–user social edges (weighted by tie
strength × ``social_weight``), is normalised once and kept as a ``torch.sparse`` CSR tensor:
propagation is then one sparse matmul per layer, memory linear in edges.

- He et al., *LightGCN: Simplifying and Powering Graph Convolution Network for Recommendation*,
  SIGIR 2020 — propagation without transforms or non-linearities, mean of layer outputs, BPR loss.
- Liao et al., *SocialLGN*, Information Sciences 2022 — social edges propagate user preferences;
  the user–item and the user–user graphs are normalised separately and their messages fused
  (``social_norm="separate"``), against one normalisation of the union (``"joint"``).
- Yu et al., *Are Graph Augmentations Necessary? SimGCL*, SIGIR 2022, and *XSimGCL: Towards
  Extremely Simple Graph Contrastive Learning*, TKDE 2023 — uniform noise on propagated embeddings
  and InfoNCE between two views (SimGCL: two noisy passes; XSimGCL: one noisy pass, the final
  embedding against an intermediate layer's).

With ``social_weight = 0`` the model is plain LightGCN (the baseline ``lightgcn``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Literal, cast

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

SocialNorm = Literal["joint", "separate"]


def _sym_normalize(a: sp.csr_matrix) -> sp.csr_matrix:
    """``D^-1/2 A D^-1/2`` (rows of zero degree stay zero)."""
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg)
    nz = deg > 0
    inv_sqrt[nz] = deg[nz] ** -0.5
    d = sp.diags(inv_sqrt)
    return (d @ a @ d).tocsr()


def _csr_blocks(blocks: list[list[sp.spmatrix | None]]) -> sp.csr_matrix:
    """``sp.bmat`` in CSR format (its stubs type any result as a bare ``spmatrix``)."""
    return cast(sp.csr_matrix, sp.bmat(blocks, format="csr"))


def normalized_adjacency(
    train: sp.csr_matrix,
    social: sp.csr_matrix | None = None,
    social_weight: float = 1.0,
    weighted: bool = True,
    social_norm: SocialNorm = "joint",
) -> Tensor:
    """The normalised adjacency of the joint user+item graph, a float32 torch sparse CSR tensor.

    ``train`` is users × items (edge weights = ``log1p`` of the event weights when ``weighted``,
    else 1); ``social`` is users × users tie weights, symmetrised (``max(S, Sᵀ)``: a trust link
    lets preferences flow both ways), so the result is symmetric — :class:`SocialGNN` relies on it.

    ``social_norm="joint"``: ``D^-1/2 A D^-1/2`` of the union, social block scaled by
    ``social_weight``. ``"separate"`` (SocialLGN): the bipartite user–item block and the social
    block are each normalised on their own and added, the social one scaled by ``social_weight``.
    """
    if social_norm not in ("joint", "separate"):
        raise ValueError(f"social_norm must be 'joint' or 'separate', got {social_norm!r}")
    n_users, n_items = train.shape
    r = sp.csr_matrix(train, dtype=np.float32, copy=True)
    r.eliminate_zeros()
    # log-damped so that one heavy user–item pair does not dominate its neighbourhood
    r.data = np.log1p(r.data).astype(np.float32) if weighted else np.ones_like(r.data)
    s = sp.csr_matrix((n_users, n_users)).astype(np.float32)  # no friend edges
    if social is not None and social_weight > 0 and social.nnz:
        s = sp.csr_matrix(social, dtype=np.float32)
        s = s.maximum(s.T).tocsr()
        s.setdiag(0)
        s.eliminate_zeros()
    if social_norm == "joint":
        a = _sym_normalize(_csr_blocks([[s * social_weight, r], [r.T, None]]))
    else:
        bipartite = _sym_normalize(_csr_blocks([[None, r], [r.T, None]]))
        social_block = sp.block_diag([_sym_normalize(s) * social_weight,
                                      sp.csr_matrix((n_items, n_items))], format="csr")
        a = (bipartite + social_block).tocsr()
    a = a.astype(np.float32)
    a.sum_duplicates()
    a.sort_indices()
    with warnings.catch_warnings():
        # torch warns on every CSR tensor that its support is "beta"; the one product used here
        # (CSR @ dense) is tested against a dense LightGCN in tests/models/test_gnn.py
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(a.indptr.astype(np.int64)),
            torch.from_numpy(a.indices.astype(np.int64)),
            torch.from_numpy(a.data),
            size=a.shape,
            check_invariants=False,  # built by scipy above: canonical, sorted, in range
        )


class _SymmetricSpMM(torch.autograd.Function):
    """``A @ X`` for a constant symmetric sparse ``A``; the gradient is ``A @ G`` (``Aᵀ = A``).

    torch's generic backward of a CSR matmul builds the transpose on every call: measured on
    LastFM (174k non-zeros, 64 dims, one thread) a forward + backward over 3 layers took 135 ms
    that way against ~50 ms here.
    """

    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor) -> Tensor:
        ctx.adj = adj
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor]:
        return None, torch.sparse.mm(ctx.adj, grad.contiguous())


def propagate(adj: Tensor, x: Tensor) -> Tensor:
    """One LightGCN layer: ``adj @ x`` with ``adj`` from :func:`normalized_adjacency`."""
    return _SymmetricSpMM.apply(adj, x)


class SocialGNN(nn.Module):
    """LightGCN over the user–item–friend graph.

    Args:
        num_users: number of users ``U``.
        num_items: number of items ``I``.
        embedding_dim: size of the layer-0 embeddings.
        num_layers: propagation layers ``L``; the final embedding is the mean of layers ``0..L``.
        item_bias: learn one scalar per item beside the embeddings (the softmax loss adds it to
            the cosine logits: a cosine alone cannot say how popular an item is).
        user_bias: learn one scalar per user (the item-side softmax adds it to the cosine logits:
            a cosine alone cannot say how likely a user is to act at all).
    """

    def __init__(
        self, num_users: int, num_items: int, embedding_dim: int = 64, num_layers: int = 3,
        item_bias: bool = False, user_bias: bool = False,
    ) -> None:
        super().__init__()
        self.num_users = num_users
        self.num_items = num_items
        self.num_layers = num_layers
        self.embedding = nn.Embedding(num_users + num_items, embedding_dim)
        self.item_bias = nn.Parameter(torch.zeros(num_items)) if item_bias else None
        self.user_bias = nn.Parameter(torch.zeros(num_users)) if user_bias else None
        #: one layer, ``adj @ x``; a rank of a distributed fit multiplies its block of rows and
        #: gathers the others' (training/distributed.py)
        self.propagation: Callable[[Tensor, Tensor], Tensor] = propagate
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.embedding.weight, std=0.1)
        for bias in (self.item_bias, self.user_bias):
            if bias is not None:
                nn.init.zeros_(bias)

    def layers(self, adj: Tensor, noise_eps: float = 0.0) -> list[Tensor]:
        """Embeddings of all nodes (users first) at layers ``0..L``.

        ``noise_eps > 0`` adds SimGCL's noise to every propagated layer: a random direction in the
        embedding's own orthant, of L2 norm ``noise_eps``.
        """
        x = self.embedding.weight
        out = [x]
        for _ in range(self.num_layers):
            x = self.propagation(adj, x)
            if noise_eps > 0:
                x = x + torch.sign(x) * F.normalize(torch.rand_like(x), dim=-1) * noise_eps
            out.append(x)
        return out

    def get_embedding(self, adj: Tensor, noise_eps: float = 0.0) -> Tensor:
        """Propagated embeddings of all nodes (users first): the mean over layers ``0..L``."""
        return torch.stack(self.layers(adj, noise_eps)).mean(dim=0)

    def split(self, emb: Tensor) -> tuple[Tensor, Tensor]:
        return emb[: self.num_users], emb[self.num_users :]

    def forward(self, adj: Tensor, users: Tensor, items: Tensor) -> Tensor:
        """Scores of (user, item) pairs: inner product of propagated embeddings."""
        user_emb, item_emb = self.split(self.get_embedding(adj))
        return (user_emb[users] * item_emb[items]).sum(dim=-1)
