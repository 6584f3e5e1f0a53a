"""Lambda handlers for the runtime version tests (tests/test_lambda_versions.py). `log_rows`
logs `event["rows"]` rows of {"i": n, "invocation": event["invocation"]}, then returns what it
ran on (Python's version, the machine, the runtime Lambda named, where wandb_nexus came from),
or ends as `event["end"]` says: "raise" (an exception) or "timeout" (sleeps past the
deadline)."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

import wandb_nexus as wandb


@wandb.lambda_handler(project="version-tests")
def log_rows(event: dict[str, Any], context: Any) -> dict[str, Any]:
    run = wandb.run
    assert run is not None
    for i in range(event["rows"]):
        run.log({"i": i, "invocation": event["invocation"]})
    print(f"logged {event['rows']} rows", flush=True)
    end = event.get("end", "return")
    if end == "raise":
        raise ValueError(f"invocation {event['invocation']} failed on purpose")
    if end == "timeout":
        time.sleep(3600)
    return {
        "run": run.id,
        "pid": os.getpid(),
        "version": list(sys.version_info[:2]),
        "machine": platform.machine(),
        "execution_env": os.environ["AWS_EXECUTION_ENV"],
        "package": wandb.__file__,
    }
