"""The social GNN's training losses, one small class each (after PyG's ``LightGCN`` / ``BPRLoss``).

Each loss is built from its hyper-parameters and called on the propagated user / item embeddings
of a step and the step's batch; ``e0`` is the layer-0 embedding table (users first, then items,
``num_users`` rows of users), on which every loss puts its L2 term through :func:`l2_term`. The
three losses normalise that term differently, as the models they come from do (each class says
how); the arithmetic is kept operation for operation, so a seed trains to the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor


def l2_term(e0: Tensor, *rows: Tensor | slice) -> Tensor:
    """``Σ_k ‖E⁰[rows_k]‖²``: the squared L2 norm of the layer-0 rows a step charges (a row listed
    in two groups counts twice). Each loss scales it by λ and normalises it its own way."""
    total = e0[rows[0]].pow(2).sum()
    for index in rows[1:]:
        total = total + e0[index].pow(2).sum()
    return total


@dataclass(frozen=True)
class BatchShare:
    """The batch a loss is called with is one rank's share of the step's batch
    (training/distributed.py). The loss then normalises by the whole batch's totals, so that the
    shares' losses add up to the whole batch's loss and their gradients to its gradient.

    ``size`` is the whole batch's users (softmax, ials) or triples (bpr); ``weight`` its summed
    loss weight (softmax); ``items`` the distinct items of the whole batch whose L2 this share
    charges (softmax: each distinct item is charged once, by one share).
    """

    size: int
    weight: float = 0.0
    items: Tensor | None = None


@dataclass(frozen=True)
class BPRLoss:
    """BPR (Rendle et al., *BPR: Bayesian Personalized Ranking from Implicit Feedback*, UAI 2009)
    on (user, positive, negative) triples, plus LightGCN's L2: ``l2`` times the squared norm of the
    batch's layer-0 rows (users, positives, negatives) over twice the batch size."""

    l2: float = 0.0

    def __call__(self, user_emb: Tensor, item_emb: Tensor, users: Tensor, pos: Tensor,
                 neg: Tensor, e0: Tensor, num_users: int, share: BatchShare | None = None
                 ) -> Tensor:
        u = user_emb[users]
        pos_scores = (u * item_emb[pos]).sum(-1)
        neg_scores = (u * item_emb[neg]).sum(-1)
        pair_loss = F.softplus(neg_scores - pos_scores)
        loss = pair_loss.mean() if share is None else pair_loss.sum() / share.size
        if self.l2 > 0:
            size = len(users) if share is None else share.size
            penalty = l2_term(e0, users, num_users + pos, num_users + neg) / (2 * size)
            loss = loss + self.l2 * penalty
        return loss


@dataclass(frozen=True)
class SoftmaxLoss:
    """Softmax loss over the catalogue for a batch of users and all their training positives.

    Scores are cosines divided by ``temperature``, plus the item's bias when the model learns one.
    Each positive competes with every item that is not a training positive of the user
    (``negatives=0``) or with a uniform sample of ``negatives`` items shared by the batch (sampled
    softmax, Bengio & Senécal 2008, with the uniform proposal's log(I / n) correction). The softmax
    (multinomial) likelihood for collaborative filtering: Liang et al., *Variational Autoencoders
    for Collaborative Filtering*, WWW 2018; with cosine and a temperature on LightGCN-style encoders
    it trains faster and ranks better than BPR (Wu et al., *On the Effectiveness of Sampled Softmax
    Loss for Item Recommendation*, TOIS 2024); the bpr_loss ablation in results/lastfm.md.

    A positive's negative log-likelihood counts ``weights`` times (its loss weight), normalised by
    the batch's total weight. L2: ``l2`` times the squared norm of the layer-0 rows of the batch's
    users and of the distinct items it touches, over the number of users.
    """

    temperature: float
    l2: float = 0.0
    negatives: int = 0

    def __call__(self, user_emb: Tensor, item_emb: Tensor, users: Tensor, rows: Tensor,
                 items: Tensor, weights: Tensor, e0: Tensor, num_users: int,
                 item_bias: Tensor | None = None, share: BatchShare | None = None) -> Tensor:
        u = F.normalize(user_emb[users], dim=-1)
        t, n_items = self.temperature, item_emb.shape[0]
        # normalise only the rows scored: a sampled step never touches most of the catalogue
        pos_scores = (u[rows] * F.normalize(item_emb[items], dim=-1)).sum(-1) / t
        if item_bias is not None:
            pos_scores = pos_scores + item_bias[items]
        if 0 < self.negatives < n_items:
            # a uniform sample shared by the batch; log(I / n) makes its log-sum-exp an estimate
            # of the whole catalogue's. A sampled item that is a positive of the user stays in:
            # at catalogue sizes that need sampling it is rare.
            pool = torch.randint(0, n_items, (self.negatives,))
            logits = u @ F.normalize(item_emb[pool], dim=-1).T / t
            if item_bias is not None:
                logits = logits + item_bias[pool]
            neg_lse = torch.logsumexp(logits, dim=1) + np.log(n_items / self.negatives)
        else:
            # every item but the user's training positives (each positive competes with the
            # negatives only, not with the user's other positives)
            logits = u @ F.normalize(item_emb, dim=-1).T / t
            if item_bias is not None:
                logits = logits + item_bias
            logits = logits.index_put((rows, items), torch.tensor(-torch.inf))
            neg_lse = torch.logsumexp(logits, dim=1)
        nll = torch.logaddexp(pos_scores, neg_lse[rows]) - pos_scores
        loss = (weights * nll).sum() / (weights.sum() if share is None else share.weight)
        if self.l2 > 0:
            if share is None:
                touched, size = torch.unique(items), len(users)
            else:
                assert share.items is not None, "a softmax share names the items it charges"
                touched, size = share.items, share.size
            loss = loss + self.l2 * l2_term(e0, users, num_users + touched) / size
        return loss


@dataclass(frozen=True)
class PushSoftmaxLoss:
    """The item-side softmax: each training positive (u, i) of the batch puts its user against the
    other users, for its item — the question a push asks (which users for this item?).

    Scores are cosines divided by ``temperature`` plus the user's learned bias (how likely the
    user is to act at all; the user-side softmax over items cannot learn it, since it cancels
    there). Each positive competes with every user who is not a training user of the item
    (``negatives=0``; ``item_users``, items × users, says who they are — without it only the
    batch's own positives are left out) or with ``negatives`` uniformly sampled users shared by the
    batch (with the log(U / n) correction of :class:`SoftmaxLoss`). Weighted by ``weights`` and
    normalised like :class:`SoftmaxLoss`; no L2 of its own (the user-side loss it is added to
    charges the rows).

    Added to the user-side softmax it makes the two-sided objective of a joint model,
    ``log P(u, i) = log P(i | u) + log P(u)`` up to constants: the item bias ranks items for a
    user, the user bias ranks users for an item, and one inner product serves both
    (models/socialgnn.py).
    """

    temperature: float
    negatives: int = 0
    item_users: sp.csr_matrix | None = field(default=None, compare=False)

    def __call__(self, user_emb: Tensor, item_emb: Tensor, users: Tensor, rows: Tensor,
                 items: Tensor, weights: Tensor, user_bias: Tensor) -> Tensor:
        t, n_users = self.temperature, user_emb.shape[0]
        touched, at = torch.unique(items, return_inverse=True)
        v = F.normalize(item_emb[touched], dim=-1)
        pos_users = users[rows]
        pos_scores = (v[at] * F.normalize(user_emb[pos_users], dim=-1)).sum(-1) / t
        pos_scores = pos_scores + user_bias[pos_users]
        if 0 < self.negatives < n_users:
            pool = torch.randint(0, n_users, (self.negatives,))
            logits = v @ F.normalize(user_emb[pool], dim=-1).T / t + user_bias[pool]
            neg_lse = torch.logsumexp(logits, dim=1) + np.log(n_users / self.negatives)
        else:
            logits = v @ F.normalize(user_emb, dim=-1).T / t + user_bias
            if self.item_users is None:
                blocked = (at, pos_users)
            else:
                block = self.item_users[touched.numpy()]
                blocked = (torch.from_numpy(np.repeat(np.arange(len(touched)),
                                                      np.diff(block.indptr))),
                           torch.from_numpy(block.indices.astype(np.int64)))
            logits = logits.index_put(blocked, torch.tensor(-torch.inf))
            neg_lse = torch.logsumexp(logits, dim=1)
        nll = torch.logaddexp(pos_scores, neg_lse[at]) - pos_scores
        return (weights * nll).sum() / weights.sum()


@dataclass(frozen=True)
class IALSLoss:
    """Implicit ALS's loss on the propagated embeddings, for a batch of users.

    Every (user, item) pair of a batch user counts: target 1 with confidence ``c_ui`` for a
    training pair, target 0 with weight 1 for every other item (Hu, Koren & Volinsky,
    *Collaborative Filtering for Implicit Feedback Datasets*, ICDM 2008). The all-items term is
    ``uᵀ (VᵀV) u`` (the Gramian of Rendle et al., *Revisiting the Performance of iALS on Item
    Recommendation Benchmarks*, RecSys 2022), so a step costs (batch + items) × d², not
    batch × items. ``l2`` is ALS's λ on the layer-0 embeddings: each step charges the batch's users
    and the batch's share (batch / users) of every item, so an epoch charges λ‖E⁰‖² once, as ALS
    does; the whole step is then divided by the number of users.
    """

    l2: float = 0.0

    def __call__(self, user_emb: Tensor, item_emb: Tensor, users: Tensor, rows: Tensor,
                 items: Tensor, confidence: Tensor, e0: Tensor, num_users: int,
                 share: BatchShare | None = None) -> Tensor:
        u = user_emb[users]
        scores = (u[rows] * item_emb[items]).sum(-1)
        # a training pair's c(1 - s)² replaces the s² that the all-pairs term counts for it
        loss = (confidence * (1 - scores).pow(2) - scores.pow(2)).sum()
        loss = loss + ((u @ (item_emb.T @ item_emb)) * u).sum()
        if self.l2 > 0:
            items_part = len(users) / num_users
            items_e0 = slice(num_users, None)
            loss = loss + self.l2 * (l2_term(e0, users) + items_part * l2_term(e0, items_e0))
        return loss / (len(users) if share is None else share.size)


def info_nce(view1: Tensor, view2: Tensor, temperature: float) -> Tensor:
    """InfoNCE between two views of the same nodes: row ``i`` of one view against every row of the
    other, the same node being the positive (SimGCL / SGL contrastive term)."""
    v1, v2 = F.normalize(view1, dim=-1), F.normalize(view2, dim=-1)
    logits = v1 @ v2.T / temperature
    labels = torch.arange(len(v1), device=v1.device)
    return F.cross_entropy(logits, labels)


@dataclass(frozen=True)
class ContrastiveLoss:
    """The SimGCL / XSimGCL term (Yu et al., *Are Graph Augmentations Necessary? SimGCL*, SIGIR
    2022; *XSimGCL*, TKDE 2023): ``weight`` times the :func:`info_nce` of two views of the
    batch's distinct users plus that of its distinct items. Views are ``(users, items)`` tables:
    SimGCL's are two noisy propagations, XSimGCL's the noisy final embedding and one of its
    layers."""

    weight: float
    temperature: float

    def __call__(self, view1: tuple[Tensor, Tensor], view2: tuple[Tensor, Tensor],
                 users: Tensor, items: Tensor) -> Tensor:
        (v1u, v1i), (v2u, v2i) = view1, view2
        uu, ii = torch.unique(users), torch.unique(items)
        t = self.temperature
        return self.weight * (info_nce(v1u[uu], v2u[uu], t) + info_nce(v1i[ii], v2i[ii], t))
