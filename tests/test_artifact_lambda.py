"""Artifacts used and logged by handlers running the way Lambda runs them (see
tests/test_lambda_runtime.py), from tests/lambda_functions/artifact_functions.py, under the
real awslambdaric in the read-only sandbox, against the strict fake W&B and moto's S3 with
signatures checked.

- An inference function downloads its model at its cold start: the model's files are
  fetched once per sandbox, not again at warm invocations nor at the cold start that follows
  a crash (the sandbox's /tmp is kept), and every run records the version it used.
- A 128 MB function downloads a 300 MiB model into a disk-backed /tmp (1 GB of ephemeral
  storage), fetched once and whole, and hashes it without going over its memory; with /tmp
  in memory (the emulator's tmpfs) the same download gets it OOM-killed.
- A data function logs the S3 object of an upload event as a reference artifact, read with
  the function role's credentials, and uploaded after the response.
- An artifact whose upload the invocation's deadline cut is completed by the next
  invocation, before that invocation's own version of it: one committed version with every
  file, none made twice, and the versions numbered in the order they were logged."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from test_lambda_runtime import wandb_env
from test_serverless import Moto

import wandb_nexus as wandb

from conftest import needs_sandbox
from fake_wandb import DROP_AFTER_APPLY, FakeWandb
from lambda_emulator import EphemeralStorageUnavailable, LambdaEmulator

FUNCTIONS = Path(__file__).resolve().parent / "lambda_functions"

pytestmark = needs_sandbox


def log_model(fake: FakeWandb, tmp_path: Path) -> bytes:
    weights = os.urandom(3 << 20)
    (tmp_path / "weights.bin").write_bytes(weights)
    run = wandb.init(project="models", dir=str(tmp_path))
    model = wandb.Artifact("classifier", type="model", metadata={"accuracy": 0.91})
    model.add_file(tmp_path / "weights.bin")
    run.log_artifact(model, aliases=["prod"])
    run.finish()
    return weights


def log_large_model(tmp_path: Path, size: int) -> str:
    """Logs a model of `size` pseudo-random bytes, written a MiB at a time (not held in
    memory at once); returns their SHA-256."""
    digest = hashlib.sha256()
    weights = tmp_path / "weights.bin"
    with weights.open("wb") as file:
        for _ in range(size >> 20):
            chunk = os.urandom(1 << 20)
            digest.update(chunk)
            file.write(chunk)
    run = wandb.init(project="models", dir=str(tmp_path))
    model = wandb.Artifact("large-model", type="model")
    model.add_file(weights)
    run.log_artifact(model, aliases=["prod"])
    run.finish()
    weights.unlink()  # uploaded: pytest keeps its temporary directories
    return digest.hexdigest()


def model_file_gets(fake: FakeWandb) -> int:
    return sum(
        1
        for r in fake.requests
        if r.method == "GET" and "/artifacts/" in r.path and "/files/" in r.path
    )


def test_an_inference_function_fetches_its_model_once_per_sandbox(
    fake: FakeWandb, tmp_path: Path
) -> None:
    weights = log_model(fake, tmp_path)
    (model,) = fake.artifacts("classifier")
    name = f"{model.entity}/models/classifier:prod"
    with LambdaEmulator(
        FUNCTIONS, "artifact_functions.predict", env=wandb_env(fake), timeout=20
    ) as lam:
        answers = [lam.invoke({"model": name, "x": x}) for x in range(2)]
        crashed = lam.invoke({"model": name, "x": 2, "crash": True})
        after = lam.invoke({"model": name, "x": 3})  # a new cold start in the same sandbox
        for invocation in [*answers, after]:
            assert invocation.outcome == "response", lam.output.decode()
            assert invocation.body["version"] == "v0"
            assert invocation.body["bytes"] == len(weights)
            assert invocation.body["root"].startswith("/tmp/")
        assert crashed.outcome == "crash" and after.init is not None
        # Fetched at the first cold start only: not at warm invocations, not after the crash.
        assert model_file_gets(fake) == 1
        objects = re.compile(r"/artifacts/obj/md5/[0-9a-f]{2}/[0-9a-f]{30}")
        cached = [path for path in lam.tmp_files() if objects.search(path)]
        assert len(cached) == 1 and lam.read_tmp(cached[0]) == weights
    used = [run for (_, project, run) in model.used_by if project == "inference"]
    inference_runs = [run for run in fake.runs() if run.project == "inference"]
    assert len(inference_runs) == 4 and sorted(used) == sorted(r.name for r in inference_runs)
    for run in inference_runs:
        assert [row["model_version"] for row in run.history] == ["v0"]


def test_a_128_mb_function_downloads_a_300_mib_model_into_its_ephemeral_storage(
    fake: FakeWandb, tmp_path: Path
) -> None:
    size = 300 << 20
    sha256 = log_large_model(tmp_path, size)
    (model,) = fake.artifacts("large-model")
    event = {"model": f"{model.entity}/models/large-model:prod", "file": "weights.bin"}
    env = wandb_env(fake)
    handler = "artifact_functions.hash_model"
    try:
        with LambdaEmulator(
            FUNCTIONS, handler, env=env, timeout=60, memory_mb=128, ephemeral_storage_mb=1024
        ) as lam:
            if lam.memory_cgroup is None:
                pytest.skip("no writable memory cgroup here")
            on_disk = lam.invoke(event)
    except EphemeralStorageUnavailable as error:
        pytest.skip(f"no disk-backed /tmp here: {error}")
    assert on_disk.outcome == "response" and not on_disk.oom_killed, lam.output.decode()
    assert on_disk.body["root"].startswith("/tmp/")
    assert on_disk.body["bytes"] == size and on_disk.body["sha256"] == sha256
    assert model_file_gets(fake) == 1
    # The same function with /tmp in memory: the model's pages are charged to it.
    with LambdaEmulator(FUNCTIONS, handler, env=env, timeout=60, memory_mb=128) as lam:
        in_memory = lam.invoke(event)
    assert in_memory.outcome == "crash" and in_memory.oom_killed, lam.output.decode()


def test_an_upload_event_is_logged_as_a_reference_after_the_response(
    fake: FakeWandb, tmp_path: Path
) -> None:
    moto = Moto()
    try:
        s3 = moto.client("s3")
        s3.create_bucket(Bucket="uploads")
        s3.put_object(Bucket="uploads", Key="day-1/batch.csv", Body=b"a,b\n1,2\n")
        etag = s3.head_object(Bucket="uploads", Key="day-1/batch.csv")["ETag"].strip('"')
        role = moto.role_credentials("function", {"Action": "s3:GetObject", "Resource": "*"})
        moto.check_auth()
        env = wandb_env(fake, AWS_ENDPOINT_URL=moto.url, **role)
        event = {
            "Records": [
                {"s3": {"bucket": {"name": "uploads"}, "object": {"key": "day-1/batch.csv"}}}
            ]
        }
        with LambdaEmulator(FUNCTIONS, "artifact_functions.on_upload", env=env, timeout=20) as lam:
            invocation = lam.invoke(event)
            assert invocation.outcome == "response", lam.output.decode()
            # Frozen now: the artifact was saved after the response, within the invocation.
            (artifact,) = fake.artifacts("raw-data")
            assert artifact.state == "COMMITTED" and sorted(artifact.aliases) == [
                "incoming",
                "latest",
            ]
            assert artifact.manifest_bytes is not None
            entry = json.loads(artifact.manifest_bytes)["contents"]["batch.csv"]
            assert entry["ref"] == "s3://uploads/day-1/batch.csv"
            assert entry["digest"] == etag and entry["size"] == 8
            saves = [r for r in fake.requests if r.operation == "CreateArtifact"]
            assert saves and all(r.received_at >= invocation.responded_at for r in saves)
            for secret in (role["AWS_SECRET_ACCESS_KEY"], role["AWS_SESSION_TOKEN"]):
                assert secret.encode() not in lam.output
    finally:
        moto.stop()


def test_an_artifact_cut_by_the_deadline_is_completed_once_by_the_next_invocation(
    fake: FakeWandb,
) -> None:
    env = wandb_env(fake, WANDB_NEXUS_RETRY_WAIT_MIN="0.1", WANDB_NEXUS_RETRY_WAIT_MAX="0.2")
    first = {"day": 1, "files": {"a.csv": "x,y\n1,2\n", "notes/b.txt": "day one"}}
    second = {"day": 2, "files": {"a.csv": "x,y\n3,4\n"}}
    with LambdaEmulator(FUNCTIONS, "artifact_functions.log_dataset", env=env, timeout=3) as lam:
        # Storage applies every upload but its answers are lost, until the deadline.
        fake.inject("upload", [DROP_AFTER_APPLY] * 1000)
        cut = lam.invoke(first, pause=0.2)
        assert cut.outcome == "response", lam.output.decode()
        assert [a.state for a in fake.artifacts("daily")] == ["PENDING"]
        fake.clear_faults()
        after = lam.invoke(second, pause=0.2)
        assert after.outcome == "response", lam.output.decode()
    versions = fake.artifacts("daily")
    # The cut version was completed, not made again beside a PENDING leftover, and before
    # the next day's: the server numbers versions as they are committed, so day one is v0
    # and "latest" is day two's.
    assert len(versions) == 2, [(a.version, a.state) for a in versions]
    assert {a.state for a in versions} == {"COMMITTED"}
    by_day = {a.metadata["day"]: a for a in versions}
    assert by_day[1].files == {"a.csv": b"x,y\n1,2\n", "notes/b.txt": b"day one"}
    assert by_day[2].files == {"a.csv": b"x,y\n3,4\n"}
    assert [by_day[1].version, by_day[2].version] == ["v0", "v1"]
    assert "latest" in by_day[2].aliases and "latest" not in by_day[1].aliases
