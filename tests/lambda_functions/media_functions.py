"""Lambda handlers that log rich data types (tests/test_lambda_media.py). numpy comes from
the test's virtualenv, which the sandbox keeps visible (read-only), as a layer would be.

Each invocation logs one row, all from its event: a Table of `event["predictions"]` (rows of
id, label, prediction, confidence), two Images made from `event["input"]` and
`event["mask"]` (nested lists of pixel values, uint8 RGB) and a Histogram of
`event["scores"]` in 10 bins."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

import wandb_nexus as wandb


def _log_media(event: dict[str, Any]) -> dict[str, Any]:
    run = wandb.run
    assert run is not None
    invocation = event["invocation"]
    table = wandb.Table(columns=["id", "label", "prediction", "confidence"])
    for row in event["predictions"]:
        table.add_data(*row)
    run.log(
        {
            "invocation": invocation,
            "predictions": table,
            "input": wandb.Image(np.array(event["input"], dtype=np.uint8), caption="input"),
            "mask": wandb.Image(np.array(event["mask"], dtype=np.uint8), caption="mask"),
            "scores": wandb.Histogram(np.array(event["scores"]), num_bins=10),
        }
    )
    print(f"logged media of invocation {invocation}")
    # The monotonic clock is the machine's, shared with the emulator outside the sandbox.
    return {"run": run.id, "step": run.step, "echo": event, "returned_at": time.monotonic()}


@wandb.lambda_handler(project="lambda-media")
def per_invocation(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A run per invocation."""
    return _log_media(event)


@wandb.lambda_handler(project="lambda-media", run_per="environment")
def per_environment(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One run for the environment: each invocation adds a row to it."""
    return _log_media(event)
