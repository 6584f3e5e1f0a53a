"""AWS Lambda handlers that log to W&B without making the response wait for W&B."""

from __future__ import annotations

from . import _active, _core, _snapstart
from .errors import UsageError, WandbNexusError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, TypeAlias, TypeVar

    from ._run import Run

    T = TypeVar("T")
    FromEvent: TypeAlias = Callable[[Any, Any], T]

__all__ = ["LambdaHandler", "lambda_handler"]

_RUN_PER_CHOICES = ("invocation", "environment")
_FLUSH_CHOICES = ("invocation", "periodic")
# The first invocation in this process is the cold start.
_cold_start = True


def lambda_handler(
    handler: Callable[[Any, Any], Any] | None = None,
    *,
    run_per: str = "invocation",
    project: str | None = None,
    entity: str | None = None,
    config: Mapping[str, Any] | FromEvent[Mapping[str, Any]] | None = None,
    name: str | FromEvent[str] | None = None,
    id: str | FromEvent[str] | None = None,
    tags: Sequence[str] | FromEvent[Sequence[str]] | None = None,
    group: str | FromEvent[str] | None = None,
    job_type: str | FromEvent[str] | None = None,
    notes: str | FromEvent[str] | None = None,
    mode: str | None = None,
    dir: str | None = None,
    resume: bool | str | None = None,
    flush: str = "invocation",
    flush_interval: float = 60.0,
) -> Any:
    """Decorates a Lambda handler so each invocation logs to a W&B run.

    ``run_per="invocation"`` (the default) starts a run per invocation and finishes it when
    the handler returns; ``run_per="environment"`` keeps one run per execution environment
    across warm invocations, its steps increasing. Inside the handler the run is
    ``wandb_nexus.run``. The Lambda context goes into the run's config under ``lambda``.

    Nothing is sent while the handler runs. On Lambda an internal extension, registered when
    this decorator runs (during init), delivers after the response is sent and before the
    environment freezes, within the invocation's deadline; what does not make it stays under
    ``/tmp`` and goes out after the next invocation. Without the Extensions API (a local
    call, ``sls invoke local``) delivery happens before the handler returns.

    On Lambda Managed Instances (one worker process per concurrent invocation, never frozen)
    each worker sends its runs from a thread of its own once the handler returns, and
    ``run_per="environment"`` means one run per worker process. Under SnapStart the
    decorator is set up before the snapshot and runs start at invocations, in each restored
    environment (``wandb_nexus.init()`` during a SnapStart INIT is refused).

    ``id``, ``name``, ``group``, ``tags``, ``config``, ``job_type`` and ``notes`` may each be
    a value or a function ``(event, context) -> value``, called at every invocation: with
    ``resume="allow"``, ``id=lambda event, context: event["job_id"]`` makes every invocation
    of one job continue one run.

    An exception finishes the run with exit code 1 and its traceback in the run's console
    output, and is raised again. The handler's return value is passed through untouched.

    ``flush`` says when an environment's run is sent: ``"invocation"`` (the default) after
    every response; ``"periodic"`` (``run_per="environment"`` only) after a response only
    when ``flush_interval`` seconds have passed since the last time, the rest when Lambda
    retires the environment (the layer's extension delivers it then). Periodic costs an
    invocation with nothing due no billed time for W&B; its rows reach W&B up to
    ``flush_interval`` seconds later, or at the environment's end. Rows are on disk either
    way as soon as ``log()`` returns.
    """
    if run_per not in _RUN_PER_CHOICES:
        raise UsageError(f"run_per must be one of {', '.join(_RUN_PER_CHOICES)}, not {run_per!r}")
    if flush not in _FLUSH_CHOICES:
        raise UsageError(f"flush must be one of {', '.join(_FLUSH_CHOICES)}, not {flush!r}")
    if flush == "periodic" and run_per != "environment":
        raise UsageError(
            'flush="periodic" needs run_per="environment": runs per invocation are finished, '
            "and sent, after each response"
        )
    if isinstance(flush_interval, bool) or not isinstance(flush_interval, (int, float)):
        raise UsageError(f"flush_interval must be a number of seconds, not {flush_interval!r}")
    if not flush_interval > 0:
        raise UsageError(f"flush_interval must be more than 0 seconds, not {flush_interval!r}")
    options: dict[str, Any] = {
        "project": project,
        "entity": entity,
        "config": config if callable(config) else dict(config or {}),
        "name": name,
        "id": id,
        "tags": tags,
        "group": group,
        "job_type": job_type,
        "notes": notes,
        "mode": mode,
        "dir": dir,
        "resume": resume,
    }

    def decorate(function: Callable[[Any, Any], Any]) -> LambdaHandler:
        interval = float(flush_interval) if flush == "periodic" else 0.0
        return LambdaHandler(function, run_per, options, interval)

    return decorate if handler is None else decorate(handler)


class LambdaHandler:
    """A Lambda handler wrapped by :func:`lambda_handler`; call it as the handler itself."""

    def __init__(
        self,
        handler: Callable[[Any, Any], Any],
        run_per: str,
        options: dict[str, Any],
        flush_interval: float = 0.0,
    ) -> None:
        import functools

        functools.update_wrapper(self, handler)
        self._handler = handler
        self._run_per = run_per
        self._options = options
        # 0 sends after every response; otherwise the wall clock (which, unlike a monotonic
        # one, moves on while the environment is frozen) of the next due send.
        self._flush_interval = flush_interval
        self._flush_due = 0.0
        self._run: Run | None = None
        #: The run of the latest invocation (for a caller that wants its id or URL).
        self.last_run: Run | None = None
        # Set up now, during init: Lambda accepts extensions only before the runtime asks
        # for its first event. Without one, runs are delivered before returning. An API key
        # kept in AWS starts coming now too, so the first response need not wait for it.
        self._delivery, problem = _core.start_lambda_delivery(
            _snapstart.hooks_registered, options["mode"]
        )
        if problem is not None:
            _active.report(problem)

    def __call__(self, event: Any, context: Any) -> Any:
        global _cold_start
        cold_start, _cold_start = _cold_start, False
        run = self._open_run(event, context, _context_info(context, cold_start))
        exit_code = 1
        try:
            result = self._handler(event, context)
            exit_code = 0
            return result
        except BaseException:
            import traceback

            run._core.output(True, traceback.format_exc())
            raise
        finally:
            self._deliver(run, exit_code, context)

    def _open_run(self, event: Any, context: Any, lambda_info: dict[str, Any]) -> Run:
        from . import _start_run

        run = self._run
        if run is not None and not run.finished:
            run.config.update({"lambda": lambda_info}, allow_val_change=True)
            _active.current = run
            return run
        options = {
            key: _from_event(key, value, event, context) if key in _FROM_EVENT else value
            for key, value in self._options.items()
        }
        options["config"] = {**(options["config"] or {}), "lambda": lambda_info}
        run = _start_run(defer_delivery=True, **options)
        if self._run_per == "environment":
            self._run = run
        return run

    def _deliver(self, run: Run, exit_code: int, context: Any) -> None:
        """Closes what the invocation leaves open and sends it: through the extension when
        it runs (returning at once), here otherwise. Problems are reported, never raised: the
        handler's outcome is the invocation's."""
        self.last_run = run
        problems: list[str] = []
        try:
            if self._run_per == "invocation" or exit_code != 0:
                run.finish(exit_code)
            extension = self._delivery == "extension"
            request_id = getattr(context, "aws_request_id", None) if extension else None
            problems = _core.deliver_invocation(
                [run._core] if self._flush_now(run) else [],
                request_id=request_id,
                remaining_ms=_remaining_ms(context),
            )
        except WandbNexusError as err:
            problems.append(str(err))
        for problem in problems:
            _active.report(problem)

    def _flush_now(self, run: Run) -> bool:
        """Whether this response is followed by sending the run (a periodic run's rows stay
        stored on disk until their time comes, or until the environment ends)."""
        if not self._flush_interval or run.finished:
            return True
        import time

        now = time.time()
        if now < self._flush_due:
            return False
        self._flush_due = now + self._flush_interval
        return True


# The arguments that may be functions of the invocation's event and context.
_FROM_EVENT = ("config", "name", "id", "tags", "group", "job_type", "notes")


def _from_event(argument: str, value: Any, event: Any, context: Any) -> Any:
    """An argument's value for this invocation: itself, or what its function makes of the
    event and context (an error there names the argument)."""
    if not callable(value):
        return value
    try:
        return value(event, context)
    except Exception as err:
        raise UsageError(
            f"lambda_handler({argument}=...) failed for this event: {type(err).__name__}: {err}"
        ) from err


def _context_info(context: Any, cold_start: bool) -> dict[str, Any]:
    """What the Lambda context says about this invocation, for the run's config."""
    info: dict[str, Any] = {"cold_start": cold_start}
    for key, attribute in (
        ("request_id", "aws_request_id"),
        ("function_name", "function_name"),
        ("function_version", "function_version"),
        ("invoked_function_arn", "invoked_function_arn"),
        ("log_group", "log_group_name"),
        ("log_stream", "log_stream_name"),
    ):
        value = getattr(context, attribute, None)
        if isinstance(value, str):
            info[key] = value
    memory = getattr(context, "memory_limit_in_mb", None)
    if memory is not None and str(memory).isdigit():
        info["memory_limit_mb"] = int(memory)
    remaining = _remaining_ms(context)
    if remaining is not None:
        info["remaining_time_ms"] = remaining
    return info


def _remaining_ms(context: Any) -> int | None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    value = remaining()
    return value if isinstance(value, int) and value >= 0 else None
