"""The epoch driver shared by train_teacher.py and train_student.py: per-epoch learning rate,
training, evaluation, logging, atomic checkpoints every epoch, best checkpoint and summary.json;
`restart_from_checkpoint` continues a run exactly where its last checkpoint left it."""
import os
import time

from core.checkpoint import capture_rng_state, load_state_dict_strict, restore_rng_state, save_atomic
from core.distributed import world_size
from core.errors import Interrupted
from core.precision import make_grad_scaler
from core.schedule import set_lr

from .loops import EpochProgress, evaluate, train_one_epoch
from .preemption import PauseRequests


class Trainer:
    """Trains `distiller` with `optimizer` under `schedule` over `loaders` = (train, test); without
    a test loader (SimReg, whose student has no classifier) epochs are not evaluated. Checkpoints
    hold the student under 'model' (the RepDistiller layout, so ours load wherever theirs do) and
    the method's state under 'extra'; `run.meta` is added to every checkpoint and the summary."""

    def __init__(self, distiller, optimizer, loaders, schedule, run, ckpt_every_minutes=None, started=None):
        self.distiller, self.optimizer, self.schedule, self.run = distiller, optimizer, schedule, run
        self.train_loader, self.test_loader = loaders
        self.scaler = make_grad_scaler(self.train_loader.device, distiller.amp)
        self.start_epoch = 1
        self.progress = None   # where the first epoch continues from, after a mid-epoch checkpoint
        self.pause = PauseRequests(ckpt_every_minutes)
        self.best = {"top1": -1.0, "top5": 0.0, "epoch": 0}
        self.last = None
        self.seconds = 0.0   # wall time of the epochs so far, over every resume
        # the whole wall time: this process's from `started` (its start), plus that of the processes
        # before a resume up to their last checkpoint (the cell's cost)
        self.started = time.time() if started is None else started
        self.wall_before = 0.0

    def generators(self):
        return {"data": self.train_loader.generator}

    def state(self, epoch):
        return {
            **self.run.meta,
            "model": self.distiller.student.state_dict(),
            "extra": {"method": self.distiller.method.state_dict()},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "scheduler": self.schedule.describe(),
            "epoch": epoch,
            "best": dict(self.best),
            "last": dict(self.last) if self.last else None,
            "rng": capture_rng_state(self.generators()),
            "seconds": self.seconds,
            "wall_seconds": self.wall_seconds(),
        }

    def wall_seconds(self):
        return self.wall_before + time.time() - self.started

    def fit(self):
        self.pause.install()
        try:
            return self._fit()
        finally:
            self.pause.uninstall()

    def _fit(self):
        run, distiller = self.run, self.distiller
        for epoch in range(self.start_epoch, self.schedule.epochs + 1):
            lr = self.schedule.lr(epoch)
            set_lr(self.optimizer, lr)
            t0 = time.time()
            distiller.train()
            train_stats, progress = None, self.progress
            self.progress = None
            while train_stats is None:   # paused for a mid-epoch checkpoint: save, then go on or stop
                train_stats, progress = train_one_epoch(distiller, self.train_loader, self.optimizer, epoch,
                                                        scaler=self.scaler, show_progress=run.show_progress,
                                                        progress=progress, pause=self.pause)
                if progress is not None:
                    self.save_mid_epoch(epoch, progress)
                    self.train_loader.resume_at(self.train_loader.epoch_state, progress.step)
            terms = " ".join(f"{k} {v:.4f}" for k, v in train_stats.items())
            scalars = {**{f"train/{k}": v for k, v in train_stats.items()}, "lr": lr}
            if self.test_loader is not None:
                distiller.eval()
                test = evaluate(distiller.classify, self.test_loader, amp=distiller.amp)
                self.last = {"top1": test["top1"], "top5": test["top5"], "epoch": epoch}
                is_best = test["top1"] > self.best["top1"]
                if is_best:
                    self.best = dict(self.last)
                tested = (f" | test top-1 {test['top1']:.2f} top-5 {test['top5']:.2f} | best "
                          f"{self.best['top1']:.2f} (epoch {self.best['epoch']})")
                scalars.update({"test/top1": test["top1"], "test/top5": test["top5"], "test/loss": test["loss"]})
            else:
                self.last, is_best, tested = {"epoch": epoch, "train_loss": train_stats["loss"]}, False, ""
            self.seconds += time.time() - t0
            run.log(f"epoch {epoch}/{self.schedule.epochs} lr {lr:.5g} | {terms}{tested} | {time.time() - t0:.1f}s")
            run.scalars(scalars, epoch)
            if run.is_main:
                self.save(epoch, is_best)
            self.pause.saved()
            if self.pause.signalled and epoch < self.schedule.epochs:
                raise Interrupted(f"{self.pause.signalled} received: checkpoint of epoch {epoch} saved in "
                                  f"{run.last_path}; continue with --resume")
        summary = {"last": self.last, "epochs": self.schedule.epochs, **run.meta,
                   "train_seconds": round(self.seconds, 1), "wall_seconds": round(self.wall_seconds(), 1),
                   "processes": world_size(),
                   "device": self.train_loader.device.type}
        if self.test_loader is not None:
            summary["best"] = self.best
        run.write_summary(summary)
        return summary

    def save_mid_epoch(self, epoch, progress):
        """last.pth at a step inside `epoch`: everything of `state(epoch - 1)` plus where the epoch
        stands (the data stream at the epoch's start, the step, the running sums)."""
        if self.run.is_main:
            state = self.state(epoch - 1)
            state["partial"] = {"epoch": epoch, "step": progress.step, "data": self.train_loader.epoch_state,
                                "sums": dict(progress.sums), "count": progress.count, "correct1": progress.correct1}
            save_atomic(state, self.run.last_path)
        self.pause.saved()
        if self.pause.signalled:
            raise Interrupted(f"{self.pause.signalled} received: mid-epoch checkpoint (epoch {epoch}, step "
                              f"{progress.step}) saved in {self.run.last_path}; continue with --resume")
        self.run.log(f"epoch {epoch}: mid-epoch checkpoint at step {progress.step}", echo=False)

    def save(self, epoch, is_best):
        state = self.state(epoch)
        save_atomic(state, self.run.last_path)
        weights = {**self.run.meta, "model": state["model"]}
        if is_best:
            save_atomic({**weights, "epoch": epoch, **self.last}, self.run.best_path)
        if self.run.save_every and epoch % self.run.save_every == 0:
            save_atomic({**weights, "extra": state["extra"], **self.last},
                        os.path.join(self.run.ckpt_dir, f"epoch_{epoch}.pth"))


def restart_from_checkpoint(run, trainer):
    """Load the run's last checkpoint (if it continues from one) into the trainer's student,
    method, optimizer, gradient scaler and random streams, so that training continues bit for bit.
    Returns whether there was one."""
    ckpt, run.checkpoint = run.checkpoint, None   # not kept in memory during training
    if ckpt is None:
        return False
    load_state_dict_strict(trainer.distiller.student, ckpt["model"])
    load_state_dict_strict(trainer.distiller.method, ckpt["extra"].get("method", {}), what="method")
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        trainer.scaler.load_state_dict(ckpt["scaler"])
    restore_rng_state(ckpt["rng"], trainer.generators())
    trainer.best = dict(ckpt["best"])
    trainer.last = ckpt.get("last")
    trainer.seconds = ckpt.get("seconds", 0.0)
    trainer.wall_before = ckpt.get("wall_seconds", trainer.seconds)
    trainer.start_epoch = ckpt["epoch"] + 1
    partial = ckpt.get("partial")
    where = f"epoch {trainer.start_epoch}"
    if partial:
        device = trainer.train_loader.device
        trainer.progress = EpochProgress(partial["step"], {k: v.to(device) for k, v in partial["sums"].items()},
                                         partial["count"], None if partial["correct1"] is None
                                         else partial["correct1"].to(device))
        trainer.train_loader.resume_at(partial["data"], partial["step"])
        where += f", step {partial['step'] + 1}"
    run.log(f"resuming from {run.last_path} at {where}")
    return True
