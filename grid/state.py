"""What a cell's run folder says about it, and the runner's record of a failed attempt. The run
folder is the truth (summary.json: done; a live holder of run.lock: running; args.json or a
checkpoint: interrupted, continued with --resume), so the state survives the runner itself and
needs no scheduler accounting."""
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Optional

try:
    import fcntl
except ImportError:   # no flock on this platform
    fcntl = None

DONE, RUNNING, QUEUED, INTERRUPTED, FAILED, PENDING = "done", "running", "queued", "interrupted", "failed", "pending"


@dataclass
class CellState:
    state: str
    detail: str = ""
    log: Optional[str] = None


def safe_name(cell_name):
    return cell_name.replace("/", "__")


def _lock_is_held(folder):
    """Whether a live process holds <folder>/run.lock. On this host the holder's pid is checked;
    a holder on another host (a SLURM node) is probed with a shared, non-blocking flock that is
    released at once."""
    path = os.path.join(folder, "run.lock")
    if not os.path.isfile(path):
        return False
    try:
        holder = open(path).read().split()
    except OSError:
        return False
    if len(holder) >= 4 and holder[0] == "pid" and holder[3] == socket.gethostname():
        try:
            os.kill(int(holder[1]), 0)
        except (ProcessLookupError, ValueError):
            return False
        except PermissionError:
            return True
    if fcntl is None:
        return False
    with open(path, "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return False


def has_started(folder):
    ckpt = os.path.join(folder, "ckpt")
    return os.path.isfile(os.path.join(folder, "args.json")) or any(
        os.path.isfile(os.path.join(ckpt, f)) for f in ("last.pth", "init.pth"))


class Records:
    """<grid>/cells/<cell>.json: the runner's record of each cell's last attempt (where it ran, its
    log, and, when it failed, the exit status and the last line of its log)."""

    def __init__(self, grid_dir):
        self.dir = os.path.join(grid_dir, "cells")
        self.logs = os.path.join(grid_dir, "logs")
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs(self.logs, exist_ok=True)

    def log_path(self, cell):
        return os.path.join(self.logs, safe_name(cell.name) + ".log")

    def path(self, cell):
        return os.path.join(self.dir, safe_name(cell.name) + ".json")

    def read(self, cell):
        try:
            with open(self.path(cell)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def write(self, cell, **fields):
        record = {"cell": cell.name, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": socket.gethostname(),
                  "log": self.log_path(cell), **fields}
        tmp = self.path(cell) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, self.path(cell))

    def finished(self, cell, exit_code):
        self.write(cell, state=DONE if exit_code == 0 else FAILED, exit=exit_code,
                   error=None if exit_code == 0 else last_line(self.log_path(cell)))


def last_line(path):
    """The last non-empty line of a log (the scripts print their one-line error last)."""
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return None
    return lines[-1] if lines else None


def _recorded_process_alive(record, cell):
    """An evaluation or cache cell holds no run lock: the local runner's record of its process
    (pid on this host, running the cell's script: a reused pid is not mistaken for it) says
    whether it still runs."""
    if record.get("state") != RUNNING or record.get("host") != socket.gethostname() or not record.get("pid"):
        return False
    try:
        with open(f"/proc/{int(record['pid'])}/cmdline", "rb") as f:
            return os.path.basename(cell.script).encode() in f.read()
    except (OSError, ValueError):
        return False


def cell_state(cell, records):
    """done / running / failed / interrupted / queued (submitted, not started) / pending."""
    if cell.is_done():
        return CellState(DONE, log=records.log_path(cell))
    record = records.read(cell) or {}
    if (cell.resumable and _lock_is_held(cell.folder)) or _recorded_process_alive(record, cell):
        return CellState(RUNNING, record.get("host", ""), records.log_path(cell))
    if record.get("state") == FAILED:
        code = f"exit {record['exit']}: " if record.get("exit") is not None else ""
        return CellState(FAILED, f"{code}{record.get('error') or '(empty log)'}", record.get("log"))
    if cell.resumable and has_started(cell.folder):
        return CellState(INTERRUPTED, "continues with --resume", records.log_path(cell))
    if record.get("state") == QUEUED:
        return CellState(QUEUED, record.get("job", ""), records.log_path(cell))
    return CellState(PENDING)
