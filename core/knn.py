"""k-nearest-neighbour classification on L2-normalised features (SimReg's evaluation): exact
inner-product search by FAISS on the GPU when available, FAISS on the CPU otherwise, and a chunked
pure-torch search when FAISS is absent; unweighted majority vote with a deterministic tie-break
(among tied classes, the one holding the nearest neighbour; the reference breaks ties randomly).

`KnnIndex` is the one implementation: eval_knn.py adds the train features to it batch by batch
(FAISS then holds the only copy) and `knn_accuracy` runs the same index on in-memory tensors."""
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


class KnnIndex:
    """Rows (dataset index, feature) added in any order; features are L2-normalised on the way in.
    `search` returns the dataset indices of the k nearest rows by inner product, nearest first.
    backend: 'auto' (FAISS if installed, on the GPU if possible), 'faiss' or 'torch'."""

    def __init__(self, dim, backend="auto", chunk=1024):
        if backend == "auto":
            backend = "faiss" if faiss_available() else "torch"
        if backend not in ("faiss", "torch"):
            raise ValueError(f"unknown k-NN backend '{backend}'")
        self.backend, self.dim, self.chunk = backend, dim, chunk
        self.faiss = make_faiss_index(dim) if backend == "faiss" else None
        self.rows, self.order = [], []

    def __len__(self):
        return sum(len(i) for i in self.order)

    def add(self, index, feats):
        feats = F.normalize(feats.float(), dim=1).cpu()
        if self.faiss is not None:
            self.faiss.add(feats.contiguous().numpy())
        else:
            self.rows.append(feats)
        self.order.append(index.cpu().long())

    def search(self, queries, k):
        """(similarities, dataset indices), each (Q, min(k, len(self)))."""
        queries = F.normalize(queries.float(), dim=1).cpu()
        k = min(k, len(self))
        if self.faiss is not None:
            sims, rows = self.faiss.search(queries.contiguous().numpy(), k)
            sims, rows = torch.from_numpy(sims), torch.from_numpy(rows).long()
        else:
            if len(self.rows) > 1:
                self.rows = [torch.cat(self.rows)]
            train = self.rows[0]
            parts = [(queries[s:s + self.chunk] @ train.t()).topk(k, dim=1) for s in range(0, len(queries), self.chunk)]
            sims, rows = torch.cat([p.values for p in parts]), torch.cat([p.indices for p in parts])
        return sims, torch.cat(self.order)[rows]


def search(train, query, k, backend="auto"):
    """Top-k neighbours (similarities, row indices) of each query row among train rows."""
    index = KnnIndex(train.shape[1], backend)
    index.add(torch.arange(len(train)), train)
    return index.search(query, k)


def vote(neighbour_labels, num_classes):
    """Majority class of each row of neighbour labels (nearest first); ties go to the tied class
    whose first neighbour is nearest."""
    q, k = neighbour_labels.shape
    counts = F.one_hot(neighbour_labels, num_classes).sum(1)                       # (Q, C)
    positions = torch.arange(k).expand(q, k)
    first = torch.full((q, num_classes), k, dtype=torch.long)
    first.scatter_reduce_(1, neighbour_labels, positions, reduce="amin")
    return (counts * (k + 1) - first).argmax(1)


def knn_top1(index, train_labels, queries, query_labels, ks):
    """Top-1 accuracy (%) of k-NN classification of `queries` for each k, by the rows of `index`."""
    _, neighbours = index.search(queries, max(ks))
    train_labels, query_labels = train_labels.cpu(), query_labels.cpu()
    num_classes = int(max(train_labels.max(), query_labels.max())) + 1
    labels = train_labels[neighbours]
    return {k: 100.0 * (vote(labels[:, :k], num_classes) == query_labels).float().mean().item() for k in ks}


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, ks=(1, 20), backend="auto"):
    """k-NN top-1 accuracy (%) for each k with in-memory train and test features."""
    index = KnnIndex(train_feats.shape[1], backend)
    index.add(torch.arange(len(train_feats)), train_feats)
    return knn_top1(index, train_labels, test_feats, test_labels, ks)
