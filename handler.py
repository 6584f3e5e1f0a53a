"""The `hello` Lambda function: logs a small training-like run to W&B with wandb_nexus.

Run it locally with ``python handler.py hello``. Without ``WANDB_API_KEY`` the run is kept
offline under ``wandb/`` and can be uploaded later with ``wandb sync``.
"""

from __future__ import annotations

import json
import os
import random
import sys
from typing import Any

import wandb_nexus as wandb

EPOCHS = 10


def hello(event: Any, context: Any) -> dict[str, Any]:
    """Logs a run of EPOCHS steps and returns a Lambda-style response."""
    on_lambda = context is not None and hasattr(context, "aws_request_id")
    with wandb.init(
        project=os.environ.get("WANDB_PROJECT") or "lambda-wandb-nexus",
        entity=os.environ.get("WANDB_ENTITY") or None,
        job_type="lambda" if on_lambda else "local",
        config={"epochs": EPOCHS, "learning_rate": 0.01},
        reinit="finish_previous",
    ) as run:
        rng = random.Random()
        for epoch in range(EPOCHS):
            accuracy = ((epoch + rng.random()) / EPOCHS) ** 2
            run.log({"epoch": epoch, "accuracy": accuracy, "loss": 1.0 - accuracy})
        run.summary["final_accuracy"] = accuracy
    body = {
        "message": "Your function executed successfully!",
        "run": {"id": run.id, "mode": run.mode, "url": run.url, "dir": run.sync_dir},
        "input": event,
    }
    return {"statusCode": 200, "body": json.dumps(body)}


def _where_the_run_went(response: dict[str, Any]) -> str:
    run = json.loads(response["body"])["run"]
    if run["url"]:
        return f"Run {run['id']} is at {run['url']}"
    return (
        f"Run {run['id']} was saved offline in {run['dir']}\n"
        f"Upload it with: wandb sync {run['dir']}"
    )


def main(argv: list[str]) -> int:
    functions = {"hello": hello}
    if len(argv) != 2 or argv[1] not in functions:
        print(f"usage: python handler.py {{{','.join(functions)}}}", file=sys.stderr)
        return 2
    response = functions[argv[1]]({}, None)
    print(json.dumps(response, indent=2))
    print(_where_the_run_went(response))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
