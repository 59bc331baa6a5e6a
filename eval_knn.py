"""k-NN evaluation of a backbone (SimReg's protocol): pooled features of the train and val / test
images (centre crops; the prediction head is not used), L2-normalised; exact inner-product search
(FAISS on the GPU when available, FAISS on the CPU otherwise, pure torch when FAISS is absent);
unweighted majority vote with a deterministic tie-break; top-1 for each k."""
import argparse
import os

import numpy as np
import torch

from core import process_clock
from core.cli import add_precision_args, exit_on_user_error, pick_device
from core.errors import UserError
from core.knn import KnnIndex, knn_top1
from core.validate import Parser, int_list, require, writable_folder
from engine.evaluation import (ResultPlace, add_backbone_args, backbone, cost, eval_split, extract, load_checkpoint,
                               run_folder_of)


def parse_args(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_backbone_args(p)
    p.add_argument("-k", "--k", type=int_list, default="1,20", help="comma-separated list of k (each at least 1)")
    p.add_argument("--backend", default="auto", choices=["auto", "faiss", "torch"])
    p.add_argument("--save", default=None, help="output folder (default: <run>/knn for our checkpoints)")
    p.add_argument("--epoch", type=int, default=None, help="epoch in the output file names (default: the checkpoint's)")
    add_precision_args(p)
    args = p.parse_args(argv)
    require(len(args.k) > 0, "-k: give at least one k")
    args.ks = sorted(set(args.k))
    return args


@exit_on_user_error
def main(argv=None):
    started = process_clock.run_started()
    args = parse_args(argv)
    device = pick_device(args.device)
    loaded = load_checkpoint(args, args.checkpoint, args.arch, args.format)
    train, test = eval_split(args, "train", device), eval_split(args, "test", device)
    net = backbone(loaded, train.norm, device, args.channels_last)
    if max(args.ks) > len(train):
        raise UserError(f"-k {max(args.ks)}: the {args.dataset} train split has only {len(train)} images")
    run = run_folder_of(args.checkpoint)
    save = writable_folder(args.save or os.path.join(run or os.path.dirname(os.path.abspath(args.checkpoint)), "knn"),
                           "--save")
    key = {"checkpoint_sha256": loaded.sha256, "dataset": args.dataset, "ks": args.ks, "image_size": args.image_size}
    place = ResultPlace("knn", key, run, save, args.overwrite, beside=bool(loaded.dataset) and
                        loaded.dataset != args.dataset)
    if place.reusable:
        results = place.reusable["top1"]
        for k, acc in results.items():
            print(f"{k}-NN top-1: {acc:.2f}")
        print(f"already evaluated with these settings: {place.main_summary} (--overwrite computes it again)")
        return results

    dim = loaded.model.feat_dim
    index = KnnIndex(dim, args.backend)   # the train features go straight into the index
    for idx, feats in extract(net, train.loader, args.amp):
        index.add(idx, feats)
    queries = torch.empty(len(test), dim)
    for idx, feats in extract(net, test.loader, args.amp):
        queries[idx.cpu()] = feats.cpu()
    results = {str(k): acc for k, acc in knn_top1(index, train.labels, queries, test.labels, args.ks).items()}

    os.makedirs(save, exist_ok=True)
    epoch = args.epoch if args.epoch is not None else (loaded.epoch or 0)
    if not place.beside:
        for k, acc in results.items():   # the reference's one-number text files
            np.savetxt(os.path.join(save, f"nn_{k}_acc_epoch_{int(epoch):03d}.txt"), [acc])
    where = place.write({"top1": results, "dataset": args.dataset, "checkpoint": os.path.abspath(args.checkpoint),
                         "backend": index.backend, "epoch": epoch, "arch": loaded.arch, **cost(started, device)})
    for k, acc in results.items():
        print(f"{k}-NN top-1: {acc:.2f}")
    print(where)
    return results

if __name__ == "__main__":
    main()
