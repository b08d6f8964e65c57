"""The social GNN module on tiny random graphs (after PyG's LightGCN tests)."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from socialrec.models.gnn import SocialGNN, normalized_adjacency
from socialrec.models.losses import BPRLoss, info_nce


def random_graph(n_users: int, n_items: int, density: float, seed: int):
    rng = np.random.default_rng(seed)
    train = sp.random(n_users, n_items, density=density, random_state=rng, format="csr",
                      dtype=np.float32)
    train.data[:] = rng.integers(1, 5, train.nnz)
    s = sp.random(n_users, n_users, density=density, random_state=rng, format="csr")
    social = ((s + s.T) > 0).astype(np.float32)
    social.setdiag(0)
    social.eliminate_zeros()
    return train, social.tocsr()


@pytest.mark.parametrize(("n_users", "n_items", "layers"), [(5, 7, 1), (20, 11, 2), (40, 60, 3)])
def test_adjacency_is_symmetric_and_normalised(n_users, n_items, layers):
    train, social = random_graph(n_users, n_items, 0.2, seed=n_users)
    adj = normalized_adjacency(train, social).to_dense().numpy()
    n = n_users + n_items
    assert adj.shape == (n, n)
    np.testing.assert_allclose(adj, adj.T, atol=1e-6)
    # D^-1/2 A D^-1/2 has spectral radius 1 (largest eigenvalue of a normalised adjacency).
    assert np.max(np.abs(np.linalg.eigvalsh(adj))) == pytest.approx(1.0, abs=1e-4)
    # no user-item block leaks into item-item
    assert np.all(adj[n_users:, n_users:] == 0)


def test_social_weight_zero_removes_user_user_block():
    train, social = random_graph(10, 8, 0.3, seed=1)
    with_social = normalized_adjacency(train, social, social_weight=1.0).to_dense().numpy()
    without = normalized_adjacency(train, social, social_weight=0.0).to_dense().numpy()
    assert np.any(with_social[:10, :10] != 0)
    assert np.all(without[:10, :10] == 0)


def test_propagation_matches_dense_lightgcn():
    train, social = random_graph(12, 9, 0.3, seed=3)
    adj = normalized_adjacency(train, social)
    model = SocialGNN(12, 9, embedding_dim=8, num_layers=2)
    dense = adj.to_dense()
    x0 = model.embedding.weight
    x1 = dense @ x0
    x2 = dense @ x1
    expected = (x0 + x1 + x2) / 3
    torch.testing.assert_close(model.get_embedding(adj), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_propagation_matches_pyg_lightgcn(layers):
    """Our propagation is PyG's LightGCN (torch_geometric.nn.models.LightGCN, 2.8) on the bipartite
    graph.

    Compared: with its friend edges dropped (``social_weight=0``) and every interaction counting 1
    (``weighted=False``), ``normalized_adjacency`` is ``D^-1/2 A D^-1/2`` of the symmetric
    user–item graph; LGConv applies ``gcn_norm(..., add_self_loops=False)`` to an ``edge_index``
    that holds every training pair in both directions (user ``u`` is node ``u``, item ``i`` node
    ``U + i``). First the two normalised matrices, then, from the same layer-0 embeddings and with
    the same number of layers, ``SocialGNN.get_embedding`` (mean of layers ``0..L``) against
    ``LightGCN.get_embedding`` with its default ``alpha = 1 / (L + 1)`` (PyG's plain edge_index
    path, no torch-sparse). Equal to float32 rounding: atol 1e-6 on embeddings of scale 0.1 (the
    two sum the same products in another order).
    """
    from torch_geometric.nn.conv.gcn_conv import gcn_norm
    from torch_geometric.nn.models import LightGCN

    n_users, n_items = 20, 15
    train, social = random_graph(n_users, n_items, 0.15, seed=7)
    ours = normalized_adjacency(train, social, social_weight=0.0, weighted=False)
    coo = train.tocoo()
    users, items = torch.from_numpy(coo.row).long(), torch.from_numpy(coo.col).long() + n_users
    edge_index = torch.stack([torch.cat([users, items]), torch.cat([items, users])])
    n = n_users + n_items

    norm_index, norm_weight = gcn_norm(edge_index, None, n, add_self_loops=False)
    theirs_adj = torch.zeros(n, n).index_put_((norm_index[1], norm_index[0]), norm_weight,
                                              accumulate=True)  # row i gathers from j -> i
    torch.testing.assert_close(ours.to_dense(), theirs_adj, atol=1e-7, rtol=1e-6)

    model = SocialGNN(n_users, n_items, embedding_dim=8, num_layers=layers)
    reference = LightGCN(n, embedding_dim=8, num_layers=layers)
    with torch.no_grad():
        reference.embedding.weight.copy_(model.embedding.weight)
    torch.testing.assert_close(model.get_embedding(ours), reference.get_embedding(edge_index),
                               atol=1e-6, rtol=1e-5)


def test_forward_scores_and_gradients():
    train, social = random_graph(15, 10, 0.3, seed=4)
    adj = normalized_adjacency(train, social)
    model = SocialGNN(15, 10, embedding_dim=4, num_layers=2)
    users, items = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    scores = model(adj, users, items)
    assert scores.shape == (3,)
    u, i = model.split(model.get_embedding(adj))
    loss = BPRLoss(l2=1e-4)(u, i, users, items, torch.tensor([6, 7, 8]), model.embedding.weight,
                            model.num_users)
    loss.backward()
    assert model.embedding.weight.grad is not None
    assert torch.isfinite(loss)


def test_reset_parameters_is_seeded():
    torch.manual_seed(0)
    a = SocialGNN(5, 5, 4, 1).embedding.weight.detach().clone()
    torch.manual_seed(0)
    b = SocialGNN(5, 5, 4, 1).embedding.weight.detach().clone()
    torch.testing.assert_close(a, b)


def test_noise_changes_embeddings_and_infonce_prefers_aligned_views():
    train, social = random_graph(10, 10, 0.3, seed=5)
    adj = normalized_adjacency(train, social)
    model = SocialGNN(10, 10, embedding_dim=8, num_layers=2)
    clean = model.get_embedding(adj)
    noisy = model.get_embedding(adj, noise_eps=0.1)
    assert not torch.allclose(clean, noisy)
    aligned = info_nce(clean, clean, 0.2)
    shuffled = info_nce(clean, clean[torch.randperm(len(clean))], 0.2)
    assert aligned < shuffled
