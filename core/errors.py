"""The one base class of every failure a user can fix by changing an input."""


class UserError(Exception):
    """A bad input: reported as one line on stderr with exit code 2, without a traceback.
    Every module's own error class derives from it, so a script's entry point catches exactly
    these and lets every other (internal) error keep its traceback."""


class Interrupted(Exception):
    """The run stopped on request (SIGTERM / SIGUSR1 before a preemption or a time limit) after
    saving a checkpoint to continue from: reported as one line with exit code 75 (EX_TEMPFAIL), so
    that a scheduler can tell it from a failure and requeue the job."""
    exit_code = 75
