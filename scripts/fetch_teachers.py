"""Published CIFAR-100 teachers into the layout the table launchers read (PRETRAINED_TEACHERS=DEST):

    DEST/<arch>_vanilla/ckpt_epoch_240.pth      RepDistiller's teachers (re-hosted in mdistiller's
                                                release 'checkpoints' as cifar_teachers.tar)
    DEST/teacher_<arch>_seed<k>/ckpt/best.pth   SSKD's teachers (their shared folder; --sskd DIR)

Next to every checkpoint it writes teacher.json: the file's sha256 and size, the architecture, the
accuracy the file itself records, and its top-1 measured here on the CIFAR-100 test set (with
the flag when it is more than 1 point off the SSKD paper's teacher). Run again, it downloads
nothing that is already there and measures only new files.

    python scripts/fetch_teachers.py --dest save/teachers --data-root ./data
    python scripts/fetch_teachers.py --tar ~/Downloads/cifar_teachers.tar --dest save/teachers
    python scripts/fetch_teachers.py --sskd ~/Downloads/sskd_teachers --dest save/teachers"""
import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tarfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.cli import exit_on_user_error, pick_device  # noqa: E402
from core.errors import UserError  # noqa: E402
from core import published  # noqa: E402

MDISTILLER_TAR = "https://github.com/megvii-research/mdistiller/releases/download/checkpoints/cifar_teachers.tar"
REPDISTILLER = re.compile(r"^(?P<arch>[A-Za-z0-9_]+)_vanilla/ckpt_epoch_240\.pth$")
SSKD = re.compile(r"^teacher_(?P<arch>[A-Za-z0-9_]+)_seed(?P<seed>\d+)/ckpt/best\.pth$")
RECORD = "teacher.json"


class FetchError(UserError):
    pass


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dest", default="./save/teachers", help="the folder PRETRAINED_TEACHERS names")
    p.add_argument("--url", default=MDISTILLER_TAR, help="where cifar_teachers.tar is downloaded from")
    p.add_argument("--tar", default=None, help="an already downloaded cifar_teachers.tar (nothing is downloaded)")
    p.add_argument("--no-tar", action="store_true", help="neither download nor unpack the tar (e.g. only --sskd)")
    p.add_argument("--sskd", default=None, help="a folder holding SSKD's teacher_<arch>_seed<k>/ckpt/best.pth")
    p.add_argument("--data-root", default="./data", help="CIFAR-100 (cifar-100-python/) for measuring the teachers")
    p.add_argument("--download", action="store_true", help="download CIFAR-100 into --data-root if missing")
    p.add_argument("--no-measure", action="store_true", help="record the hashes only")
    p.add_argument("--device", default="auto")
    return p.parse_args(argv)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(url, path):
    """`url` to `path` through path.part, so that an interrupted download is never taken for a
    whole one."""
    from tqdm import tqdm
    part = path + ".part"
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(part, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=os.path.basename(path)) as bar:
                for block in iter(lambda: r.read(1 << 20), b""):
                    f.write(block)
                    bar.update(len(block))
    except OSError as e:
        raise FetchError(f"could not download {url}: {e}; download it by hand and pass --tar FILE") from None
    os.replace(part, path)


def teacher_files(names):
    """The members of a tar (or the files of a folder) that are teachers, as (relative path without
    the leading 'cifar_teachers/', architecture)."""
    found = []
    for name in names:
        rel = name[len("cifar_teachers/"):] if name.startswith("cifar_teachers/") else name
        m = REPDISTILLER.match(rel) or SSKD.match(rel)
        if m:
            found.append((name, rel, m["arch"]))
    return found


def unpack(tar_path, dest):
    """The teachers of cifar_teachers.tar into dest (only regular files whose names match the two
    layouts: nothing is written outside dest); returns the relative paths written."""
    written = []
    try:
        tar = tarfile.open(tar_path)
    except (OSError, tarfile.TarError) as e:
        raise FetchError(f"{tar_path}: not a readable tar file ({e})") from None
    with tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        for name, rel, _ in teacher_files(members):
            target = os.path.join(dest, rel)
            if os.path.isfile(target) and os.path.getsize(target) == members[name].size:
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with tar.extractfile(members[name]) as src, open(target + ".part", "wb") as out:
                shutil.copyfileobj(src, out)
            os.replace(target + ".part", target)
            written.append(rel)
    if not teacher_files(members):
        raise FetchError(f"{tar_path}: no <arch>_vanilla/ckpt_epoch_240.pth inside; is it mdistiller's "
                         "cifar_teachers.tar?")
    return written


def copy_sskd(folder, dest):
    names = [os.path.relpath(os.path.join(d, f), folder).replace(os.sep, "/")
             for d, _, files in os.walk(folder) for f in files]
    found = teacher_files(names)
    if not found:
        raise FetchError(f"{folder}: no teacher_<arch>_seed<k>/ckpt/best.pth inside (SSKD's teacher folders)")
    for name, rel, _ in found:
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.isfile(target) or sha256(target) != sha256(os.path.join(folder, name)):
            shutil.copyfile(os.path.join(folder, name), target)


def stored_accuracy(path):
    """The accuracy a RepDistiller ('accuracy') or SSKD ('acc') file records, if any."""
    from core.checkpoint import load_file
    obj = load_file(path)
    for key in ("accuracy", "acc", "best_acc"):
        value = obj.get(key) if isinstance(obj, dict) else None
        if value is not None:
            return round(float(value), 2)
    return None


def measure(path, arch, data_root, download_data, device):
    """Top-1 / top-5 of the checkpoint on the CIFAR-100 test set."""
    import datasets
    from engine.distill import FrozenNet
    from engine.loops import evaluate
    from models import weights
    loaded = weights.load(path, arch, "auto", side="teacher")
    test = datasets.build("cifar100", data_root, "test", "eval", batch_size=256, download=download_data,
                          device=device)
    net = FrozenNet(loaded.model.to(device), test.norm, loaded.input_norm)
    result = evaluate(lambda x: net(x, is_feat=False), test.loader)
    return {"top1": round(result["top1"], 2), "top5": round(result["top5"], 2), "format": loaded.format.name}


def record(dest, rel, arch, args, device):
    path = os.path.join(dest, rel)
    where = os.path.join(os.path.dirname(path), RECORD)
    digest = sha256(path)
    try:
        with open(where) as f:
            old = json.load(f)
    except (OSError, ValueError):
        old = {}
    if old.get("sha256") == digest and (args.no_measure or old.get("measured")):
        return old
    rec = {"file": os.path.basename(path), "arch": arch, "sha256": digest, "bytes": os.path.getsize(path),
           "layout": "sskd" if SSKD.match(rel) else "repdistiller", "stored_accuracy": stored_accuracy(path)}
    if not args.no_measure:
        rec["measured"] = {"dataset": "cifar100 test", **measure(path, arch, args.data_root, args.download, device)}
        paper, _ = published.teacher_top1(arch)
        rec["paper_top1"] = paper
        rec["off_paper"] = published.teacher_is_off(rec["measured"]["top1"], paper)
    with open(where + ".tmp", "w") as f:
        json.dump(rec, f, indent=1)
    os.replace(where + ".tmp", where)
    return rec


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.dest, exist_ok=True)
    if not args.no_tar:
        tar_path = args.tar
        if tar_path is None:
            tar_path = os.path.join(args.dest, "cifar_teachers.tar")
            if not os.path.isfile(tar_path):
                print(f"downloading {args.url}")
                download(args.url, tar_path)
        elif not os.path.isfile(tar_path):
            raise FetchError(f"--tar {tar_path}: no such file")
        written = unpack(tar_path, args.dest)
        print(f"unpacked {len(written)} new teacher file(s) from {tar_path}")
    if args.sskd:
        if not os.path.isdir(args.sskd):
            raise FetchError(f"--sskd {args.sskd}: no such folder")
        copy_sskd(args.sskd, args.dest)
    names = [os.path.relpath(os.path.join(d, f), args.dest).replace(os.sep, "/")
             for d, _, files in os.walk(args.dest) for f in files]
    device = None if args.no_measure else pick_device(args.device)
    rows = []
    for _, rel, arch in sorted(teacher_files(names)):
        rows.append((rel, record(args.dest, rel, arch, args, device)))
    print(f"{'teacher':<40} {'sha256':<12} {'stored':>7} {'measured':>9} {'paper':>6}")
    for rel, rec in rows:
        measured = (rec.get("measured") or {}).get("top1")
        flag = "  more than 1 point off the paper" if rec.get("off_paper") else ""
        print(f"{rel:<40} {rec['sha256'][:12]:<12} {_fmt(rec.get('stored_accuracy')):>7} {_fmt(measured):>9} "
              f"{_fmt(rec.get('paper_top1')):>6}{flag}")
    print(f"PRETRAINED_TEACHERS={os.path.abspath(args.dest)}")
    return 0


def _fmt(value):
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


if __name__ == "__main__":
    sys.exit(main())
