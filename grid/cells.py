"""A cell: one script command (train_teacher.py, train_student.py, cache_features.py, eval_knn.py,
eval_linear.py) with the run folder it writes, the cells it needs first, and how many processes
it runs on (torchrun when more than one)."""
import json
import os
import sys
from dataclasses import dataclass, field
from typing import List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Cell:
    name: str                 # unique in the grid, e.g. 'resnet14_to_resnet8/KD_seed0'
    script: str               # relative to the project root
    args: List[str]           # the script's flags, without --resume
    folder: str               # the run folder: its summary.json says the cell is done
    needs: List[str] = field(default_factory=list)   # names of the cells that must be done first
    nproc: int = 1            # processes per node (torchrun --nproc_per_node) when > 1
    nodes: int = 1            # nodes of a torchrun cell (the slurm executor only)
    resumable: bool = True    # training cells continue with --resume; evaluations are simply rerun
    done_file: Optional[str] = None   # the file that says the cell is done (default: <folder>/summary.json)
    done_key: Optional[str] = None    # ... when it holds this key (an evaluation adds 'knn' / 'linear')
    labels: dict = field(default_factory=dict)   # where the report puts its result (table, group, row, seed)

    def is_done(self):
        path = self.done_file or os.path.join(self.folder, "summary.json")
        if not os.path.isfile(path):
            return False
        if self.done_key is None:
            return True
        try:
            with open(path) as f:
                return self.done_key in json.load(f)
        except (OSError, ValueError):
            return False

    def command(self, python=sys.executable, resume=False, rendezvous=None):
        """The command line, from the project root. `rendezvous` (node rank, first host, job id)
        starts one node's share of a cell over several nodes; otherwise torchrun is standalone."""
        if rendezvous is not None:
            rank, host, job = rendezvous
            head = [python, "-m", "torch.distributed.run", f"--nnodes={self.nodes}", f"--node_rank={rank}",
                    f"--nproc_per_node={self.nproc}", "--rdzv_backend=c10d", f"--rdzv_endpoint={host}:29400",
                    f"--rdzv_id={job}"]
        elif self.nodes > 1:
            raise ValueError(f"cell {self.name} spans {self.nodes} nodes: only the slurm executor starts it")
        elif self.nproc > 1:
            head = [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={self.nproc}"]
        else:
            head = [python]
        return head + [os.path.join(ROOT, self.script), *self.args, *(["--resume"] if resume else [])]


    def shown_command(self):
        """The command as the dry run and the manifest show it (a cell over several nodes with the
        values SLURM fills in on each node)."""
        return self.command(rendezvous=("$SLURM_NODEID", "$FIRST_NODE", "$SLURM_JOB_ID") if self.nodes > 1 else None)


def in_order(cells):
    """The cells with every cell after the ones it needs; an unknown or circular need is an error."""
    by_name = {c.name: c for c in cells}
    if len(by_name) != len(cells):
        raise ValueError("two cells of the grid have the same name")
    done, order, visiting = set(), [], set()

    def visit(cell):
        if cell.name in done:
            return
        if cell.name in visiting:
            raise ValueError(f"cell {cell.name} needs itself (a dependency cycle)")
        visiting.add(cell.name)
        for need in cell.needs:
            if need not in by_name:
                raise ValueError(f"cell {cell.name} needs {need}, which is not in the grid")
            visit(by_name[need])
        visiting.discard(cell.name)
        done.add(cell.name)
        order.append(cell)

    for c in cells:
        visit(c)
    return order
