"""The local executor: a queue of cells over slots — the visible GPUs, `per_gpu` cells sharing
each (every cell its own process with its own CUDA_VISIBLE_DEVICES), or CPU processes. A cell
starts when the cells it needs are done; a failed cell fails the cells that need it and nothing
else. Children get SIGTERM when the runner dies (Linux), so they save a checkpoint and stop, and a
restarted runner resumes them; a cell some other process is running is waited for, never
started twice."""
import ctypes
import os
import signal
import subprocess
import sys
import time

from .cells import in_order
from .state import DONE, FAILED, INTERRUPTED, PENDING, RUNNING, cell_state, has_started

INTERRUPTED_EXIT = 75   # the training scripts' exit status after a checkpoint on SIGTERM


def _die_with_parent():
    """In the child, before exec: SIGTERM when the parent (the runner) dies, however it dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except OSError:
        pass


class LocalExecutor:
    def __init__(self, records, gpus=None, per_gpu=1, workers=1, python=sys.executable, poll_s=0.5, echo=print):
        self.records, self.python, self.poll_s, self.echo = records, python, poll_s, echo
        # a slot: the GPU it uses (None: a CPU process)
        self.slots = [g for g in gpus for _ in range(per_gpu)] if gpus else [None] * workers
        self.stop_signal = None

    def n_gpus(self):
        return len({s for s in self.slots if s is not None})

    def _free_slots(self, busy, n):
        """`n` slots for a cell of n processes: one slot (a CPU slot runs all n processes), or n
        whole free GPUs."""
        free = [i for i in range(len(self.slots)) if i not in busy]
        if n == 1 or not self.n_gpus():
            return free[:1]
        gpus = []
        for g in dict.fromkeys(self.slots):
            own = [i for i, s in enumerate(self.slots) if s == g]
            if g is not None and all(i in free for i in own):
                gpus.append(own)
        return [i for own in gpus[:n] for i in own] if len(gpus) >= n else []

    def _launch(self, cell, slot_ids):
        resume = cell.resumable and has_started(cell.folder)
        env = dict(os.environ)
        gpus = sorted({self.slots[i] for i in slot_ids} - {None})
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
        elif "OMP_NUM_THREADS" not in os.environ:
            # CPU cells share the cores: each its share of threads, or they slow each other down
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // len(self.slots)))
        log = open(self.records.log_path(cell), "a")
        command = cell.command(self.python, resume=resume)
        log.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(command)}\n")
        log.flush()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)
        log.close()
        self.records.write(cell, state=RUNNING, pid=proc.pid, gpus=gpus, resumed=resume)
        self.echo(f"start   {cell.name}{' (resume)' if resume else ''}{' on GPU ' + ','.join(map(str, gpus)) if gpus else ''}")
        return proc

    def _on_signal(self, signum, _frame):
        self.stop_signal = signum

    def run(self, cells):
        """Run every cell that is not done; returns {cell name: final state}."""
        order = in_order(cells)
        by_name = {c.name: c for c in order}
        final = {}
        for c in order:
            if cell_state(c, self.records).state == DONE:
                final[c.name] = DONE
        running = {}   # name -> (process, slot ids)
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while len(final) < len(order):
                if self.stop_signal is not None:
                    for proc, _ in running.values():
                        proc.send_signal(signal.SIGTERM)   # each saves a checkpoint and exits 75
                    for name, (proc, _) in running.items():
                        proc.wait()
                        self.records.finished(by_name[name], proc.returncode)
                    raise KeyboardInterrupt(f"signal {self.stop_signal}: running cells checkpointed")
                for name, (proc, _) in list(running.items()):
                    if proc.poll() is None:
                        continue
                    del running[name]
                    cell = by_name[name]
                    self.records.finished(cell, proc.returncode)
                    state = cell_state(cell, self.records).state
                    final[name] = DONE if state == DONE else (INTERRUPTED if proc.returncode == INTERRUPTED_EXIT
                                                               else FAILED)
                    self.echo(f"{final[name]:<7} {name}" + ("" if final[name] == DONE else
                                                            f"  (exit {proc.returncode}; log {self.records.log_path(cell)})"))
                busy = {i for _, ids in running.values() for i in ids}
                for cell in order:
                    if cell.name in final or cell.name in running:
                        continue
                    if any(final.get(n) in (FAILED, INTERRUPTED) for n in cell.needs):
                        final[cell.name] = FAILED
                        self.records.write(cell, state=FAILED, exit=None,
                                           error=f"not run: needs {', '.join(n for n in cell.needs if final.get(n) != DONE)}")
                        self.echo(f"failed  {cell.name}  (a cell it needs failed)")
                        continue
                    if not all(final.get(n) == DONE for n in cell.needs):
                        continue
                    state = cell_state(cell, self.records).state
                    if state == DONE:
                        final[cell.name] = DONE
                        continue
                    if state == RUNNING:   # another process (an earlier runner's child) has it: wait
                        continue
                    if self.n_gpus() and cell.nproc > self.n_gpus():
                        final[cell.name] = FAILED
                        self.records.write(cell, state=FAILED, exit=None, error=f"not run: needs {cell.nproc} GPUs, "
                                                                                f"--gpus lists {self.n_gpus()}")
                        self.echo(f"failed  {cell.name}  (needs {cell.nproc} GPUs, --gpus lists {self.n_gpus()})")
                        continue
                    ids = self._free_slots(busy, cell.nproc)
                    if not ids:
                        continue
                    running[cell.name] = (self._launch(cell, ids), ids)
                    busy.update(ids)
                time.sleep(self.poll_s)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
        return final


__all__ = ["LocalExecutor", "PENDING"]
