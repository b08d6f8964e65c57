"""The GNN's losses against their definitions written out pair by pair, on tiny random tables."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from socialrec.models.losses import IALSLoss, PushSoftmaxLoss, SoftmaxLoss, l2_term

N_USERS, N_ITEMS, DIM = 6, 9, 4


@pytest.fixture
def batch():
    """Layer-0 table, propagated tables, and users 1, 3, 4 with their training positives."""
    g = torch.Generator().manual_seed(0)
    e0 = torch.randn(N_USERS + N_ITEMS, DIM, generator=g)
    user_emb, item_emb = torch.randn(N_USERS, DIM, generator=g), torch.randn(N_ITEMS, DIM,
                                                                             generator=g)
    users = torch.tensor([1, 3, 4])
    rows = torch.tensor([0, 0, 1, 2, 2, 2])  # row in the batch of each positive
    items = torch.tensor([2, 5, 0, 1, 5, 8])
    weights = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0, 1.5])
    return e0, user_emb, item_emb, users, rows, items, weights


def test_l2_term_sums_the_squared_rows_of_every_group():
    e0 = torch.arange(12.0).reshape(6, 2)
    assert l2_term(e0, torch.tensor([0, 1]), slice(4, None)) == 0 + 1 + 4 + 9 + 64 + 81 + 100 + 121


def test_ials_loss_is_the_weighted_squared_error_over_every_pair(batch):
    """Σ over the batch's users and every item of c_ui (p_ui - s_ui)², c = confidence and p = 1 on
    training pairs, c = 1 and p = 0 elsewhere; plus λ (‖batch users‖² + B/U ‖all items‖²); / B."""
    e0, user_emb, item_emb, users, rows, items, confidence = batch
    l2 = 0.1
    scores = user_emb[users] @ item_emb.T
    target, conf = torch.zeros_like(scores), torch.ones_like(scores)
    target[rows, items], conf[rows, items] = 1.0, confidence
    expected = (conf * (target - scores).pow(2)).sum()
    expected += l2 * (e0[users].pow(2).sum() + len(users) / N_USERS * e0[N_USERS:].pow(2).sum())
    got = IALSLoss(l2)(user_emb, item_emb, users, rows, items, confidence, e0, N_USERS)
    torch.testing.assert_close(got, expected / len(users))


def test_full_softmax_puts_each_positive_against_the_users_non_positives(batch):
    e0, user_emb, item_emb, users, rows, items, weights = batch
    t, l2 = 0.5, 0.01
    bias = torch.randn(N_ITEMS, generator=torch.Generator().manual_seed(1))
    cos = torch.nn.functional.normalize(user_emb[users], dim=-1) @ torch.nn.functional.normalize(
        item_emb, dim=-1).T
    logits = cos / t + bias
    nll = []
    for row, item in zip(rows.tolist(), items.tolist(), strict=True):
        negatives = [j for j in range(N_ITEMS) if j not in items[rows == row].tolist()]
        nll.append(torch.logsumexp(logits[row, [item, *negatives]], 0) - logits[row, item])
    expected = (weights * torch.stack(nll)).sum() / weights.sum()
    touched = torch.unique(items)
    expected += l2 * (e0[users].pow(2).sum() + e0[N_USERS + touched].pow(2).sum()) / len(users)
    full = SoftmaxLoss(t, l2)
    got = full(user_emb, item_emb, users, rows, items, weights, e0, N_USERS, bias)
    torch.testing.assert_close(got, expected)
    # a "sample" as large as the catalogue is the full softmax
    sampled = SoftmaxLoss(t, l2, negatives=N_ITEMS)
    torch.testing.assert_close(
        sampled(user_emb, item_emb, users, rows, items, weights, e0, N_USERS, bias), got)


def test_push_softmax_puts_each_positive_user_against_the_items_other_users(batch):
    """For every positive (u, i): -log softmax over the users who are not training users of i
    (and u itself) of cos(u', i)/τ + b_u'; weighted like the user-side loss."""
    _, user_emb, item_emb, users, rows, items, weights = batch
    t = 0.5
    bias = torch.randn(N_USERS, generator=torch.Generator().manual_seed(2))
    cos = torch.nn.functional.normalize(item_emb, dim=-1) @ torch.nn.functional.normalize(
        user_emb, dim=-1).T
    logits = cos / t + bias  # items x users
    train = np.zeros((N_USERS, N_ITEMS), dtype=np.float32)
    train[users[rows].numpy(), items.numpy()] = 1.0
    train[0, 5] = train[2, 2] = 1.0  # training users of touched items outside the batch
    item_users = sp.csr_matrix(train.T)
    nll = []
    for row, item in zip(rows.tolist(), items.tolist(), strict=True):
        user = int(users[row])
        negatives = [v for v in range(N_USERS) if train[v, item] == 0]
        nll.append(torch.logsumexp(logits[item, [user, *negatives]], 0) - logits[item, user])
    expected = (weights * torch.stack(nll)).sum() / weights.sum()
    full = PushSoftmaxLoss(t, item_users=item_users)
    torch.testing.assert_close(full(user_emb, item_emb, users, rows, items, weights, bias),
                               expected)
    # sampled: every positive against the same uniform draw of users (as the user-side loss)
    torch.manual_seed(0)
    pool = torch.randint(0, N_USERS, (3,))
    torch.manual_seed(0)
    got = PushSoftmaxLoss(t, negatives=3)(user_emb, item_emb, users, rows, items, weights, bias)
    nll = []
    for row, item in zip(rows.tolist(), items.tolist(), strict=True):
        pos = logits[item, int(users[row])]
        neg = torch.logsumexp(logits[item, pool], 0) + np.log(N_USERS / 3)
        nll.append(torch.logaddexp(pos, neg) - pos)
    torch.testing.assert_close(got, (weights * torch.stack(nll)).sum() / weights.sum())
