"""The basement: checkpoint I/O, distributed primitives, learning-rate schedules, precision
contexts, JSON records, command-line plumbing and k-NN search. Nothing here imports any other
part of the project, so every floor above may use it."""
