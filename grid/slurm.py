"""The SLURM executor, through submitit: every cell that is not done is submitted as one job
(its dependencies as SLURM `afterok` dependencies on the jobs of the cells it needs), and the
runner then follows the cells by their run folders, not by the scheduler's accounting (which a
cluster may not have). Preemption-safe: on SLURM's warning signal before the time limit, or on
preemption, the job sends SIGTERM to the cell's process (it saves a mid-epoch checkpoint and
exits 75) and requeues itself; `scontrol requeue` does the same through SLURM. A requeued job
starts the cell again with --resume, which continues bit for bit."""
import os
import signal
import subprocess
import sys
import time

from .cells import ROOT, in_order
from .state import DONE, FAILED, QUEUED, RUNNING, cell_state, has_started

INTERRUPTED_EXIT = 75


class CellJob:
    """What a SLURM job runs: the cell's command, resumed when its folder has started; a
    submitit Checkpointable, so that a job about to be stopped checkpoints and requeues."""

    def __init__(self, cell, log_path, python=sys.executable):
        self.cell, self.log_path, self.python = cell, log_path, python
        self.proc = None

    def __call__(self):
        node, rendezvous = 0, None
        if self.cell.nodes > 1:   # one task per node; every node starts its share of torchrun
            import submitit
            env = submitit.JobEnvironment()
            node, rendezvous = env.node, (env.node, env.hostnames[0], env.job_id)
        resume = self.cell.resumable and self._resume_decision(node)
        command = self.cell.command(self.python, resume=resume, rendezvous=rendezvous)
        log_path = self.log_path if node == 0 else f"{self.log_path}.node{node}"
        with open(log_path, "a") as log:
            log.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} job {os.environ.get('SLURM_JOB_ID', '?')} "
                      f"{' '.join(command)}\n")
            log.flush()
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            code = self.proc.wait()
        if code not in (0, INTERRUPTED_EXIT):
            raise RuntimeError(f"cell {self.cell.name} exited with {code}; log {log_path}")
        return code

    def _resume_decision(self, node, wait_s=600):
        """Whether this start continues the run. With several nodes, node 0 decides (before its
        processes write anything) and the others read its decision, so that all agree; the
        decision is keyed by the job and its restart count (a requeued job decides again)."""
        if self.cell.nodes == 1:
            return has_started(self.cell.folder)
        key = f"{os.environ.get('SLURM_JOB_ID', '0')}.{os.environ.get('SLURM_RESTART_COUNT', '0')}"
        path = f"{self.log_path}.resume-{key}"
        if node == 0:
            with open(path + ".tmp", "w") as f:
                f.write("1" if has_started(self.cell.folder) else "0")
            os.replace(path + ".tmp", path)
        deadline = time.time() + wait_s
        while not os.path.isfile(path):
            if time.time() > deadline:
                raise RuntimeError(f"cell {self.cell.name}: node 0 wrote no resume decision ({path}) in {wait_s} s")
            time.sleep(1)
        with open(path) as f:
            return f.read().strip() == "1"

    def checkpoint(self, *args, **kwargs):
        """Called by submitit before the job is stopped (time limit, preemption): let the cell
        save a checkpoint, then requeue this job."""
        import submitit
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None
        return submitit.helpers.DelayedSubmission(CellJob(self.cell, self.log_path, self.python))


class SlurmExecutor:
    """partition, time_min, gpus (per cell), cpus (per cell), account, qos, max_running (array
    throttling: at most this many cells of the grid run at once, via SLURM dependencies)."""

    def __init__(self, records, folder, partition=None, time_min=60, gpus=0, cpus=2, account=None, qos=None,
                 mem_gb=None, max_running=None, python=sys.executable, poll_s=5.0, echo=print):
        import submitit
        self.records, self.python, self.poll_s, self.echo = records, python, poll_s, echo
        self.executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        # the job unpickles a CellJob: the project must be importable there
        params = {"timeout_min": time_min, "cpus_per_task": cpus, "slurm_signal_delay_s": 120,
                  "slurm_setup": [f"export PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"]}
        self.gpus, self.max_running = gpus, max_running
        if partition:
            params["slurm_partition"] = partition
        if mem_gb:
            params["mem_gb"] = mem_gb
        extra = {k: v for k, v in (("account", account), ("qos", qos)) if v}
        self.base_params, self.extra = params, extra

    def _submit(self, cell, after, lane_before=None):
        """`after`: jobs that must succeed first (the cells it needs); `lane_before`: the job that
        must have ended first (throttling: `max_running` lanes of jobs, one after another)."""
        extra = dict(self.extra)
        dependency = ([f"afterok:{':'.join(after)}"] if after else []) + \
            ([f"afterany:{lane_before}"] if lane_before else [])
        if dependency:
            extra["dependency"] = ",".join(dependency)
        params = dict(self.base_params)
        if self.gpus:   # a torchrun cell: `gpus` per process, its processes on each of its nodes
            params["gpus_per_node"] = self.gpus * cell.nproc
        self.executor.update_parameters(name=cell.name.replace("/", "."), slurm_additional_parameters=extra,
                                        tasks_per_node=1, nodes=cell.nodes, **params)
        job = self.executor.submit(CellJob(cell, self.records.log_path(cell), self.python))
        self.records.write(cell, state=QUEUED, job=str(job.job_id))
        self.echo(f"submit  {cell.name}  job {job.job_id}" + (f" after {','.join(after)}" if after else ""))
        return job

    def run(self, cells):
        order = in_order(cells)
        jobs, final, lanes = {}, {}, []   # lanes: the last job of each throttling lane
        for cell in order:
            state = cell_state(cell, self.records).state
            if state == DONE:
                final[cell.name] = DONE
                continue
            if state == RUNNING:   # an earlier job still has it: follow it, do not submit another
                continue
            after = [str(jobs[n].job_id) for n in cell.needs if n in jobs]
            lane = None
            if self.max_running:
                lane = lanes.pop(0) if len(lanes) >= self.max_running else None
            jobs[cell.name] = self._submit(cell, after, lane)
            if self.max_running:
                lanes.append(str(jobs[cell.name].job_id))
        by_name = {c.name: c for c in order}
        while len(final) < len(order):
            for cell in order:
                if cell.name in final:
                    continue
                if cell_state(cell, self.records).state == DONE:
                    final[cell.name] = DONE
                    self.records.finished(cell, 0)
                    self.echo(f"done    {cell.name}")
                    continue
                job = jobs.get(cell.name)
                failed_need = [n for n in cell.needs if final.get(n) == FAILED]
                if failed_need:
                    if job is not None:
                        job.cancel(check=False)
                    final[cell.name] = FAILED
                    self.records.write(cell, state=FAILED, exit=None, error=f"not run: needs {', '.join(failed_need)}")
                    self.echo(f"failed  {cell.name}  (a cell it needs failed)")
                    continue
                if job is not None and job.done():
                    try:
                        job.result()
                    except Exception as e:   # the job's own error: the cell failed
                        final[cell.name] = FAILED
                        self.records.finished(by_name[cell.name], 1)
                        self.echo(f"failed  {cell.name}  ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
            time.sleep(self.poll_s)
        return final
