"""User-facing errors: one clear line that names the file or value and says what to do."""

from __future__ import annotations


class BeadsegError(Exception):
    """Base class for every error a user can cause (bad params, bad data, missing files).

    The CLI prints ``str(error)`` on one line and exits with status 2; no traceback.
    """


class ConfigError(BeadsegError):
    """params.yaml (or a preset) is invalid."""


class DataError(BeadsegError):
    """Input images or masks are missing, unreadable or inconsistent."""


class TrainingError(BeadsegError):
    """A training run cannot proceed (e.g. out of GPU memory)."""
