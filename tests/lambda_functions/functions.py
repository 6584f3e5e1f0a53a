"""Lambda handlers for the lifecycle tests (tests/test_lambda_runtime.py). Each logs
`event["rows"]` rows of {"i": n, "invocation": event["invocation"]}."""

from __future__ import annotations

import time
from typing import Any

import wandb_nexus as wandb


def _log_rows(event: dict[str, Any]) -> dict[str, Any]:
    run = wandb.run
    assert run is not None
    for i in range(event["rows"]):
        run.log({"i": i, "invocation": event["invocation"]})
    print(f"logged {event['rows']} rows")
    if event.get("fail"):
        raise ValueError(f"invocation {event['invocation']} failed on purpose")
    # The monotonic clock is the machine's, shared with the emulator outside the sandbox.
    return {"run": run.id, "step": run.step, "echo": event, "returned_at": time.monotonic()}


@wandb.lambda_handler(project="lambda-tests")
def per_invocation(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _log_rows(event)


@wandb.lambda_handler(
    project="lambda-tests",
    id=lambda event, context: event["job"],
    name=lambda event, context: f"job {event['job']}",
    tags=lambda event, context: [f"invocation-{event['invocation']}"],
    resume="allow",
)
def per_job(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Every invocation of one job (``event["job"]``) continues that job's run."""
    return _log_rows(event)


@wandb.lambda_handler(project="lambda-tests", run_per="environment")
def per_environment(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _log_rows(event)
