"""The social GNN: LightGCN propagation over user–item and trust-weighted user–user edges.

One graph holds users ``[0, U)`` and items ``[U, U + I)``. Its adjacency is the union of the
user–item interaction edges (weighted by event kind) and the user–user social edges (weighted by tie
strength × ``social_weight``), symmetrically normalised once, ``D^-1/2 A D^-1/2``, and kept as a
``torch.sparse`` CSR tensor: propagation is then one sparse matmul per layer, memory linear in edges.

- He et al., *LightGCN: Simplifying and Powering Graph Convolution Network for Recommendation*,
  SIGIR 2020 — propagation without transforms or non-linearities, mean of layer outputs, BPR loss.
- Liao et al., *SocialLGN*, Information Sciences 2022 — social edges propagate user preferences.
- Yu et al., *Are Graph Augmentations Necessary? SimGCL*, SIGIR 2022 — the optional contrastive term
  (uniform noise on propagated embeddings, InfoNCE between two noisy views).

With ``social_weight = 0`` the model is plain LightGCN (the baseline ``lightgcn``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import LGConv


def normalized_adjacency(
    train: sp.csr_matrix,
    social: sp.csr_matrix | None = None,
    social_weight: float = 1.0,
    weighted: bool = True,
) -> Tensor:
    """``D^-1/2 A D^-1/2`` of the joint user+item graph as a float32 torch sparse CSR tensor.

    ``train`` is users × items (edge weights = event weights when ``weighted``, else 1);
    ``social`` is users × users tie weights (assumed symmetric for the normalisation to be symmetric).
    """
    n_users, n_items = train.shape
    r = train.tocsr().astype(np.float32)
    if not weighted:
        r = r.copy()
        r.data[:] = 1.0
    else:
        # log-damped so that one heavy user–item pair does not dominate its neighbourhood
        r = r.copy()
        r.data = np.log1p(r.data).astype(np.float32)
    s = sp.csr_matrix((n_users, n_users), dtype=np.float32)
    if social is not None and social_weight > 0 and social.nnz:
        s = (social.astype(np.float32) * social_weight).tocsr()
    a = sp.bmat([[s, r], [r.T, None]], format="csr", dtype=np.float32)
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg)
    nz = deg > 0
    inv_sqrt[nz] = deg[nz] ** -0.5
    d = sp.diags(inv_sqrt)
    a = (d @ a @ d).tocsr().astype(np.float32)
    a.sort_indices()
    return torch.sparse_csr_tensor(
        torch.from_numpy(a.indptr.astype(np.int64)),
        torch.from_numpy(a.indices.astype(np.int64)),
        torch.from_numpy(a.data),
        size=a.shape,
    )


class SocialGNN(nn.Module):
    """LightGCN over the user–item–friend graph.

    Args:
        num_users: number of users ``U``.
        num_items: number of items ``I``.
        embedding_dim: size of the layer-0 embeddings.
        num_layers: propagation layers ``L``; the final embedding is the mean of layers ``0..L``.
    """

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64, num_layers: int = 3):
        super().__init__()
        self.num_users = num_users
        self.num_items = num_items
        self.num_layers = num_layers
        self.embedding = nn.Embedding(num_users + num_items, embedding_dim)
        # normalize=False: the adjacency arrives pre-normalised (cheaper than per-step gcn_norm)
        self.convs = nn.ModuleList(LGConv(normalize=False) for _ in range(num_layers))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.embedding.weight, std=0.1)

    def get_embedding(self, adj: Tensor, noise_eps: float = 0.0) -> Tensor:
        """Propagated embeddings of all nodes (users first), mean over layers.

        ``noise_eps > 0`` adds SimGCL's uniform noise (sign-aligned, L2 norm ``eps``) at each layer.
        """
        x = self.embedding.weight
        out = x / (self.num_layers + 1)
        for conv in self.convs:
            x = conv(x, adj)
            if noise_eps > 0:
                noise = F.normalize(torch.rand_like(x), dim=-1) * torch.sign(x) * noise_eps
                x = x + noise
            out = out + x / (self.num_layers + 1)
        return out

    def split(self, emb: Tensor) -> tuple[Tensor, Tensor]:
        return emb[: self.num_users], emb[self.num_users :]

    def forward(self, adj: Tensor, users: Tensor, items: Tensor) -> Tensor:
        """Scores of (user, item) pairs: inner product of propagated embeddings."""
        user_emb, item_emb = self.split(self.get_embedding(adj))
        return (user_emb[users] * item_emb[items]).sum(dim=-1)

    def bpr_loss(
        self, user_emb: Tensor, item_emb: Tensor, users: Tensor, pos: Tensor, neg: Tensor, l2: float
    ) -> Tensor:
        """BPR (Rendle et al., UAI 2009) + L2 on the layer-0 embeddings of the batch (LightGCN)."""
        u = user_emb[users]
        pos_scores = (u * item_emb[pos]).sum(-1)
        neg_scores = (u * item_emb[neg]).sum(-1)
        loss = F.softplus(neg_scores - pos_scores).mean()
        if l2 > 0:
            e0 = self.embedding.weight
            reg = (
                e0[users].pow(2).sum()
                + e0[self.num_users + pos].pow(2).sum()
                + e0[self.num_users + neg].pow(2).sum()
            ) / (2 * len(users))
            loss = loss + l2 * reg
        return loss

    @staticmethod
    def infonce(view1: Tensor, view2: Tensor, temperature: float) -> Tensor:
        """InfoNCE between two views of the same nodes (SimGCL / SGL contrastive term)."""
        v1, v2 = F.normalize(view1, dim=-1), F.normalize(view2, dim=-1)
        logits = v1 @ v2.T / temperature
        labels = torch.arange(len(v1), device=v1.device)
        return F.cross_entropy(logits, labels)
