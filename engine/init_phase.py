"""A method's init phase (AB, FT, FSP; SSKD's teacher head), run once per run: its result is
saved to the run's ckpt/init.pth and to an init cache shared by runs with the same teacher file,
student, data, method hyper-parameters and optimisation settings, and reused from either."""
import hashlib
import json
import os
import time

import torch

from core.checkpoint import capture_rng_state, load_file, load_state_dict_strict, restore_rng_state, save_atomic
from core.optim import sgd
from core.schedule import set_lr

from .loops import train_one_epoch


def init_cache_path(cache_dir, method, settings):
    """<cache_dir>/<method>_<hash of the settings>.pth; `settings` holds everything the phase's
    result depends on (and nothing else, so that unrelated flags do not invalidate it)."""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return os.path.join(cache_dir, f"{method}_{key}.pth")


def run_init_phase(distiller, phase, train_loader, test_loader, momentum, weight_decay, run):
    """The reference's init stage: a fresh SGD over the phase's parameters at the phase's lr, the
    student in eval mode except what the phase trains, the teacher frozen."""
    distiller.begin_phase(phase)
    optimizer = sgd(distiller.trainable_parameters(), phase.schedule.lr(1), momentum, weight_decay,
                    train_loader.device)
    for epoch in range(1, phase.schedule.epochs + 1):
        lr = phase.schedule.lr(epoch)
        set_lr(optimizer, lr)
        distiller.train()
        stats, _ = train_one_epoch(distiller, train_loader, optimizer, epoch, desc=f"init {phase.name}",
                                   show_progress=run.show_progress)
        extra = phase.evaluate(distiller.teacher, test_loader) if phase.evaluate else {}
        run.log(f"init {phase.name} epoch {epoch}/{phase.schedule.epochs} lr {lr:.5g} | "
                + " ".join(f"{k} {v:.4f}" for k, v in {**stats, **extra}.items()))
        run.scalars({**stats, **extra}, epoch, prefix=f"init_{phase.name}/")
    distiller.end_phase()


def reuse_or_run_init(distiller, phase, train_loader, test_loader, run, cache_path, momentum, weight_decay):
    """Bring student and method to their state after the init phase: nothing to do when the run
    continues from ckpt/last.pth (that state is inside it); else load the run's own ckpt/init.pth
    or the cache entry, or run the phase and save both. The saved state includes every random
    stream the phase consumed (the data order and augmentation, the global generators), restored
    on reuse, so a reused phase gives the run bit for bit what a computed one gives."""
    if phase is None or run.has_checkpoint:
        return
    streams = {"data": train_loader.generator}
    for source in (p for p in (run.init_path, cache_path) if p and os.path.isfile(p)):
        state = load_file(source)
        if "rng" not in state:   # written before the random streams were saved: not reusable exactly
            run.log(f"init phase {phase.name}: {source} holds no random-stream state; computing the phase again")
            continue
        load_state_dict_strict(distiller.student, state["student"], what="student")
        load_state_dict_strict(distiller.method, state["method"], what="method")
        restore_rng_state(state["rng"], streams)
        run.log(f"init phase {phase.name}: reused {source}")
        if source != run.init_path and run.is_main:
            save_atomic(state, run.init_path)   # the run can resume from its own folder
        return
    started = time.time()
    run_init_phase(distiller, phase, train_loader, test_loader, momentum, weight_decay, run)
    # recorded in the checkpoints and the summary: a part of the cell's cost that is not its epochs
    run.meta["init_seconds"] = round(time.time() - started, 1)
    if run.is_main:
        state = {"student": distiller.student.state_dict(), "method": distiller.method.state_dict(),
                 "phase": phase.name, "rng": capture_rng_state(streams)}
        save_atomic(state, run.init_path)
        if cache_path:
            save_atomic(state, cache_path)
