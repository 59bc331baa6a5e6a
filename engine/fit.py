"""The epoch driver shared by train_teacher.py and train_student.py: per-epoch learning rate,
training, evaluation, logging, atomic checkpoints every epoch, best checkpoint, exact resume and
summary.json."""
import time

from engine.checkpoint import (capture_rng_state, load_file, load_state_dict_strict, restore_rng_state,
                               save_atomic)
from engine.loops import evaluate, make_grad_scaler, train_one_epoch
from engine.schedule import set_lr


class Trainer:
    """`model` is what gets evaluated and saved under 'model' (the RepDistiller layout, so our
    checkpoints load anywhere theirs do); `extra_modules` are further trainable or stateful modules
    saved under 'extra' (method adaptors, memory banks). Without a `test_loader` (SimReg, whose
    student has no classifier) epochs are not evaluated: evaluation is eval_knn.py / eval_linear.py."""

    def __init__(self, record, model, optimizer, lr_at, epochs, step, train_loader, test_loader,
                 meta, schedule_desc, extra_modules=None, save_every=0, amp=False,
                 show_progress=True, eval_forward=None, on_epoch_start=None):
        self.record = record
        self.model = model
        self.optimizer = optimizer
        self.lr_at = lr_at
        self.epochs = epochs
        self.step = step
        self.train_loader = train_loader
        self.test_loader = test_loader
        self.meta = dict(meta)
        self.schedule_desc = schedule_desc
        self.extra_modules = extra_modules or {}
        self.save_every = save_every
        self.amp = amp
        self.scaler = make_grad_scaler(train_loader.device, amp)
        self.show_progress = show_progress
        self.eval_forward = eval_forward
        self.on_epoch_start = on_epoch_start
        self.start_epoch = 1
        self.best = {"top1": -1.0, "top5": 0.0, "epoch": 0}
        self.last = None

    # ------------------------------------------------------------------ checkpoints
    def _generators(self):
        return {"data": self.train_loader.generator}

    def state(self, epoch):
        return {
            **self.meta,
            "model": self.model.state_dict(),
            "extra": {k: m.state_dict() for k, m in self.extra_modules.items()},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "scheduler": self.schedule_desc,
            "epoch": epoch,
            "best": dict(self.best),
            "last": dict(self.last) if self.last else None,
            "rng": capture_rng_state(self._generators()),
        }

    def resume(self):
        ckpt = load_file(self.record.last_path)
        load_state_dict_strict(self.model, ckpt["model"])
        for k, m in self.extra_modules.items():
            load_state_dict_strict(m, ckpt["extra"][k], what=f"method module '{k}'")
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        restore_rng_state(ckpt["rng"], self._generators())
        self.best = dict(ckpt["best"])
        self.last = ckpt.get("last")
        self.start_epoch = ckpt["epoch"] + 1
        self.record.log(f"resuming from {self.record.last_path} at epoch {self.start_epoch}")
        return ckpt

    # ------------------------------------------------------------------ main loop
    def run(self):
        for epoch in range(self.start_epoch, self.epochs + 1):
            lr = self.lr_at(epoch)
            set_lr(self.optimizer, lr)
            if hasattr(self.train_loader, "set_epoch"):
                self.train_loader.set_epoch(epoch)
            if self.on_epoch_start is not None:
                self.on_epoch_start(epoch)
            t0 = time.time()
            self.model.train()
            for m in self.extra_modules.values():
                m.train()
            train_stats = train_one_epoch(self.step, self.train_loader, self.optimizer, epoch,
                                          amp=self.amp, scaler=self.scaler,
                                          show_progress=self.show_progress)
            terms = " ".join(f"{k} {v:.4f}" for k, v in train_stats.items())
            scalars = {**{f"train/{k}": v for k, v in train_stats.items()}, "lr": lr}
            if self.test_loader is not None:
                test = evaluate(self.model, self.test_loader, amp=self.amp, forward=self.eval_forward)
                self.last = {"top1": test["top1"], "top5": test["top5"], "epoch": epoch}
                is_best = test["top1"] > self.best["top1"]
                if is_best:
                    self.best = dict(self.last)
                tested = (f" | test top-1 {test['top1']:.2f} top-5 {test['top5']:.2f} | best "
                          f"{self.best['top1']:.2f} (epoch {self.best['epoch']})")
                scalars.update({"test/top1": test["top1"], "test/top5": test["top5"], "test/loss": test["loss"]})
            else:
                self.last, is_best, tested = {"epoch": epoch, "train_loss": train_stats["loss"]}, False, ""
            self.record.log(f"epoch {epoch}/{self.epochs} lr {lr:.5g} | {terms}{tested} | {time.time() - t0:.1f}s")
            self.record.scalars(scalars, epoch)
            if self.record.is_main:
                state = self.state(epoch)
                save_atomic(state, self.record.last_path)
                if is_best:
                    save_atomic({**self.meta, "model": state["model"], "epoch": epoch, **self.last},
                                self.record.best_path)
                if self.save_every and epoch % self.save_every == 0:
                    save_atomic({**self.meta, "model": state["model"], "extra": state["extra"], **self.last},
                                self.record.ckpt_dir + f"/epoch_{epoch}.pth")
        summary = {"last": self.last, "epochs": self.epochs, **self.meta}
        if self.test_loader is not None:
            summary["best"] = self.best
        self.record.write_summary(summary)
        return summary
