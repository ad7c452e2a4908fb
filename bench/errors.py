"""Errors the CLI turns into one clear line (no traceback unless --debug)."""


class BenchError(Exception):
    """Base class: a user-facing problem with a message that names it and what to do."""

    exit_code = 2


class ConfigError(BenchError):
    """Malformed or unknown configuration."""


class DataError(BenchError):
    """Missing, unreadable or corrupt data."""


class PluginError(BenchError):
    """A method plugin that cannot be found or breaks the method contract."""


class TrainingError(BenchError):
    """Training cannot go on (NaN loss, collapse with --stop-on-collapse, ...)."""


class Interrupted(BenchError):
    """Training stopped by SIGTERM / SLURM preemption / Ctrl-C after saving a checkpoint to resume from."""

    exit_code = 143  # 128 + SIGTERM

    def __init__(self, message: str, run_dir=None):
        super().__init__(message)
        self.run_dir = run_dir  # the run folder to continue with `bench train --resume` (bench.slurm requeues it)
