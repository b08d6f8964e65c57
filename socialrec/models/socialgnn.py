"""Fitting the social GNN behind the :class:`Recommender` contract: its hyper-parameters
(:class:`SocialGNNConfig`), the samplers that feed its losses (models/losses.py), and the training
loop with early stopping on validation."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, Literal, Self

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from scipy.special import logsumexp
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from socialrec.features.graph import GraphData
from socialrec.features.tie_strength import graph_tie_strength
from socialrec.models.base import Recommender, Validator
from socialrec.models.baselines import ConfidenceWeighting, implicit_confidence
from socialrec.models.gnn import SocialGNN, SocialNorm, normalized_adjacency
from socialrec.models.losses import (
    BatchShare,
    BPRLoss,
    ContrastiveLoss,
    IALSLoss,
    PushSoftmaxLoss,
    SoftmaxLoss,
)
from socialrec.models.registry import ModelConfig, register_model
from socialrec.models.runtime import LOCAL, FitHistory, FitRuntime, FitState
from socialrec.models.warm_start import (
    ITEM_BIAS,
    ITEMS,
    USER_BIAS,
    USERS,
    initial_tables,
    load_state,
)

log = logging.getLogger(__name__)


class SocialGNNConfig(ModelConfig):
    """The social GNN's hyper-parameters: the ``model.socialgnn`` section of
    configs/defaults.yaml, whose choices are measured in results/lastfm.md (ablation rows)."""

    embedding_dim: int = Field(64, description="size of user / item embeddings")
    num_layers: int = Field(2, description="LightGCN propagation layers")
    social_weight: float = Field(
        0.3, description="scale of user-user edges relative to user-item edges in propagation "
                         "(0: plain LightGCN)")
    social_norm: SocialNorm = Field(
        "joint", description="joint: one D^-1/2 A D^-1/2 of the union; separate: SocialLGN-style, "
                             "each block normalised on its own")
    tie_strength: bool = Field(
        False, description="weight friend edges by training-period tie strength (scaled to mean "
                           "1) instead of 1")
    weighted_edges: bool = Field(
        True, description="user-item edges (and softmax positives) weighted by log1p(event "
                          "weight) instead of 1")
    loss: Literal["bpr", "softmax", "ials"] = Field(
        "softmax", description="softmax: users with all their positives against the catalogue; "
                               "bpr: LightGCN's triples; ials: implicit ALS's weighted squared "
                               "loss over every pair of the batch's users")
    temperature: float = Field(0.1, description="softmax: cosine scores are divided by it")
    item_bias: bool = Field(
        False, description="softmax: a learned per-item bias added to the logits (served as one "
                           "more column)")
    item_bias_init: Literal["zero", "log_popularity"] = Field(
        "zero", description="start the item bias at zero or at the centred log of the item's "
                            "loss weight")
    push_weight: float = Field(
        0.0, ge=0.0, description="softmax: weight of the item-side softmax (each positive's user "
                                 "against the other users, for its item; a learned per-user "
                                 "bias, served as one more column) added to the loss; 0: off")
    push_negatives: int = Field(
        0, ge=0, description="push_weight > 0: 0 = every user; n > 0 = n uniformly sampled users "
                             "per step (many users)")
    calibration: Literal["none", "activity"] = Field(
        "activity", description="softmax: activity = serve tau * (log P(i|u) + log(1 + n_u)) "
                                "(n_u: the user's training items) so that a push ranks users by "
                                "how likely they are to act; item rankings of a user are "
                                "unchanged. Other losses' scores are served as they are")
    users_per_step: int = Field(
        256, description="softmax, ials: users per step (each with all its training positives)")
    confidence_alpha: float = Field(
        1.0, description="ials: a training pair's confidence is 1 + confidence_alpha * w "
                         "(unobserved pairs: 1)")
    confidence_weighting: ConfidenceWeighting = Field(
        "plain", description="ials: w = summed event weight (plain), 1 (binary) or implicit's "
                             "bm25_weight (bm25)")
    softmax_negatives: int = Field(
        0, ge=0, description="softmax: 0 = every item; n > 0 = n uniformly sampled items per step "
                             "(large catalogues)")
    batch_size: int = Field(4096, description="bpr: triples per step")
    neg_candidates: int = Field(
        1, ge=1, description="bpr: hard negatives, the best-scored of this many uniform "
                             "candidates (1: uniform)")
    lr: float = Field(1e-2, description="Adam learning rate")
    l2: float = Field(
        1e-4, description="L2 on the layer-0 embeddings of each batch (LightGCN's regulariser; "
                          "ials: ALS's λ)")
    epochs: int = Field(200, description="upper bound; early stopping usually ends sooner")
    patience: int = Field(
        10, description="epochs without validation improvement before stopping")
    eval_every: int = Field(1, description="validate every N epochs")
    max_seconds: float | None = Field(
        None, description="wall-clock budget for fitting (None: none); the best epoch so far is "
                          "kept")
    cl_weight: float = Field(
        0.0, description="SimGCL / XSimGCL contrastive term weight (0: off)")
    cl_mode: Literal["simgcl", "xsimgcl"] = Field(
        "xsimgcl", description="simgcl: two extra noisy passes; xsimgcl: one noisy pass, final "
                               "embedding against layer cl_layer")
    cl_layer: int = Field(1, description="xsimgcl: the layer contrasted with the final embedding")
    cl_eps: float = Field(0.1, description="contrastive noise magnitude")
    cl_temperature: float = Field(0.2, description="InfoNCE temperature")
    num_threads: int | None = Field(
        None, description="torch threads while fitting (None: torch's default)")
    seed: int = Field(2026, description="initialisation and sampling seed")
    warm_start: str | None = Field(
        None, description="a parent version's bundle directory: the fit starts from its layer-0 "
                          "parameters (ids it knew keep their rows, new ones start from their "
                          "graph neighbours; models/warm_start.py); set by socialrec retrain")

    @model_validator(mode="after")
    def _check_combinations(self) -> Self:
        if not 0 <= self.cl_layer <= self.num_layers:
            raise ValueError(f"cl_layer must be in 0..num_layers={self.num_layers}, "
                             f"got {self.cl_layer}")
        for name in ("item_bias", "push_weight"):
            if getattr(self, name) and self.loss != "softmax":
                raise ValueError(f"{name} needs loss 'softmax', got {self.loss!r}")
        return self


class BPRSampler:
    """Uniform (user, positive, negative) triples from the training matrix.

    A negative is resampled once when it hits a training positive; the few that still collide are
    kept (at catalogue sizes here they are < 0.1% of triples and cost nothing measurable). With
    ``n_negatives > 1`` each triple carries that many candidate negatives (for hard-negative
    selection); the shape of ``neg`` is then ``(batch, n_negatives)``.
    """

    def __init__(self, train: sp.csr_matrix, seed: int) -> None:
        coo = sp.csr_matrix(train).tocoo()
        keep = coo.data != 0
        self.users = coo.row[keep].astype(np.int64)
        self.items = coo.col[keep].astype(np.int64)
        self.n_items = train.shape[1]
        self.keys = np.sort(self.users * self.n_items + self.items)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.users)

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users * self.n_items + items
        pos = np.searchsorted(self.keys, keys)
        pos[pos == len(self.keys)] = 0
        return self.keys[pos] == keys

    def epoch(self, batch_size: int, n_negatives: int = 1):
        order = self.rng.permutation(len(self.users))
        for start in range(0, len(order), batch_size):
            sel = order[start : start + batch_size]
            users, pos = self.users[sel], self.items[sel]
            shape = (len(sel), n_negatives)
            neg = self.rng.integers(0, self.n_items, shape)
            clash = self.is_positive(np.repeat(users[:, None], n_negatives, 1), neg)
            neg[clash] = self.rng.integers(0, self.n_items, int(clash.sum()))
            if n_negatives == 1:
                neg = neg[:, 0]
            yield (torch.from_numpy(users), torch.from_numpy(pos), torch.from_numpy(neg))


def hardest_negatives(user_emb: torch.Tensor, item_emb: torch.Tensor, users: torch.Tensor,
                      candidates: torch.Tensor) -> torch.Tensor:
    """DNS (Zhang et al., *Optimizing Top-N Collaborative Filtering via Dynamic Negative Item
    Sampling*, SIGIR 2013): of each triple's candidate negatives (``(batch, n)``), the one the
    model currently scores highest."""
    with torch.no_grad():
        scores = (user_emb[users].unsqueeze(1) * item_emb[candidates]).sum(-1)
    return candidates.gather(1, scores.argmax(dim=1, keepdim=True)).squeeze(1)


class UserBatchSampler:
    """Batches of users with all their training positives, for the full-softmax loss.

    Yields ``(users, rows, items, weights)``: ``users`` the batch (shuffled), and for every
    training positive of a batch user its row in the batch, its item and its weight (the entry of
    ``train``). Scoring each user once against the whole catalogue then serves all of that user's
    positives (LastFM: ~39 per user).
    """

    def __init__(self, train: sp.csr_matrix, seed: int) -> None:
        self.train = sp.csr_matrix(train, dtype=np.float32, copy=True)
        self.train.eliminate_zeros()
        self.users = np.flatnonzero(np.diff(self.train.indptr) > 0)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.users)

    def epoch(self, users_per_step: int):
        order = self.rng.permutation(self.users)
        for start in range(0, len(order), users_per_step):
            users = order[start : start + users_per_step]
            block = self.train[users]
            rows = np.repeat(np.arange(len(users)), np.diff(block.indptr))
            yield (torch.from_numpy(users.astype(np.int64)), torch.from_numpy(rows),
                   torch.from_numpy(block.indices.astype(np.int64)), torch.from_numpy(block.data))


def calibrate_for_push(user_emb: np.ndarray, item_emb: np.ndarray, log_activity: np.ndarray,
                       temperature: float, chunk_entries: int = 1 << 24
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Served embeddings whose score is ``τ·(log P(i | u) + log_activity[u])``: one more column,
    ``τ·(log_activity[u] − logsumexp_i(s_ui / τ))`` for users and 1 for items, where ``s_ui`` is
    the served score (cosine + τ·bias) and ``P(i | u)`` the model's softmax over the catalogue.

    A softmax over items is normalised per user, so its scores say which items a user prefers but
    not which users are likely to act on an item; adding the user's log normaliser back and a log
    prior of activity makes scores comparable across users (a push), while a user's item ranking
    is unchanged (the column is constant per user). The log-sum-exp is computed over blocks of
    users of at most ``chunk_entries`` scores, never the whole users × items matrix at once."""
    lse = np.empty(len(user_emb), dtype=np.float64)
    step = max(1, chunk_entries // max(len(item_emb), 1))
    for start in range(0, len(user_emb), step):
        logits = (user_emb[start:start + step] @ item_emb.T).astype(np.float64) / temperature
        lse[start:start + step] = logsumexp(logits, axis=1)
    column = (temperature * (log_activity - lse)).astype(np.float32)
    return (np.hstack([user_emb, column[:, None]]),
            np.hstack([item_emb, np.ones((len(item_emb), 1), dtype=np.float32)]))


@contextmanager
def limit_threads(n: int | None):
    """Run torch and the BLAS under numpy with ``n`` threads inside the block (``None``: as is).

    On a machine shared with other jobs, idle-spinning worker threads cost more than they bring:
    measured on 2 busy cores, one LastFM epoch took ~1 s with one thread against ~10 s with two.
    """
    if not n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)


@register_model("socialgnn", SocialGNNConfig)
class SocialGNNRecommender(Recommender):
    """The social GNN (models/gnn.py) under one of three losses (models/losses.py);
    ``social_weight=0`` gives LightGCN. Hyper-parameters: :class:`SocialGNNConfig`, as a config or
    as keyword overrides (``SocialGNNRecommender(loss="bpr", lr=0.05)``).

    - ``social_weight``, ``social_norm``, ``tie_strength``: how friend edges enter propagation
      (see :func:`normalized_adjacency`); ``tie_strength=True`` weights each edge by
      ``features.tie_strength.graph_tie_strength`` (training-period co-activity), scaled to mean 1.
    - ``loss``: ``"bpr"`` (:class:`BPRLoss`, LightGCN's, ``batch_size`` triples a step, with
      ``neg_candidates > 1`` the :func:`hardest_negatives`), ``"softmax"`` (:class:`SoftmaxLoss`,
      ``users_per_step`` users with all their positives a step, against the whole catalogue or
      ``softmax_negatives`` sampled items) or ``"ials"`` (:class:`IALSLoss`, confidence
      ``1 + confidence_alpha * w`` with ``w`` weighted as ``confidence_weighting``; ``l2`` is then
      ALS's λ).
    - ``cl_weight > 0`` adds :class:`ContrastiveLoss`: ``"simgcl"`` contrasts two extra noisy
      passes; ``"xsimgcl"`` propagates with noise once, trains the main loss on that pass and
      contrasts its final embedding with its layer ``cl_layer``.
    - ``item_bias`` (softmax loss only): a learned scalar per item added to the cosine logits;
      served as one more embedding column (users 1, items ``temperature × bias``), so inner
      product search still ranks exactly as the loss scores. ``item_bias_init``: ``"zero"`` or
      ``"log_popularity"`` (:meth:`_init_bias_at_log_popularity`).
    """

    name = "socialgnn"
    early_stopping = True

    def __init__(self, config: SocialGNNConfig | None = None, validator: Validator | None = None,
                 **overrides: Any) -> None:
        self.config = SocialGNNConfig.with_overrides(config, overrides)
        self.validator = validator
        #: where the fit runs: this process, or a rank of torchrun (training/distributed.py)
        self.runtime: FitRuntime = LOCAL
        self.contrast = (ContrastiveLoss(self.config.cl_weight, self.config.cl_temperature)
                         if self.config.cl_weight > 0 else None)
        self.history = FitHistory()
        self.module: SocialGNN | None = None
        self._user_emb: np.ndarray | None = None
        self._item_emb: np.ndarray | None = None
        self._unseen_items = np.zeros(0, dtype=bool)
        #: how a warm start began each row (models/warm_start.py), when it did
        self.warm_start_counts: dict[str, int] = {}
        self._log_activity = np.zeros(0, dtype=np.float32)

    def adjacency(self, data: GraphData) -> torch.Tensor:
        """The normalised propagation graph of ``data`` under this model's settings."""
        c = self.config
        social = data.social
        if c.tie_strength and c.social_weight > 0 and social.nnz:
            social = graph_tie_strength(data)
            social = social * (1.0 / social.data.mean())
        return normalized_adjacency(data.train, social, social_weight=c.social_weight,
                                    weighted=c.weighted_edges, social_norm=c.social_norm)

    def training_steps(self, data: GraphData
                       ) -> tuple[Callable[[], Iterator[tuple]], Callable[..., torch.Tensor]]:
        """``(batches, step)``: ``batches()`` yields one epoch of batches for this loss and
        ``step(adj, *batch)`` returns the batch's loss (``bench/train_scale.py`` times them)."""
        c = self.config
        if c.loss == "softmax":
            weights = self._loss_weights(data.train)
            user_sampler = UserBatchSampler(weights, c.seed)
            softmax = SoftmaxLoss(c.temperature, c.l2, c.softmax_negatives)
            push = None
            if c.push_weight > 0:
                push = PushSoftmaxLoss(c.temperature, c.push_negatives, weights.T.tocsr())
            return (lambda: user_sampler.epoch(c.users_per_step),
                    partial(self._softmax_step, softmax, push))
        if c.loss == "ials":
            confidence = implicit_confidence(data.train, c.confidence_alpha,
                                             c.confidence_weighting)
            ials_sampler = UserBatchSampler(confidence, c.seed)
            return lambda: ials_sampler.epoch(c.users_per_step), partial(self._ials_step,
                                                                          IALSLoss(c.l2))
        sampler = BPRSampler(data.train, c.seed)
        return (lambda: sampler.epoch(c.batch_size, c.neg_candidates),
                partial(self._bpr_step, BPRLoss(c.l2)))

    def _loss_weights(self, train: sp.csr_matrix) -> sp.csr_matrix:
        """What each training pair counts for in the softmax loss: ``log1p`` of its event weight
        (a purchase more than a view), the same damping as the graph's edges; 1 each when
        ``weighted_edges`` is off."""
        weights = sp.csr_matrix(train, dtype=np.float32, copy=True)
        weights.eliminate_zeros()
        weights.data = np.log1p(weights.data) if self.config.weighted_edges else (
            np.ones_like(weights.data))
        return weights

    def _init_bias_at_log_popularity(self, train: sp.csr_matrix) -> None:
        """Start each item's bias at the log of its summed loss weight (centred): the optimum of a
        softmax over items with no user term. On very sparse data (BeiBei: ~2.6 training records a
        user) the model then starts from popularity and learns what users add to it; on LastFM,
        with ~39 positives a user, it over-weights popular items (configs/lastfm_models.yaml)."""
        bias = self._built().item_bias
        assert bias is not None
        counts = np.asarray(self._loss_weights(train).sum(axis=0)).ravel()
        log_counts = np.log1p(counts)
        with torch.no_grad():
            bias.copy_(torch.from_numpy(log_counts - log_counts.mean()).float())

    def _propagate(self, adj: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The served embeddings: score = user · item."""
        m = self._built()
        with torch.no_grad():
            u, i = m.split(m.get_embedding(adj))
            if self.config.loss == "softmax":
                u, i = F.normalize(u, dim=-1), F.normalize(i, dim=-1)
        dim = i.shape[1]
        t = self.config.temperature
        if m.item_bias is not None:
            # cos + τ·b ranks as the loss's cos/τ + b does
            u = torch.cat([u, torch.ones(len(u), 1)], dim=1)
            i = torch.cat([i, (t * m.item_bias.detach()).unsqueeze(1)], dim=1)
        if m.user_bias is not None:
            # the same for the user's bias: it shifts every score of the user alike, so it
            # changes no user's item ranking, only how users rank for an item
            u = torch.cat([u, (t * m.user_bias.detach()).unsqueeze(1)], dim=1)
            i = torch.cat([i, torch.ones(len(i), 1)], dim=1)
        items = i.numpy().astype(np.float32)
        # An item with no training edge keeps its random initial vector, which the cosine would
        # scale to a full-length random direction: it scores 0 instead (its learned bias, if any),
        # as in ALS. On Epinions' temporal split 26 % of the catalogue is such items.
        items[self._unseen_items, :dim] = 0.0
        users = u.numpy().astype(np.float32)
        if self.config.calibration == "activity" and self.config.loss == "softmax":
            users, items = calibrate_for_push(users, items, self._log_activity, t)
        return users, items

    def fit(self, data: GraphData, show_progress: bool = True) -> Self:
        with limit_threads(self.config.num_threads):
            return self._fit(data, show_progress)

    def _fit(self, data: GraphData, show_progress: bool) -> Self:
        c, run = self.config, self.runtime
        torch.manual_seed(c.seed)
        started = time.perf_counter()
        adj = run.adjacency(lambda: self.adjacency(data))
        self._unseen_items = np.asarray(data.train.astype(bool).sum(axis=0)).ravel() == 0
        self.module = SocialGNN(data.n_users, data.n_items, c.embedding_dim, c.num_layers,
                                item_bias=c.item_bias, user_bias=c.push_weight > 0)
        self._log_activity = np.log1p(np.diff(sp.csr_matrix(data.train).indptr)).astype(
            np.float32)
        if self.module.item_bias is not None and c.item_bias_init == "log_popularity":
            self._init_bias_at_log_popularity(data.train)
        if c.warm_start:
            self._start_from_parent(data)
        run.prepare(self.module, c)
        optimizer = torch.optim.Adam(self.module.parameters(), lr=c.lr)
        batches, step = self.training_steps(data)
        state = run.resume(self.module, optimizer) or FitState(
            best=copy.deepcopy(self.module.state_dict()))
        self.history = state.history
        started -= state.seconds
        for _ in range(1, state.epoch):  # a restart: the samplers draw the epochs done again
            for _ in batches():
                pass
        bar = tqdm(range(state.epoch, c.epochs + 1), desc=f"train {self.name}",
                   disable=not (show_progress and run.main), unit="epoch")
        for epoch in bar:
            t0 = time.perf_counter()
            for done, batch in enumerate(run.batches(batches())):
                if done < state.step:
                    continue  # stepped before a restart
                loss = step(adj, *batch)
                optimizer.zero_grad()
                loss.backward()
                run.reduce_gradients(self.module)
                optimizer.step()
                state.epoch_loss += loss.item()
                state.step += 1
                state.seconds = time.perf_counter() - started
                run.checkpoint(state, self.module, optimizer, end_of_epoch=False)
            self.history.loss.append(run.total(state.epoch_loss) / max(state.step, 1))
            self.history.epoch_seconds.append(time.perf_counter() - t0)
            postfix = {"loss": f"{self.history.loss[-1]:.4f}"}
            if self.validator is not None and epoch % c.eval_every == 0:
                value = run.validate(self.validator, *self._propagate(adj))
                self.history.valid.append((epoch, value))
                postfix["valid"] = f"{value:.4f}"
                if value > self.history.best_valid:
                    self.history.best_valid, self.history.best_epoch = value, epoch
                    self.history.seconds_to_best = time.perf_counter() - started
                    state.best = copy.deepcopy(self.module.state_dict())
                    state.stale = 0
                else:
                    state.stale += c.eval_every
            bar.set_postfix(postfix)
            state.epoch, state.step, state.epoch_loss = epoch + 1, 0, 0.0
            state.seconds = time.perf_counter() - started
            if self.validator is not None and state.stale >= c.patience:
                log.info("early stop at epoch %d (best %d)", epoch, self.history.best_epoch)
                break
            if c.max_seconds and run.any(state.seconds > c.max_seconds):
                log.info("time budget of %.0f s reached at epoch %d", c.max_seconds, epoch)
                break
            run.checkpoint(state, self.module, optimizer, end_of_epoch=True)
        if self.validator is None:
            state.best = self.module.state_dict()
            self.history.best_epoch = len(self.history.loss)
            self.history.seconds_to_best = time.perf_counter() - started
        self.module.load_state_dict(state.best)
        self._user_emb, self._item_emb = self._propagate(adj)
        run.finished()
        return self

    def _built(self) -> SocialGNN:
        if self.module is None:
            raise RuntimeError(f"{self.name}: the module is built by fit()")
        return self.module

    def _forward(self, adj: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor,
                                                    torch.Tensor, torch.Tensor]:
        """Layer outputs, their mean, and the mean split into users and items; with XSimGCL the
        propagation itself carries the noise (its loss is computed on the noisy pass)."""
        c, m = self.config, self._built()
        xsim = c.cl_weight > 0 and c.cl_mode == "xsimgcl"
        layers = m.layers(adj, noise_eps=c.cl_eps if xsim else 0.0)
        emb = torch.stack(layers).mean(dim=0)
        return (layers, emb, *m.split(emb))

    def _bpr_step(self, bpr: BPRLoss, adj: torch.Tensor, users: torch.Tensor, pos: torch.Tensor,
                  neg: torch.Tensor, share: BatchShare | None = None) -> torch.Tensor:
        m = self._built()
        layers, emb, user_emb, item_emb = self._forward(adj)
        if neg.dim() == 2:
            neg = hardest_negatives(user_emb, item_emb, users, neg)
        loss = bpr(user_emb, item_emb, users, pos, neg, m.embedding.weight, m.num_users, share)
        return self._with_contrast(loss, adj, emb, layers, users, pos)

    def _softmax_step(self, softmax: SoftmaxLoss, push: PushSoftmaxLoss | None,
                      adj: torch.Tensor, users: torch.Tensor, rows: torch.Tensor,
                      items: torch.Tensor, weights: torch.Tensor,
                      share: BatchShare | None = None) -> torch.Tensor:
        m = self._built()
        layers, emb, user_emb, item_emb = self._forward(adj)
        loss = softmax(user_emb, item_emb, users, rows, items, weights, m.embedding.weight,
                       m.num_users, m.item_bias, share)
        if push is not None:
            assert m.user_bias is not None
            loss = loss + self.config.push_weight * push(user_emb, item_emb, users, rows, items,
                                                         weights, m.user_bias)
        return self._with_contrast(loss, adj, emb, layers, users, items)

    def _ials_step(self, ials: IALSLoss, adj: torch.Tensor, users: torch.Tensor,
                   rows: torch.Tensor, items: torch.Tensor, confidence: torch.Tensor,
                   share: BatchShare | None = None) -> torch.Tensor:
        m = self._built()
        layers, emb, user_emb, item_emb = self._forward(adj)
        loss = ials(user_emb, item_emb, users, rows, items, confidence, m.embedding.weight,
                    m.num_users, share)
        return self._with_contrast(loss, adj, emb, layers, users, items)

    def _with_contrast(self, loss: torch.Tensor, adj: torch.Tensor, emb: torch.Tensor,
                       layers: list[torch.Tensor], users: torch.Tensor, items: torch.Tensor
                       ) -> torch.Tensor:
        """``loss`` plus the contrastive term over the batch's users and items, if there is one."""
        if self.contrast is None:
            return loss
        c, m = self.config, self._built()
        if c.cl_mode == "xsimgcl":
            view1, view2 = emb, layers[c.cl_layer]
        else:
            view1 = m.get_embedding(adj, noise_eps=c.cl_eps)
            view2 = m.get_embedding(adj, noise_eps=c.cl_eps)
        return loss + self.contrast(m.split(view1), m.split(view2), users, items)

    def _start_from_parent(self, data: GraphData) -> None:
        """Layer-0 parameters from the parent bundle ``warm_start`` names (models/warm_start.py);
        how each row started is kept in ``warm_start_counts``."""
        m = self._built()
        assert self.config.warm_start is not None
        weight = m.embedding.weight.detach().numpy()
        start = initial_tables(load_state(self.config.warm_start), data, weight[:m.num_users],
                               weight[m.num_users:])
        with torch.no_grad():
            m.embedding.weight.copy_(torch.from_numpy(np.vstack([start.users, start.items])))
            # getattr: a module without a per-user bias (push_weight 0) has none to start
            user_bias = getattr(m, "user_bias", None)
            for bias, values in ((m.item_bias, start.item_bias), (user_bias, start.user_bias)):
                if bias is not None and values is not None:
                    bias.copy_(torch.from_numpy(values))
        self.warm_start_counts = start.counts

    def warm_start_state(self) -> dict[str, np.ndarray] | None:
        """The fitted layer-0 embeddings (users, items) and biases, for a retrain's warm start."""
        m = self._built()
        weight = m.embedding.weight.detach().numpy()
        state = {USERS: weight[:m.num_users].copy(), ITEMS: weight[m.num_users:].copy()}
        for name, bias in ((ITEM_BIAS, m.item_bias), (USER_BIAS, getattr(m, "user_bias", None))):
            if bias is not None:
                state[name] = bias.detach().numpy().copy()
        return state

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        if self._user_emb is None or self._item_emb is None:
            raise RuntimeError(f"{self.name} is not fitted")
        return self._user_emb, self._item_emb


@register_model("lightgcn", SocialGNNConfig)
class LightGCNRecommender(SocialGNNRecommender):
    """Plain LightGCN: the same model without social edges (the baseline the GNN must beat); its
    ``social_weight`` is 0 whatever the config says."""

    name = "lightgcn"

    def __init__(self, config: SocialGNNConfig | None = None, validator: Validator | None = None,
                 **overrides: Any) -> None:
        super().__init__(config, validator, **{**overrides, "social_weight": 0.0})
