"""When a run started, for its cost: a cell is charged from its process's start (interpreter,
imports, data loading, the teacher's evaluation, init phases) to its summary, not only for its
epochs."""
import os
import time

_FIRST_RUN = [True]
_IMPORTED = time.time()


def process_start():
    """The process's start time: from /proc on Linux, else when this module was first imported."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()   # the fields after 'pid (name)', from 'state' on
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")   # field 22: start, in ticks since boot
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED
    return min(started, _IMPORTED)


def run_started():
    """The start of a script's run: the process's start for the first run in a process, the call's
    time for later ones (a test or a notebook calling main() again)."""
    if _FIRST_RUN[0]:
        _FIRST_RUN[0] = False
        return process_start()
    return time.time()
