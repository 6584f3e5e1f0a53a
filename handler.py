"""The `hello` Lambda function: logs a small training-like run to W&B with wandb_nexus.

Run it locally with ``python handler.py hello``. Without ``WANDB_API_KEY`` the run is kept
offline under ``wandb/`` and can be uploaded later with ``wandb sync``. On Lambda the run is
delivered after the response has been sent, so W&B adds nothing to the response time.
"""

from __future__ import annotations

import json
import os
import random
import sys

import wandb_nexus as wandb

# For annotations only: importing `typing` costs a local run milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

EPOCHS = 10


@wandb.lambda_handler(
    project=os.environ.get("WANDB_PROJECT") or "lambda-wandb-nexus",
    entity=os.environ.get("WANDB_ENTITY") or None,
    config={"epochs": EPOCHS, "learning_rate": 0.01},
    job_type="lambda" if "AWS_LAMBDA_FUNCTION_NAME" in os.environ else "local",
)
def hello(event: Any, context: Any) -> dict[str, Any]:
    """Logs a run of EPOCHS steps and returns a Lambda-style response."""
    run = wandb.run
    assert run is not None  # the decorator opened it
    rng = random.Random()
    for epoch in range(EPOCHS):
        accuracy = ((epoch + rng.random()) / EPOCHS) ** 2
        run.log({"epoch": epoch, "accuracy": accuracy, "loss": 1.0 - accuracy})
    run.summary["final_accuracy"] = accuracy
    body = {
        "message": "Your function executed successfully!",
        "run": {"id": run.id, "project": run.project, "mode": run.mode, "dir": run.sync_dir},
        "input": event,
    }
    return {"statusCode": 200, "body": json.dumps(body)}


def _where_the_run_went(run: wandb.Run) -> str:
    if run.url:
        return f"Run {run.id} is at {run.url}"
    if run.mode == "online":
        return (
            f"Run {run.id} was saved in {run.sync_dir} but not delivered to W&B\n"
            f"Upload it with: python -m wandb_nexus sync {run.sync_dir}"
        )
    return (
        f"Run {run.id} was saved offline in {run.sync_dir}\n"
        f"Upload it with: wandb sync {run.sync_dir}"
    )


def main(argv: list[str]) -> int:
    functions = {"hello": hello}
    if len(argv) != 2 or argv[1] not in functions:
        print(f"usage: python handler.py {{{','.join(functions)}}}", file=sys.stderr)
        return 2
    handler = functions[argv[1]]
    response = handler({}, None)
    print(json.dumps(response, indent=2))
    if handler.last_run is not None:
        print(_where_the_run_went(handler.last_run))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
