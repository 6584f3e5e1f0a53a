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

from . import _active, _core
from ._lambda import LambdaHandler, lambda_handler
from ._run import Config, Run, Summary
from .errors import (
    AuthenticationError,
    CommError,
    RunIOError,
    UnsupportedValueError,
    UsageError,
    WandbNexusError,
)

# Typing-only imports: `typing` costs milliseconds at import, and annotations are lazy.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence
    from typing import Any

__version__: str = _core.__version__

__all__ = [
    "AuthenticationError",
    "CommError",
    "Config",
    "LambdaHandler",
    "Run",
    "RunIOError",
    "Summary",
    "UnsupportedValueError",
    "UsageError",
    "WandbNexusError",
    "__version__",
    "define_metric",
    "finish",
    "init",
    "lambda_handler",
    "log",
    "run",
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
) -> Run:
    """Starts a run. Arguments left out come from ``WANDB_*`` environment variables.

    While a run is open, ``init()`` returns it (``reinit="return_previous"``, wandb's default
    outside notebooks); ``reinit="finish_previous"`` (or True) finishes it first, and
    ``reinit="create_new"`` opens another run beside it.
    """
    reinit = _reinit_choice(reinit)
    previous = _active.current
    if previous is not None and reinit in ("default", "return_previous"):
        return previous
    if previous is not None and reinit == "finish_previous":
        previous.finish()
    return _start_run(
        project=project,
        entity=entity,
        config=config,
        name=name,
        id=id,
        tags=tags,
        group=group,
        job_type=job_type,
        notes=notes,
        mode=mode,
        dir=dir,
        resume=resume,
    )


def _start_run(
    *,
    config: Mapping[str, Any] | argparse.Namespace | None,
    tags: Sequence[str] | None,
    dir: str | None,
    resume: bool | str | None = None,
    defer_delivery: bool = False,
    **names: str | None,
) -> Run:
    """Opens a new run and makes it the current one; ``defer_delivery`` keeps it off the
    network until it is flushed or synced (Lambda handlers deliver after the response)."""
    config_items = _config_mapping(config)
    core = _core.init(
        config=config_items,
        tags=_tag_list(tags),
        dir=None if dir is None else str(dir),
        resume=_resume_text(resume),
        defer_delivery=defer_delivery,
        **names,
    )
    if core.notice is not None:
        import warnings

        warnings.warn(core.notice, stacklevel=3)
    new_run = Run(core, config_items)
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


def finish(exit_code: int | None = None) -> None:
    """Finishes the current run, if there is one."""
    if _active.current is not None:
        _active.current.finish(exit_code)


def __getattr__(name: str) -> Any:
    # ``wandb_nexus.run`` is the current run, or None, as ``wandb.run`` is.
    if name == "run":
        return _active.current
    raise AttributeError(f"module 'wandb_nexus' has no attribute {name!r}")


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


def _config_mapping(config: Mapping[str, Any] | argparse.Namespace | None) -> dict[str, Any]:
    if config is None:
        return {}
    if type(config).__module__ == "argparse":  # argparse.Namespace, without importing argparse
        return dict(vars(config))
    if hasattr(config, "keys"):  # a mapping; collections.abc costs milliseconds to import
        return dict(config)
    raise UnsupportedValueError(
        f"config must be a dict or an argparse.Namespace, not {type(config).__name__}"
    )


def _tag_list(tags: Sequence[str] | None) -> list[str] | None:
    if tags is None:
        return None
    if isinstance(tags, str):
        raise UsageError("tags must be a list of strings, not a single string")
    bad = [tag for tag in tags if not isinstance(tag, str)]
    if bad:
        raise UsageError(f"tags must be strings; got {bad[0]!r}")
    return list(tags)


def _resume_text(resume: bool | str | None) -> str | None:
    if resume is None or resume is False:
        return None
    if resume is True:
        return "auto"
    return str(resume)
