"""``AlertLevel`` and the checks on ``alert()``'s arguments; imported on first use."""

from __future__ import annotations

import enum

from .errors import UnsupportedValueError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import datetime

__all__ = ["AlertLevel", "alert_arguments"]

# wandb's default: the same alert title is not sent again within a minute.
_DEFAULT_WAIT_SECONDS = 60.0


class AlertLevel(enum.Enum):
    """How urgent an alert is, as ``wandb.AlertLevel``."""

    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


def alert_arguments(
    title: object,
    text: object,
    level: str | AlertLevel | None,
    wait_duration: float | datetime.timedelta | None,
) -> tuple[str, str, str, int]:
    """(title, text, level, wait in milliseconds) for the core, or a clear error."""
    for name, value in (("title", title), ("text", text)):
        if not isinstance(value, str):
            raise UsageError(f"alert {name} must be a string, not {type(value).__name__}")
    assert isinstance(title, str) and isinstance(text, str)
    level = AlertLevel.INFO if level is None else level
    try:
        level = AlertLevel(level)
    except ValueError:
        raise UsageError(
            f"alert level must be one of INFO, WARN, ERROR (or wandb_nexus.AlertLevel), "
            f"not {level!r}"
        ) from None
    return title, text, level.value, _milliseconds(wait_duration)


def _milliseconds(wait_duration: float | datetime.timedelta | None) -> int:
    if not wait_duration:  # None or 0: wandb's default
        seconds = _DEFAULT_WAIT_SECONDS
    elif hasattr(wait_duration, "total_seconds"):
        seconds = wait_duration.total_seconds()
    elif isinstance(wait_duration, int | float) and not isinstance(wait_duration, bool):
        seconds = float(wait_duration)
    else:
        raise UnsupportedValueError(
            "alert wait_duration must be seconds (int or float) or a datetime.timedelta, "
            f"not {type(wait_duration).__name__}"
        )
    if not 0 <= seconds < 2**53 / 1000:
        raise UsageError(f"alert wait_duration must be a duration >= 0, not {wait_duration!r}")
    return int(seconds * 1000)
