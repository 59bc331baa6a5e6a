"""When a training epoch should pause for a mid-epoch checkpoint: every `--ckpt-every-minutes`
minutes, and on SIGTERM / SIGUSR1 (what SLURM sends before a preemption or the time limit), after
which the run stops with Interrupted (exit code 75). Under torchrun every process must pause at
the same step, so the processes agree on it at the loop's periodic check steps only."""
import signal
import threading
import time

import torch

from core import distributed

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class PauseRequests:
    def __init__(self, every_minutes=None, check_every=20):
        self.every_s = every_minutes * 60 if every_minutes else None
        self.check_every = check_every
        self.signalled = None
        self.last_save = time.monotonic()
        self._previous = {}

    def install(self):
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def uninstall(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _on_signal(self, signum, frame):
        self.signalled = signal.Signals(signum).name

    def saved(self):
        self.last_save = time.monotonic()

    def __call__(self, step):
        """Whether to pause after training step `step` (1-based within the epoch)."""
        due = self.signalled is not None or (self.every_s is not None
                                             and time.monotonic() - self.last_save >= self.every_s)
        if not distributed.is_distributed():
            return due
        if step % self.check_every:
            return False
        flag = torch.tensor([float(due)])
        return bool(distributed.all_reduce_sum_tensor(flag).item() > 0)
