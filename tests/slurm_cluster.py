"""A real one-node SLURM for the tests (controller and one compute node of 2 CPUs on this machine,
munge authentication, no accounting): the OS packages are installed when missing, the daemons
started with a configuration in a temporary folder and stopped afterwards. Any step that fails
raises SlurmUnavailable with the reason; the tests fail with it, never skip."""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time


class SlurmUnavailable(RuntimeError):
    pass


def _run(cmd, timeout=60, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def ensure_packages():
    if shutil.which("slurmctld") and shutil.which("slurmd") and shutil.which("munged"):
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("slurm-wlm and munge are not installed and the tests do not run as root")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"]):
        r = _run(cmd, timeout=900, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if r.returncode != 0:
            raise SlurmUnavailable(f"{' '.join(cmd)} failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")


def _munge_works():
    r = subprocess.run("munge -n | unmunge", shell=True, capture_output=True, text=True)
    return r.returncode == 0


def _start_munge():
    if _munge_works():
        return None
    os.makedirs("/run/munge", exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    if not os.path.isfile("/etc/munge/munge.key"):
        _run(["runuser", "-u", "munge", "--", "/usr/sbin/mungekey", "--create"])
    r = _run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"])
    if r.returncode != 0 or not _munge_works():
        raise SlurmUnavailable(f"munged did not start: {(r.stderr or r.stdout).strip()}")
    return "/run/munge/munged.pid"


def write_conf(root):
    host = socket.gethostname().split(".")[0]
    mem = int(int(open("/proc/meminfo").readline().split()[1]) / 1024 * 0.8)
    for sub in ("state", "spool", "log"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    conf = os.path.join(root, "slurm.conf")
    with open(conf, "w") as f:
        f.write(f"""ClusterName=kdzootest
SlurmctldHost={host}
SlurmUser=root
AuthType=auth/munge
# a requeued job may start again after cred_expire seconds (default 120)
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
KillWait=60
NodeName={host} CPUs=2 RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    return conf


def _stop(pid_file):
    try:
        pid = int(open(pid_file).read().split()[0])
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError, IndexError):
        pass


@contextlib.contextmanager
def one_node_slurm(root):
    """Yields the environment (SLURM_CONF set) under which sbatch / submitit use the cluster."""
    ensure_packages()
    conf = write_conf(str(root))
    env = {**os.environ, "SLURM_CONF": conf}
    munge_pid = _start_munge()
    started = []
    try:
        for daemon, pid_file in (("slurmctld", "slurmctld.pid"), ("slurmd", "slurmd.pid")):
            r = _run([daemon, "-f", conf], env=env)
            if r.returncode != 0:
                raise SlurmUnavailable(f"{daemon} did not start: {(r.stderr or r.stdout).strip()}")
            started.append(os.path.join(str(root), pid_file))
        deadline = time.time() + 60
        while time.time() < deadline:
            r = _run(["sinfo", "-h", "-o", "%t"], env=env)
            if r.returncode == 0 and r.stdout.strip() == "idle":
                break
            time.sleep(1)
        else:
            log = open(os.path.join(str(root), "log", "slurmctld.log")).read()[-500:]
            raise SlurmUnavailable(f"the node did not become idle within 60 s: sinfo says {r.stdout.strip()!r} "
                                   f"{r.stderr.strip()}; slurmctld log: {log}")
        yield env
    finally:
        for pid_file in reversed(started):
            _stop(pid_file)
        if munge_pid:
            _stop(munge_pid)
