"""Which runs are open in this process, and finishing them when the process exits."""

from __future__ import annotations

import atexit
import os
import sys

from . import _core

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType

    from ._run import Run

# The run that module-level ``wandb_nexus.log()`` and ``wandb_nexus.run`` refer to.
current: Run | None = None
_open: list[Run] = []
_hooks_installed = False
_uncaught_exception = False


def adopt(run: Run) -> None:
    global current
    current = run
    _open.append(run)
    _install_exit_hooks()


def forget(run: Run) -> None:
    global current
    if run in _open:
        _open.remove(run)
    if current is run:
        current = _open[-1] if _open else None


def _install_exit_hooks() -> None:
    """On first use, not at import: a run left open is finished at exit, with exit code 1
    if the program died of an exception, as wandb does. A forked child leaves its parent's
    runs to the parent."""
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    os.register_at_fork(after_in_child=_forget_all)
    previous_hook = sys.excepthook

    def note_uncaught(
        kind: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        global _uncaught_exception
        _uncaught_exception = True
        previous_hook(kind, exc, tb)

    sys.excepthook = note_uncaught
    atexit.register(_finish_open_runs)


def _forget_all() -> None:
    global current
    current = None
    _open.clear()


def _finish_open_runs() -> None:
    runs = list(reversed(_open))
    for run in runs:
        run.finish(exit_code=1 if _uncaught_exception else 0)
    # A Lambda handler's run kept across invocations, in a process that does exit (a local
    # one; Lambda kills its processes): deliver it now, as its handler would have.
    deferred = [run._core for run in runs if run._core.deferred]
    if deferred:
        for problem in _core.deliver_invocation(deferred):
            report(problem)


def report(problem: str) -> None:
    """Tells the user about a problem that is not an exception of theirs (Lambda's logs get
    stderr)."""
    print(f"wandb-nexus: {problem}", file=sys.stderr)
