"""k-NN search and vote against a brute-force computation, with FAISS and with the torch fallback."""
import pytest
import torch
import torch.nn.functional as F

from core import knn


def brute_force(train, train_labels, test, k, num_classes):
    train, test = F.normalize(train, dim=1), F.normalize(test, dim=1)
    preds = []
    for q in test:
        sims = train @ q
        order = sorted(range(len(train)), key=lambda i: -sims[i].item())[:k]
        labels = [int(train_labels[i]) for i in order]
        counts = {c: labels.count(c) for c in set(labels)}
        best = max(counts.values())
        preds.append(next(c for c in labels if counts[c] == best))   # tied: the nearest one's class
    return torch.tensor(preds)


@pytest.mark.parametrize("backend", ["torch", pytest.param("faiss", marks=pytest.mark.skipif(
    not knn.faiss_available(), reason="faiss not installed"))])
def test_matches_brute_force(backend):
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(300, 16, generator=g), torch.randn(60, 16, generator=g)
    train_labels, test_labels = torch.randint(0, 5, (300,), generator=g), torch.randint(0, 5, (60,), generator=g)
    got = knn.knn_accuracy(train, train_labels, test, test_labels, ks=(1, 5, 20), backend=backend)
    for k in (1, 5, 20):
        want = (brute_force(train, train_labels, test, k, 5) == test_labels).float().mean().item() * 100
        assert got[k] == pytest.approx(want)
    _, idx_torch = knn.search(F.normalize(train, dim=1), F.normalize(test, dim=1), 20, "torch")
    _, idx_other = knn.search(F.normalize(train, dim=1), F.normalize(test, dim=1), 20, backend)
    assert torch.equal(idx_torch, idx_other)


def test_vote_tie_break_is_deterministic():
    labels = torch.tensor([[3, 1, 1, 3], [2, 0, 0, 2], [4, 4, 1, 1]])
    assert knn.vote(labels, 5).tolist() == [3, 2, 4]


def test_one_nn_of_training_points_is_themselves():
    x = torch.randn(50, 8)
    y = torch.arange(50) % 7
    assert knn.knn_accuracy(x, y, x, y, ks=(1,), backend="torch")[1] == 100.0
