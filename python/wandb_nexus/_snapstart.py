"""SnapStart: Lambda snapshots the environment once INIT is done and starts later environments
from copies of it. The runtime hooks (``snapshot_restore_py``, part of Lambda's Python
runtimes) keep connections out of the snapshot and give each copy its own threads.

A run started during a SnapStart INIT (a module-level ``init()``) is refused: its id, files
and clock readings would be cloned into every copy. Runs start in the handler, as
``lambda_handler`` starts them."""

from __future__ import annotations

import os

from . import _active, _core
from .errors import UsageError

# Whether the hooks are registered, and whether this process is still in its SnapStart INIT
# (set at registration, cleared by the after-restore hook).
hooks_registered = False
_in_init = False


def register_hooks() -> None:
    """Registers the hooks when this environment runs under SnapStart; at import, as Lambda
    runs only hooks registered by modules the handler's module imports."""
    global hooks_registered, _in_init
    if hooks_registered or os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != "snap-start":
        return
    try:
        import snapshot_restore_py  # type: ignore[import-untyped]

        snapshot_restore_py.register_before_snapshot(_before_snapshot)
        snapshot_restore_py.register_after_restore(_after_restore)
    except Exception as err:
        _active.report(
            f"SnapStart hooks are not registered ({type(err).__name__}: {err}); "
            "runs are delivered before the handler returns"
        )
        return
    hooks_registered = True
    # Imported inside an invocation (the runtime sets a trace id for each), INIT is over and
    # the hooks will not run: nothing is left to refuse.
    _in_init = "_X_AMZN_TRACE_ID" not in os.environ


def refuse_run_in_init() -> None:
    """Raises if this is a SnapStart INIT, which would clone a run into every environment."""
    if _in_init:
        raise UsageError(
            "wandb_nexus.init() during a SnapStart INIT would give every environment restored "
            "from the snapshot the same run; start runs in the handler (lambda_handler does)"
        )


def _before_snapshot() -> None:
    # A hook that raises fails the function's publication: problems are reported instead.
    try:
        _core.before_snapshot()
    except Exception as err:
        _active.report(f"before the SnapStart snapshot: {type(err).__name__}: {err}")


def _after_restore() -> None:
    global _in_init
    _in_init = False
    try:
        problems = _core.after_restore()
    except Exception as err:
        problems = [f"after the SnapStart restore: {type(err).__name__}: {err}"]
    for problem in problems:
        _active.report(problem)
