"""handler.py's `hello`, written for the official wandb SDK, for bench/run.py: the same run
(config, 10 steps of 3 metrics, a summary value), the same response, `python
official_handler.py hello`."""

from __future__ import annotations

import json
import os
import random
import sys
from typing import Any

import wandb

EPOCHS = 10


def hello(event: Any, context: Any) -> dict[str, Any]:
    with wandb.init(
        project=os.environ.get("WANDB_PROJECT") or "lambda-wandb-nexus",
        job_type="local",
        config={"epochs": EPOCHS, "learning_rate": 0.01},
    ) as run:
        rng = random.Random()
        for epoch in range(EPOCHS):
            accuracy = ((epoch + rng.random()) / EPOCHS) ** 2
            run.log({"epoch": epoch, "accuracy": accuracy, "loss": 1.0 - accuracy})
        run.summary["final_accuracy"] = accuracy
    body = {"run": {"id": run.id, "project": run.project, "mode": "offline"}, "input": event}
    return {"statusCode": 200, "body": json.dumps(body)}


if __name__ == "__main__":
    print(json.dumps(hello({}, None), indent=2))
    sys.exit(0)
