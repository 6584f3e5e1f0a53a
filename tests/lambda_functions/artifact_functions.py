"""Lambda handlers that use artifacts (tests/test_artifact_lambda.py): an inference function
that loads its model from a W&B artifact and says which version answered, one that hashes a
model larger than its memory, and a data function that logs the S3 object an upload event
names as a reference artifact."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import wandb_nexus as wandb


@wandb.lambda_handler(project="inference")
def predict(event: dict[str, Any], context: Any) -> dict[str, Any]:
    assert wandb.run is not None
    model = wandb.run.use_artifact(event["model"], type="model")
    root = model.download()
    with open(os.path.join(root, "weights.bin"), "rb") as weights:
        size = len(weights.read())
    wandb.log({"model_version": model.version, "prediction": size % 97 + event["x"]})
    if event.get("crash"):
        os._exit(3)  # the runtime dies: Lambda re-initialises in the same sandbox
    return {"version": model.version, "root": root, "bytes": size}


@wandb.lambda_handler(project="inference")
def hash_model(event: dict[str, Any], context: Any) -> dict[str, Any]:
    assert wandb.run is not None
    root = wandb.run.use_artifact(event["model"], type="model").download()
    path = os.path.join(root, event["file"])
    digest = hashlib.sha256()
    with open(path, "rb") as weights:
        # A MiB at a time: the model is larger than the function's memory.
        for chunk in iter(lambda: weights.read(1 << 20), b""):
            digest.update(chunk)
    return {"root": root, "sha256": digest.hexdigest(), "bytes": os.path.getsize(path)}


@wandb.lambda_handler(project="ingest", job_type="ingest")
def on_upload(event: dict[str, Any], context: Any) -> dict[str, Any]:
    record = event["Records"][0]["s3"]
    uri = f"s3://{record['bucket']['name']}/{record['object']['key']}"
    dataset = wandb.Artifact("raw-data", type="dataset")
    dataset.add_reference(uri)
    wandb.log_artifact(dataset, aliases=["incoming"])
    return {"logged": uri}


@wandb.lambda_handler(project="datasets")
def log_dataset(event: dict[str, Any], context: Any) -> dict[str, Any]:
    dataset = wandb.Artifact("daily", type="dataset", metadata={"day": event["day"]})
    for name, text in event["files"].items():
        with dataset.new_file(name, mode="w") as file:
            file.write(text)
    wandb.log_artifact(dataset)
    return {"digest": dataset.digest}
