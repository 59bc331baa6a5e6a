# Sourced by the table launchers: `flag --name "$VARIABLE"` adds the flag to the array `args` only
# when the variable is set, so that an empty variable leaves the runner's default, which is the
# table dataclass field's (grid/tables.py; `python scripts/run_table.py sskd --help` lists them).
flag() { if [ -n "$2" ]; then args+=("$1" "$2"); fi; }
