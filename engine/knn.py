"""k-nearest-neighbour classification on L2-normalised features (SimReg's evaluation): exact
inner-product search by FAISS on the GPU when available, FAISS on the CPU otherwise, and a chunked
pure-torch search when FAISS is absent; unweighted majority vote with a deterministic tie-break
(among tied classes, the one holding the nearest neighbour; the reference breaks ties randomly)."""
import torch
import torch.nn.functional as F


def faiss_available():
    try:
        import faiss  # noqa: F401  (imported to probe availability)
        return True
    except ImportError:
        return False


def make_faiss_index(dim):
    """Exact inner-product index, cloned to all GPUs when CUDA and a GPU build of FAISS are present."""
    import faiss
    index = faiss.IndexFlatIP(dim)
    if torch.cuda.is_available() and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        index = faiss.index_cpu_to_all_gpus(index)
    return index


def _faiss_search(train, query, k):
    index = make_faiss_index(train.shape[1])
    index.add(train.float().cpu().contiguous().numpy())
    sims, idx = index.search(query.float().cpu().contiguous().numpy(), k)
    return torch.from_numpy(sims), torch.from_numpy(idx).long()


def _torch_search(train, query, k, chunk=1024):
    sims, idx = [], []
    for start in range(0, len(query), chunk):
        scores = query[start:start + chunk] @ train.t()
        s, i = scores.topk(k, dim=1)
        sims.append(s.cpu())
        idx.append(i.cpu())
    return torch.cat(sims), torch.cat(idx)


def search(train, query, k, backend="auto"):
    """Top-k neighbours of each query row among train rows by inner product (cosine for unit rows).
    backend: 'auto' (faiss if installed, on GPU if possible), 'faiss', 'torch'."""
    k = min(k, len(train))
    if backend == "auto":
        backend = "faiss" if faiss_available() else "torch"
    if backend == "faiss":
        return _faiss_search(train, query, k)
    if backend == "torch":
        return _torch_search(train, query, k)
    raise ValueError(f"unknown k-NN backend '{backend}'")


def vote(neighbour_labels, num_classes):
    """Majority class of each row of neighbour labels (nearest first); ties go to the tied class
    whose first neighbour is nearest."""
    q, k = neighbour_labels.shape
    counts = F.one_hot(neighbour_labels, num_classes).sum(1)                       # (Q, C)
    positions = torch.arange(k).expand(q, k)
    first = torch.full((q, num_classes), k, dtype=torch.long)
    first.scatter_reduce_(1, neighbour_labels, positions, reduce="amin")
    return (counts * (k + 1) - first).argmax(1)


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, ks=(1, 20), backend="auto"):
    """Top-1 accuracy (%) of k-NN classification for each k, features L2-normalised first."""
    train = F.normalize(train_feats.float(), dim=1)
    test = F.normalize(test_feats.float(), dim=1)
    _, idx = search(train, test, max(ks), backend)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    neighbour_labels = train_labels.cpu()[idx]
    return {k: 100.0 * (vote(neighbour_labels[:, :k], num_classes) == test_labels.cpu()).float().mean().item()
            for k in ks}
