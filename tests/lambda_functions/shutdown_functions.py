"""Lambda handlers for the shutdown, timeout and crash tests (tests/test_lambda_shutdown.py).
Each logs `event["rows"]` rows of {"i": n, "invocation": event["invocation"]}, then ends as
`event["end"]` says: "return", "timeout" (sleeps past the deadline), "exit" (os._exit),
"segfault", or "oom" (allocates past the function's memory)."""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any

import wandb_nexus as wandb


def _log_then_end(event: dict[str, Any]) -> dict[str, Any]:
    run = wandb.run
    assert run is not None
    for i in range(event["rows"]):
        run.log({"i": i, "invocation": event["invocation"]})
    print(f"logged {event['rows']} rows", flush=True)
    end = event.get("end", "return")
    if end == "timeout":
        time.sleep(3600)
    elif end == "exit":
        os._exit(7)
    elif end == "segfault":
        ctypes.string_at(0)
    elif end == "oom":
        hog = []
        while True:
            hog.append(bytearray(16 << 20))
            for page in range(0, len(hog[-1]), 4096):
                hog[-1][page] = 1
    return {"run": run.id, "step": run.step}


@wandb.lambda_handler(project="shutdown-tests")
def per_invocation(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _log_then_end(event)


@wandb.lambda_handler(project="shutdown-tests", run_per="environment")
def per_environment(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _log_then_end(event)


@wandb.lambda_handler(
    project="shutdown-tests", run_per="environment", flush="periodic", flush_interval=3600
)
def periodic(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _log_then_end(event)
