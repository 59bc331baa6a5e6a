"""k-NN evaluation of a backbone (SimReg's protocol): pooled features of the train and val / test
images (centre crops; the prediction head is not used), L2-normalised; exact inner-product search
(FAISS on the GPU when available, FAISS on the CPU otherwise, pure torch when FAISS is absent);
unweighted majority vote with a deterministic tie-break; top-1 for each k."""
import argparse
import os

import numpy as np
import torch
import torch.nn.functional as F

from datasets.cifar100 import DatasetNotFoundError
from engine import knn
from engine.checkpoint import CheckpointError
from engine.features import add_backbone_args, eval_splits, extract, load_backbone, run_folder_of
from engine.logging import merge_summary, write_json
from engine.runtime import exit_on_user_error, pick_device
from models import UnknownModelError
from models.weights import TEACHER_FORMATS


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_backbone_args(p)
    p.add_argument("-k", "--k", default="1,20", help="comma-separated list of k")
    p.add_argument("--backend", default="auto", choices=["auto", "faiss", "torch"])
    p.add_argument("--save", default=None, help="output folder (default: <run>/knn for our checkpoints)")
    p.add_argument("--epoch", type=int, default=None, help="epoch in the output file names (default: the checkpoint's)")
    p.add_argument("--amp", action="store_true")
    args = p.parse_args(argv)
    args.ks = sorted({int(k) for k in args.k.split(",")})
    return args


class Index:
    """Train features added batch by batch: into a FAISS index (which then holds the only copy) or
    into one preallocated tensor for the torch search."""

    def __init__(self, n, dim, backend):
        self.backend = "faiss" if backend == "auto" and knn.faiss_available() else backend
        self.backend = "torch" if self.backend == "auto" else self.backend
        if self.backend == "faiss":
            self.index = knn.make_faiss_index(dim)
            self.order = []
        else:
            self.feats = torch.empty(n, dim)
            self.filled = 0

    def add(self, index, feats):
        feats = F.normalize(feats, dim=1).cpu()
        if self.backend == "faiss":
            self.index.add(feats.numpy())
            self.order.append(index.cpu())
        else:
            self.feats[index.cpu()] = feats
            self.filled += len(index)

    def search(self, queries, k):
        queries = F.normalize(queries, dim=1).cpu()
        if self.backend == "faiss":
            _, rows = self.index.search(queries.numpy(), k)
            return torch.cat(self.order)[torch.from_numpy(rows).long()]   # faiss row -> dataset index
        return knn.search(self.feats, queries, k, "torch")[1]


@exit_on_user_error(CheckpointError, DatasetNotFoundError, UnknownModelError)
def main(argv=None):
    args = parse_args(argv)
    device = pick_device(args.device)
    net, info = load_backbone(args.checkpoint, args.arch, args.format, args.dataset)
    net = net.to(device)
    train, test = eval_splits(args.dataset, args.data_root, device, args.batch_size, args.image_size, args.workers,
                              norm=(TEACHER_FORMATS[info["format"]].mean, TEACHER_FORMATS[info["format"]].std))
    index = None
    for idx, feats in extract(net, train.loader, args.amp):
        index = index or Index(len(train), feats.shape[1], args.backend)
        index.add(idx, feats)
    queries = torch.empty(len(test), index.feats.shape[1] if index.backend == "torch" else index.index.d)
    for idx, feats in extract(net, test.loader, args.amp):
        queries[idx.cpu()] = feats.cpu()
    neighbours = index.search(queries, min(max(args.ks), len(train)))
    labels = train.labels[neighbours]
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    results = {str(k): 100.0 * (knn.vote(labels[:, :k], num_classes) == test.labels).float().mean().item()
               for k in args.ks}

    run = run_folder_of(args.checkpoint)
    save = args.save or os.path.join(run or os.path.dirname(os.path.abspath(args.checkpoint)), "knn")
    os.makedirs(save, exist_ok=True)
    epoch = args.epoch if args.epoch is not None else (info.get("epoch") or 0)
    for k, acc in results.items():   # the reference's one-number text files
        np.savetxt(os.path.join(save, f"nn_{k}_acc_epoch_{int(epoch):03d}.txt"), [acc])
    summary = {"knn": {"top1": results, "dataset": args.dataset, "checkpoint": os.path.abspath(args.checkpoint),
                       "backend": index.backend, "epoch": epoch, "arch": info["arch"]}}
    write_json(os.path.join(save, "summary.json"), summary)
    if run:
        merge_summary(run, summary)
    for k, acc in results.items():
        print(f"{k}-NN top-1: {acc:.2f}")
    print(f"results written to {save}")
    return results


if __name__ == "__main__":
    main()
