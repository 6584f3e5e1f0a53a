"""Log runs to Weights & Biases from AWS Lambda, with a Rust core.

Mirrors the ``wandb`` API, so ``import wandb_nexus as wandb`` works for the common calls::

    import wandb_nexus as wandb

    run = wandb.init(project="demo", config={"lr": 0.1})
    for step in range(10):
        run.log({"loss": 1 / (step + 1)})
    run.summary["best"] = 0.1
    run.finish()

Without an API key (or with ``WANDB_MODE=offline``) the run is written to
``wandb/offline-run-<time>-<id>/`` and can be uploaded later with ``wandb sync``.
"""

from __future__ import annotations

from . import _active, _core, _settings, _snapstart
from ._lambda import LambdaHandler, lambda_handler
from ._run import Config, Run, Summary, config_mapping, tag_list
from ._settings import Settings, login
from .errors import (
    AuthenticationError,
    CommError,
    InvalidValueError,
    OfflineError,
    RunIOError,
    UnsupportedValueError,
    UsageError,
    WandbNexusError,
)

# Typing-only imports: `typing` costs milliseconds at import, and annotations are lazy.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    import datetime
    import os
    from collections.abc import Mapping, Sequence
    from typing import Any

    from . import plot
    from ._alert import AlertLevel
    from ._artifact import Artifact, ArtifactManifestEntry
    from ._media import Audio, Histogram, Html, Image, Table
    from .plot import plot_table

__version__: str = _core.__version__

__all__ = [
    "AlertLevel",
    "Artifact",
    "ArtifactManifestEntry",
    "Audio",
    "AuthenticationError",
    "CommError",
    "Config",
    "Histogram",
    "Html",
    "Image",
    "InvalidValueError",
    "LambdaHandler",
    "OfflineError",
    "Run",
    "RunIOError",
    "Settings",
    "Summary",
    "Table",
    "UnsupportedValueError",
    "UsageError",
    "WandbNexusError",
    "__version__",
    "alert",
    "config",
    "define_metric",
    "finish",
    "init",
    "lambda_handler",
    "log",
    "log_artifact",
    "login",
    "plot",
    "plot_table",
    "run",
    "save",
    "summary",
    "use_artifact",
]

_REINIT_CHOICES = ("default", "return_previous", "finish_previous", "create_new")


def init(
    project: str | None = None,
    entity: str | None = None,
    config: Mapping[str, Any] | argparse.Namespace | None = None,
    name: str | None = None,
    id: str | None = None,
    tags: Sequence[str] | None = None,
    group: str | None = None,
    job_type: str | None = None,
    notes: str | None = None,
    mode: str | None = None,
    dir: str | None = None,
    resume: bool | str | None = None,
    reinit: bool | str | None = None,
    settings: Settings | dict[str, Any] | None = None,
) -> Run:
    """Starts a run. Arguments left out come from ``settings``, then from ``WANDB_*``
    environment variables.

    While a run is open, ``init()`` returns it (``reinit="return_previous"``, wandb's default
    outside notebooks); ``reinit="finish_previous"`` (or True) finishes it first, and
    ``reinit="create_new"`` opens another run beside it.
    """
    reinit = _reinit_choice(reinit)
    chosen = _settings_of(settings)
    arguments: dict[str, Any] = {
        "project": project,
        "entity": entity,
        "config": config,
        "name": name,
        "id": id,
        "tags": tags,
        "group": group,
        "job_type": job_type,
        "notes": notes,
        "mode": mode,
        "dir": dir,
    }
    for key, value in chosen._init_arguments().items():
        if arguments[key] is None:
            arguments[key] = value
    previous = _active.current
    if previous is not None and reinit in ("default", "return_previous"):
        return previous
    if previous is not None and reinit == "finish_previous":
        previous.finish()
    return _start_run(resume=resume, settings=chosen, **arguments)


def _start_run(
    *,
    config: Mapping[str, Any] | argparse.Namespace | None,
    tags: Sequence[str] | None,
    dir: str | os.PathLike[str] | None,
    resume: bool | str | None = None,
    defer_delivery: bool = False,
    settings: Settings | None = None,
    **names: str | None,
) -> Run:
    """Opens a new run and makes it the current one; ``defer_delivery`` keeps it off the
    network until it is flushed or synced (Lambda handlers deliver after the response)."""
    _snapstart.refuse_run_in_init()
    settings = settings or Settings()
    for field, value in names.items():
        if value is not None and not isinstance(value, str):
            raise UsageError(f"init({field}=...) must be a string, not {type(value).__name__}")
    config_items = config_mapping(config)
    core = _core.init(
        config=config_items,
        tags=tag_list(tags),
        dir=None if dir is None else str(dir),
        resume=_resume_text(resume),
        defer_delivery=defer_delivery,
        base_url=settings.base_url or _settings.base_url(),
        api_key=settings.api_key or _settings.api_key(),
        **names,
    )
    if core.notice is not None and not settings.silent:
        import warnings

        warnings.warn(core.notice, stacklevel=3)
    new_run = Run(core, config_items, capture_console=settings.console != "off")
    _active.adopt(new_run)
    return new_run


def log(data: dict[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    """Logs to the current run (see :meth:`Run.log`)."""
    _current("log").log(data, step=step, commit=commit)


def define_metric(
    name: str,
    step_metric: str | None = None,
    summary: str | None = None,
    goal: str | None = None,
) -> None:
    """Defines a metric of the current run (see :meth:`Run.define_metric`)."""
    _current("define_metric").define_metric(name, step_metric, summary, goal)


def alert(
    title: str,
    text: str,
    level: str | AlertLevel | None = None,
    wait_duration: float | datetime.timedelta | None = None,
) -> None:
    """Sends an alert about the current run (see :meth:`Run.alert`)."""
    _current("alert").alert(title, text, level, wait_duration)


def save(
    glob_str: str | os.PathLike[str],
    base_path: str | os.PathLike[str] | None = None,
    policy: str = "live",
) -> list[str]:
    """Saves files with the current run (see :meth:`Run.save`)."""
    return _current("save").save(glob_str, base_path, policy)


def log_artifact(
    artifact_or_path: Artifact | str | os.PathLike[str],
    name: str | None = None,
    type: str | None = None,
    aliases: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
) -> Artifact:
    """Logs an artifact with the current run (see :meth:`Run.log_artifact`)."""
    return _current("log_artifact").log_artifact(artifact_or_path, name, type, aliases, tags)


def use_artifact(artifact_or_name: Artifact | str, type: str | None = None) -> Artifact:
    """Uses a logged artifact in the current run (see :meth:`Run.use_artifact`)."""
    return _current("use_artifact").use_artifact(artifact_or_name, type)


def finish(exit_code: int | None = None) -> None:
    """Finishes the current run, if there is one."""
    if _active.current is not None:
        _active.current.finish(exit_code)


def __getattr__(name: str) -> Any:
    # ``wandb_nexus.run`` is the current run, or None, as ``wandb.run`` is; ``config`` and
    # ``summary`` are its config and summary, or before init() objects that say to call it.
    if name == "run":
        return _active.current
    if name in ("config", "summary"):
        current = _active.current
        return _PreInit(name) if current is None else getattr(current, name)
    if name == "AlertLevel":
        from ._alert import AlertLevel

        return AlertLevel
    if name in ("Artifact", "ArtifactManifestEntry"):
        from . import _artifact

        return getattr(_artifact, name)
    if name in _MEDIA_TYPES:
        # The data types load on first use: import stays cheap for runs that log scalars.
        from . import _media

        return getattr(_media, name)
    if name in ("plot", "plot_table"):
        import importlib

        plot = importlib.import_module(".plot", __name__)
        return plot if name == "plot" else plot.plot_table
    raise AttributeError(f"module 'wandb_nexus' has no attribute {name!r}")


_MEDIA_TYPES = frozenset({"Audio", "Histogram", "Html", "Image", "Table"})


class _PreInit:
    """``wandb_nexus.config`` or ``summary`` before ``init()``: any use is a UsageError."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def _refuse(self, what: str) -> Any:
        raise UsageError(f"You must call wandb_nexus.init() before wandb_nexus.{self._name}{what}")

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        self._refuse(f".{key}")

    def __setattr__(self, key: str, value: object) -> None:
        self._refuse(f".{key}")

    def __getitem__(self, key: object) -> Any:
        self._refuse(f"[{key!r}]")

    def __setitem__(self, key: object, value: object) -> None:
        self._refuse(f"[{key!r}]")

    def __delitem__(self, key: object) -> None:
        self._refuse(f"[{key!r}]")

    def __contains__(self, key: object) -> bool:
        return self._refuse(f"[{key!r}]")  # type: ignore[no-any-return]

    def __iter__(self) -> Any:
        self._refuse(".keys")

    def __len__(self) -> int:
        return self._refuse(".keys")  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<wandb_nexus.{self._name} before init()>"


def _settings_of(settings: Settings | dict[str, Any] | None) -> Settings:
    if settings is None:
        return Settings()
    if isinstance(settings, Settings):
        return settings
    if isinstance(settings, dict):
        return Settings(**settings)
    raise UsageError(
        f"init(settings=...) takes a wandb_nexus.Settings or a dict, not {type(settings).__name__}"
    )


def _current(action: str) -> Run:
    if _active.current is None:
        raise UsageError(f"call wandb_nexus.init() before {action}()")
    return _active.current


def _reinit_choice(reinit: bool | str | None) -> str:
    if reinit is None or reinit is False:
        return "default"
    if reinit is True:
        return "finish_previous"
    if reinit not in _REINIT_CHOICES:
        raise UsageError(f"reinit must be one of {', '.join(_REINIT_CHOICES)}, not {reinit!r}")
    return reinit


def _resume_text(resume: bool | str | None) -> str | None:
    if resume is None or resume is False:
        return None
    if resume is True:
        return "auto"
    return str(resume)


# SnapStart runs only hooks registered while the handler's module is imported.
_snapstart.register_hooks()
