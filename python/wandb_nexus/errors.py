"""Exceptions raised by wandb_nexus.

Each class also derives from the standard exception that code already catches for that kind
of problem, so ``except ValueError`` keeps working for a bad argument.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "CommError",
    "InvalidValueError",
    "OfflineError",
    "RunIOError",
    "UnsupportedValueError",
    "UsageError",
    "WandbNexusError",
]


class WandbNexusError(Exception):
    """Base class of every wandb_nexus error."""


class UsageError(WandbNexusError, ValueError):
    """The API was used wrongly: a bad argument, or a call on a finished run."""


class OfflineError(UsageError, TypeError):
    """A call that needs W&B (``use_artifact``), made by an offline run; a TypeError as in
    wandb."""


class UnsupportedValueError(WandbNexusError, TypeError):
    """A value that cannot be logged; the message names its key and type."""


class InvalidValueError(WandbNexusError, ValueError):
    """A value of the right type that cannot be logged: an image array of the wrong shape,
    a table row with the wrong number of cells, a histogram of nothing."""


class RunIOError(WandbNexusError, OSError):
    """The run's directory or transaction log could not be written."""


class CommError(WandbNexusError, ConnectionError):
    """The W&B API could not be reached, or answered with an error, after retries."""


class AuthenticationError(CommError, PermissionError):
    """The W&B API refused the API key."""
