"""Whole tables as grids of cells: each cell one ordinary script command with its run folder,
run by an executor (local processes, or SLURM through submitit) in dependency order; a cell's
state is read from its run folder alone."""
