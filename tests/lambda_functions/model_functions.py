"""Lambda handlers for the execution-model tests (tests/test_lambda_models.py). Each logs
`event["rows"]` rows of {"i": n, "invocation": event["invocation"]} (after sleeping
`event["sleep"]` seconds, if given) and returns what shows which process and run it used, or
with `event["end"] == "exit"` ends its process instead (os._exit)."""

from __future__ import annotations

import os
import time
from typing import Any

import wandb_nexus as wandb


def _log(event: dict[str, Any]) -> dict[str, Any]:
    run = wandb.run
    assert run is not None
    time.sleep(event.get("sleep", 0))
    for i in range(event["rows"]):
        run.log({"i": i, "invocation": event["invocation"]})
    print(f"logged {event['rows']} rows", flush=True)
    if event.get("end") == "exit":
        os._exit(7)
    return {"run": run.id, "dir": run.dir, "pid": os.getpid(), "returned_at": time.monotonic()}


@wandb.lambda_handler(project="model-tests")
def per_invocation(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _log(event)


@wandb.lambda_handler(project="model-tests", run_per="environment")
def per_environment(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _log(event)
