"""Proves tests/fake_wandb.py: the official wandb SDK must work against it unmodified, and its
strictness, fault injection, rate limiter and slow phase must behave as documented."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import http.server
import importlib.util
import json
import logging
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import pytest

from conftest import assert_arrived_whole, log_reference_run
from fake_wandb import (
    DEFAULT_ENTITY,
    DROP_AFTER_APPLY,
    RESET,
    ArtifactState,
    FakeWandb,
    Request,
    RunState,
    SyncFailed,
    delay,
    run_isolated,
    status,
    wandb_env,
    wandb_sync,
)

needs_sdk = pytest.mark.skipif(
    importlib.util.find_spec("wandb") is None, reason="the official wandb SDK is not installed"
)

# One script for every SDK scenario; argv[1], if given, is the exit code passed to finish().
TRAIN_SCRIPT = """
import math
import sys

import wandb

run = wandb.init(
    project="p",
    config={"lr": 0.1, "nested": {"a": 1}},
    name="my-run",
    tags=["t1", "t2"],
    group="g",
    job_type="train",
    notes="some notes",
)
print("hello stdout")
print("hello stderr", file=sys.stderr)
for i in range(10):
    run.log({"loss": 1 / (i + 1), "acc": math.nan if i == 3 else i / 10, "d": {"x": i, "y": "s"}})
run.summary["best"] = 3
run.finish(exit_code=int(sys.argv[1]) if len(sys.argv) > 1 else None)
"""

RESUME_SCRIPT = """
import sys

import wandb

run = wandb.init(project="p", id="resume-me", resume=sys.argv[1])
for i in range(int(sys.argv[2])):
    run.log({"i": i})
print("logged", sys.argv[2])
run.finish()
"""

# A run to resume: argv[1] "first" logs steps 0..2 with config, tags and notes; "second"
# resumes it with resume="allow" and logs two more rows.
RESUMED_RUN_SCRIPT = """
import sys

import wandb

if sys.argv[1] == "first":
    run = wandb.init(project="p", id="resume-x", config={"a": 1}, tags=["t1"], notes="old notes")
    rows = [{"i": i} for i in range(3)]
    run.summary["best"] = 7
else:
    run = wandb.init(project="p", id="resume-x", resume="allow", config={"b": 2})
    rows = [{"i": 10 + i} for i in range(2)]
for row in rows:
    run.log(row)
print(sys.argv[1], "process")
run.finish()
"""

# init(id=argv[1], resume=argv[2]) that the SDK must refuse: exit code 3 with a UsageError.
REFUSED_RESUME_SCRIPT = """
import sys

import wandb

try:
    wandb.init(project="p", id=sys.argv[1], resume=sys.argv[2])
except wandb.errors.UsageError as err:
    print(err)
    sys.exit(3)
sys.exit("wandb.init did not raise UsageError")
"""

ALERT_SCRIPT = """
import wandb

run = wandb.init(project="p")
run.alert(title="Hi", text="body", level=wandb.AlertLevel.WARN, wait_duration=300)
run.finish()
"""

# Logs a table (which the SDK stores as a run_table artifact run-<id>-tbl) and an image;
# argv[1] is the entity, set explicitly so that an offline run's artifact record has it.
TABLE_SCRIPT = """
import sys

import numpy as np
import wandb

run = wandb.init(entity=sys.argv[1], project="p", config={"lr": 0.1})
table = wandb.Table(columns=["a", "b"], data=[[1, "x"], [2, "y"]])
pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
run.log({"tbl": table, "img": wandb.Image(pixels), "loss": 0.5})
run.log({"loss": 0.25})
run.finish()
"""

# Reads run argv[1] ("entity/project/id") back with wandb.Api() and prints what it got as one
# JSON line: history (both ways), summary, config, files, the image's bytes (downloaded) and
# the table (from the run_table artifact, downloaded).
READ_BACK_SCRIPT = """
import hashlib
import json
import os
import sys

import wandb

api = wandb.Api()
run = api.run(sys.argv[1])
image = run.summary["img"]["path"]
run.file(image).download(root="downloads")
with open(os.path.join("downloads", image), "rb") as f:
    image_md5 = hashlib.md5(f.read()).hexdigest()
entity, project, _ = sys.argv[1].split("/")
artifact = api.artifact(f"{entity}/{project}/run-{run.id}-tbl:latest")
table = artifact.get("tbl")
root = artifact.download(root="artifact")
result = {
    "name": run.name,
    "state": run.state,
    "config": run.config,
    "summary": run.summary_metrics,
    "history": run.history(pandas=False),
    "scan": list(run.scan_history()),
    "scan_loss": list(run.scan_history(keys=["loss"])),
    "history_loss": run.history(keys=["loss"], pandas=False),
    "files": sorted(f.name for f in run.files()),
    "image_md5": image_md5,
    "logged": [[a.name, a.type] for a in run.logged_artifacts()],
    "artifact": [artifact.name, artifact.type, artifact.version, artifact.digest],
    "table": [table.columns, table.data],
    "downloaded": sorted(os.listdir(root)),
}
print("RESULT", json.dumps(result))
"""

# Console lines as streamed: "<UTC timestamp with microseconds> <text>".
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}"

WRONG_KEY = "wrong" + "0" * 35  # well-formed (40 characters), so only the server can reject it


@pytest.fixture
def fake():
    with FakeWandb() as server:
        yield server
    assert server.internal_errors == []


def run_sdk(
    fake: FakeWandb, home: Path, script: str, *args: str, env: dict[str, str] | None = None
):
    path = home / "script.py"
    path.write_text(script)
    cmd = [sys.executable, str(path), *args]
    return run_isolated(cmd, wandb_env(fake, home, env), timeout=120, cwd=home)


def assert_train_run_recorded(run: RunState, exitcode: int) -> None:
    """What the fake must have recorded for TRAIN_SCRIPT."""
    assert (run.entity, run.project, run.display_name) == (DEFAULT_ENTITY, "p", "my-run")
    assert (run.tags, run.group, run.job_type) == (["t1", "t2"], "g", "train")
    assert run.notes == "some notes"
    config = run.config_values
    assert (config["lr"], config["nested"]) == (0.1, {"a": 1})
    assert "t" in config["_wandb"]  # telemetry, which resume relies on

    history = run.history
    assert [row["_step"] for row in history] == list(range(10))
    for i, row in enumerate(history):
        assert row["loss"] == pytest.approx(1 / (i + 1))
        assert row["d"] == {"x": i, "y": "s"}
        assert {"_runtime", "_timestamp"} <= row.keys()
    assert math.isnan(history[3]["acc"])
    assert history[4]["acc"] == pytest.approx(0.4)

    assert run.summary is not None
    assert (run.summary["best"], run.summary["_step"]) == (3, 9)
    assert any(re.fullmatch(rf"{TIMESTAMP} hello stdout", line) for line in run.console)
    assert any(re.fullmatch(rf"ERROR {TIMESTAMP} hello stderr", line) for line in run.console)

    assert {"config.yaml", "wandb-summary.json"} <= set(run.files) & set(run.uploaded)
    assert json.loads(run.files["wandb-summary.json"])["best"] == 3
    assert b"lr:" in run.files["config.yaml"]
    assert (run.complete, run.exitcode) == (True, exitcode)


# --------------------------------------------------------------------------- official SDK


@needs_sdk
def test_online_run(fake, tmp_path):
    result = run_sdk(fake, tmp_path, TRAIN_SCRIPT)

    assert result.returncode == 0, result.stderr
    assert_train_run_recorded(fake.single_run(), exitcode=0)
    # Every answer satisfied the SDK; only its telemetry probe hit an unknown path.
    assert all(r.status == 200 for r in fake.requests if r.kind != "unknown")
    assert {"UpsertBucket", "CreateRunFiles"} <= set(fake.graphql_operations())
    assert not any(r.headers.get("content-encoding") for r in fake.requests)


@needs_sdk
def test_gzip_file_stream_when_advertised(tmp_path):
    with FakeWandb(features=("FILESTREAM_GZIP",)) as fake:
        # The SDK only compresses if the server advertises it and the setting allows it.
        result = run_sdk(fake, tmp_path, TRAIN_SCRIPT, env={"WANDB_X_FILE_STREAM_NO_GZIP": "false"})

    assert result.returncode == 0, result.stderr
    assert fake.internal_errors == []
    streams = [r for r in fake.requests if r.kind == "file_stream"]
    assert streams and all(r.headers["content-encoding"] == "gzip" for r in streams)
    assert_train_run_recorded(fake.single_run(), exitcode=0)


@needs_sdk
def test_wrong_api_key_fails_init(fake, tmp_path):
    result = run_sdk(fake, tmp_path, TRAIN_SCRIPT, env={"WANDB_API_KEY": WRONG_KEY})

    assert result.returncode != 0
    assert "invalid or missing API key" in result.stderr
    assert fake.runs() == []
    assert {r.status for r in fake.requests if r.kind == "graphql"} == {401}


@needs_sdk
def test_offline_run_then_wandb_sync(fake, tmp_path):
    result = run_sdk(fake, tmp_path, TRAIN_SCRIPT, env={"WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stderr
    assert fake.requests == []

    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    wandb_sync(run_dir, fake)

    assert_train_run_recorded(fake.single_run(), exitcode=0)


@needs_sdk
def test_failed_sync_raises_with_output(fake, tmp_path):
    run_sdk(fake, tmp_path, TRAIN_SCRIPT, env={"WANDB_MODE": "offline"})
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")

    # wandb sync exits 0 here; the missing .synced marker gives the failure away.
    with pytest.raises(SyncFailed, match="invalid or missing API key"):
        wandb_sync(run_dir, fake, env_extra={"WANDB_API_KEY": WRONG_KEY})


@needs_sdk
def test_failing_run_reports_exit_code(fake, tmp_path):
    result = run_sdk(fake, tmp_path, TRAIN_SCRIPT, "1")

    assert result.returncode == 0, result.stderr
    assert_train_run_recorded(fake.single_run(), exitcode=1)


@needs_sdk
def test_sdk_recovers_from_injected_faults(fake, tmp_path):
    fake.inject("graphql:UpsertBucket", [status(503, {"Retry-After": "0"})])
    fake.inject("file_stream", [DROP_AFTER_APPLY, status(500)])
    fake.inject("upload", [RESET, status(503, {"Retry-After": "0"})])
    # A dropped connection gets no Retry-After, so shorten the backoff (default 2 s doubling).
    # wandb-core truncates these to whole seconds: 0.5 would mean "unset".
    fast_retries = {
        f"WANDB__FILE_{client}_RETRY_WAIT_{bound}_SECONDS": "1"
        for client in ("STREAM", "TRANSFER")
        for bound in ("MIN", "MAX")
    }

    result = run_sdk(fake, tmp_path, TRAIN_SCRIPT, env=fast_retries)

    assert result.returncode == 0, result.stderr
    assert fake.pending_faults() == {}
    assert len([r for r in fake.requests if r.fault]) == 5
    # The resent file_stream body was applied twice without duplicating anything.
    assert_train_run_recorded(fake.single_run(), exitcode=0)


@needs_sdk
def test_sdk_copes_with_the_rate_limiter(fake, tmp_path):
    """The fake's 429s are something the official client copes with: the run arrives whole
    (every history row once) and no request came back before its Retry-After."""
    fake.rate_limit(20, retry_after=1, burst=2)  # the uploads at the end all come at once

    result = run_sdk(fake, tmp_path, TRAIN_SCRIPT)

    assert result.returncode == 0, result.stderr
    assert fake.rejected > 0
    refused = [r for r in fake.requests if r.fault == "rate_limit"]
    assert {(r.status, r.fault) for r in refused} == {(429, "rate_limit")}
    assert len(fake.retry_afters) == fake.rejected
    assert fake.retry_after_violations() == []
    run = fake.single_run()
    assert [row["_step"] for row in run.history] == list(range(10))
    assert_train_run_recorded(run, exitcode=0)


@needs_sdk
def test_resume_continues_history(fake, tmp_path):
    first = run_sdk(fake, tmp_path, RESUME_SCRIPT, "allow", "3")
    assert first.returncode == 0, first.stderr
    second = run_sdk(fake, tmp_path, RESUME_SCRIPT, "must", "2")
    assert second.returncode == 0, second.stderr

    run = fake.single_run()
    assert [row["_step"] for row in run.history] == [0, 1, 2, 3, 4]
    assert [row["i"] for row in run.history] == [0, 1, 2, 0, 1]
    assert [line.split(" ", 1)[1] for line in run.console] == ["logged 3", "logged 2"]
    assert fake.graphql_operations().count("RunResumeStatus") == 2
    # The resumed process addressed the existing run by the id the fake returned.
    assert {u["id"] for u in run.upserts if u["id"]} == {run.storage_id}


@needs_sdk
def test_resume_allow_appends_to_the_run(fake, tmp_path):
    """RunResumeStatus answers so that the official SDK resumes where the first process
    stopped: history continues at _step 3 after the 3 stored rows, console lines are appended,
    the config is merged, tags and notes are kept and the old summary keys survive."""
    first = run_sdk(fake, tmp_path, RESUMED_RUN_SCRIPT, "first")
    assert first.returncode == 0, first.stderr
    run = fake.single_run()
    old_console = run.console
    assert len(old_console) == 1 and run.summary["best"] == 7
    before = len(fake.requests)

    second = run_sdk(fake, tmp_path, RESUMED_RUN_SCRIPT, "second")
    assert second.returncode == 0, second.stderr

    assert fake.single_run() is run
    assert [row["_step"] for row in run.history] == [0, 1, 2, 3, 4]
    assert [row["i"] for row in run.history] == [0, 1, 2, 10, 11]
    assert run.console[:1] == old_console
    assert [line.split(" ", 1)[1] for line in run.console] == ["first process", "second process"]
    config = run.config_values
    assert (config["a"], config["b"]) == (1, 2) and "t" in config["_wandb"]
    assert (run.tags, run.notes) == (["t1"], "old notes")
    assert (run.summary["best"], run.summary["i"], run.summary["_step"]) == (7, 11, 4)
    assert (run.complete, run.exitcode) == (True, 0)

    resumed = fake.requests[before:]
    graphql_ops = [r.operation for r in resumed if r.kind == "graphql"]
    assert graphql_ops.index("RunResumeStatus") < graphql_ops.index("UpsertBucket")
    upserts = [r.body["variables"] for r in resumed if r.operation == "UpsertBucket"]
    assert upserts[0]["id"] == run.storage_id
    assert (upserts[0]["tags"], upserts[0]["notes"]) == (["t1"], "old notes")
    # The resumed process wrote from the stored line counts on, never over old lines.
    offsets: dict[str, list[int]] = {}
    for r in resumed:
        if r.kind == "file_stream":
            for name, chunk in r.body.get("files", {}).items():
                offsets.setdefault(name, []).append(chunk["offset"])
    assert min(offsets["wandb-history.jsonl"]) == 3
    assert min(offsets["output.log"]) == 1
    assert min(offsets["wandb-events.jsonl"]) >= 1


@needs_sdk
def test_resume_must_and_never_are_refused(fake, tmp_path):
    """resume="must" on a missing run and resume="never" on an existing one make the official
    SDK raise wandb.errors.UsageError from wandb.init, after RunResumeStatus alone: no run is
    created and the existing run is not written to."""
    missing = run_sdk(fake, tmp_path, REFUSED_RESUME_SCRIPT, "resume-x", "must")
    assert missing.returncode == 3, missing.stderr
    assert "Run (resume-x) does not exist" in missing.stdout
    assert fake.runs() == []
    assert "RunResumeStatus" in fake.graphql_operations()

    first = run_sdk(fake, tmp_path, RESUMED_RUN_SCRIPT, "first")
    assert first.returncode == 0, first.stderr
    run = fake.single_run()
    snapshot = (len(run.upserts), run.config, {n: list(v) for n, v in run.lines.items()})
    files = dict(run.files)
    before = len(fake.requests)

    existing = run_sdk(fake, tmp_path, REFUSED_RESUME_SCRIPT, "resume-x", "never")
    assert existing.returncode == 3, existing.stderr
    assert "Run (resume-x) already exists" in existing.stdout
    # Another id in the now existing project: the run is missing, not the project.
    other = run_sdk(fake, tmp_path, REFUSED_RESUME_SCRIPT, "other-id", "must")
    assert other.returncode == 3, other.stderr
    assert "Run (other-id) does not exist" in other.stdout

    assert fake.single_run() is run
    assert (len(run.upserts), run.config, run.lines) == snapshot
    assert run.files == files
    refused = fake.requests[before:]
    assert {r.kind for r in refused} <= {"graphql", "unknown"}
    assert {r.operation for r in refused if r.kind == "graphql"} <= {"Viewer", "RunResumeStatus"}


@needs_sdk
def test_alert_online(fake, tmp_path):
    """run.alert reaches the fake as NotifyScriptableRunAlert, the wait in milliseconds."""
    result = run_sdk(fake, tmp_path, ALERT_SCRIPT)

    assert result.returncode == 0, result.stderr
    run = fake.single_run()
    assert run.alerts == [
        {"title": "Hi", "text": "body", "severity": "WARN", "wait_duration": 300000}
    ]
    (alert,) = [r for r in fake.requests if r.operation == "NotifyScriptableRunAlert"]
    assert alert.status == 200
    assert alert.body["variables"] == {
        "entityName": DEFAULT_ENTITY,
        "projectName": "p",
        "runName": run.name,
        "title": "Hi",
        "text": "body",
        "severity": "WARN",
        "waitDuration": 300000,
    }


@needs_sdk
def test_alert_offline_then_wandb_sync(fake, tmp_path):
    """An offline run's alert is sent by wandb sync."""
    result = run_sdk(fake, tmp_path, ALERT_SCRIPT, env={"WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stderr
    assert fake.requests == []

    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    wandb_sync(run_dir, fake)

    assert fake.single_run().alerts == [
        {"title": "Hi", "text": "body", "severity": "WARN", "wait_duration": 300000}
    ]


def assert_table_artifact_recorded(fake: FakeWandb, run: RunState) -> ArtifactState:
    """What the fake must have recorded for TABLE_SCRIPT's table: a committed run_table
    artifact whose manifest, files and digests agree, referenced from the history row."""
    (artifact,) = fake.artifacts()
    assert (artifact.entity, artifact.project) == (DEFAULT_ENTITY, "p")
    assert (artifact.name, artifact.type) == (f"run-{run.name}-tbl", "run_table")
    assert (artifact.state, artifact.version, artifact.aliases) == ("COMMITTED", "v0", ["latest"])
    assert (artifact.run_name, artifact.logged_by) == (run.name, [run.name])

    manifest = artifact.manifest
    assert manifest is not None
    assert manifest["storagePolicy"] == "wandb-storage-policy-v1"
    contents = manifest["contents"]
    assert set(contents) == set(artifact.files) == {"tbl.table.json"}
    for path, data in artifact.files.items():
        assert contents[path]["digest"] == b64md5(data)
        assert contents[path]["size"] == len(data)
    assert artifact.digest == artifact_digest({p: e["digest"] for p, e in contents.items()})
    assert artifact.manifest_digest == b64md5(artifact.manifest_bytes or b"")
    table = json.loads(artifact.files["tbl.table.json"])
    assert (table["columns"], table["data"]) == (["a", "b"], [[1, "x"], [2, "y"]])

    # The history row points at the artifact through the client ids W&B maps.
    cell = run.history[0]["tbl"]
    assert cell["_type"] == "table-file"
    assert fake.resolve_client_artifact_url(cell["artifact_path"]) == (artifact, "tbl.table.json")
    latest = fake.resolve_client_artifact_url(cell["_latest_artifact_path"])
    assert latest == (artifact, "tbl.table.json")
    image = run.history[0]["img"]
    assert run.files[image["path"]].startswith(b"\x89PNG")
    return artifact


@needs_sdk
def test_run_table_artifact_online_then_read_back(fake, tmp_path):
    """The official SDK logs a table as a run_table artifact through the whole upload
    sequence; wandb.Api() then reads history, summary, files and the table back."""
    writer, reader = tmp_path / "writer", tmp_path / "reader"
    writer.mkdir()
    reader.mkdir()  # a HOME of its own: nothing comes from the writer's artifact cache
    result = run_sdk(fake, writer, TABLE_SCRIPT, DEFAULT_ENTITY)
    assert result.returncode == 0, result.stderr

    run = fake.single_run()
    artifact = assert_table_artifact_recorded(fake, run)
    assert all(r.status == 200 for r in fake.requests if r.kind != "unknown")
    operations = fake.graphql_operations()
    sequence = [
        "CreateArtifact",
        "CreateArtifactManifest",
        "CreateArtifactFiles",
        "CreateArtifactManifest",
        "CommitArtifact",
    ]
    assert [op for op in operations if op in sequence] == sequence
    assert "ArtifactType" in operations  # the SDK's check before logging
    (created,) = [
        r.body["variables"]["input"] for r in fake.requests if r.operation == "CreateArtifact"
    ]
    assert created["clientID"] == artifact.client_ids[0]
    assert created["sequenceClientID"] == artifact.sequence_client_ids[0]
    assert created["historyStep"] is None  # step 0 is sent as null
    before = len(fake.requests)

    result = run_sdk(fake, reader, READ_BACK_SCRIPT, f"{DEFAULT_ENTITY}/p/{run.name}")
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    got = json.loads(line.removeprefix("RESULT "))

    assert (got["name"], got["state"], got["config"]) == (run.display_name, "finished", {"lr": 0.1})
    assert got["summary"] == run.summary
    assert got["history"] == got["scan"] == run.history
    assert [row["loss"] for row in got["history"]] == [0.5, 0.25]
    expected_loss = [{"_step": 0, "loss": 0.5}, {"_step": 1, "loss": 0.25}]
    assert got["scan_loss"] == got["history_loss"] == expected_loss
    assert got["files"] == sorted(run.files)
    image = run.history[0]["img"]["path"]
    assert got["image_md5"] == hashlib.md5(run.files[image]).hexdigest()
    assert got["logged"] == [[f"{artifact.name}:v0", "run_table"]]
    assert got["artifact"] == [f"{artifact.name}:latest", "run_table", "v0", artifact.digest]
    assert got["table"] == [["a", "b"], [[1, "x"], [2, "y"]]]
    assert got["downloaded"] == ["tbl.table.json"]

    reads = fake.requests[before:]
    assert all(r.status == 200 for r in reads if r.kind != "unknown"), [
        (r.path, r.operation, r.status) for r in reads if r.status != 200
    ]
    downloads = {r.path: r.headers.get("authorization") for r in reads if r.kind == "download"}
    # The run file comes from its API URL, with the key; artifact storage URLs without it.
    assert (
        downloads[f"/files/{DEFAULT_ENTITY}/p/{run.name}/{image}"]
        == basic_auth(fake.api_key)["Authorization"]
    )
    n = artifact.number
    assert downloads[f"/artifacts/{n}/wandb_manifest.json"] is None
    assert downloads[f"/artifacts/{n}/files/tbl.table.json"] is None


@needs_sdk
def test_run_table_artifact_offline_then_wandb_sync(fake, tmp_path):
    """An offline run's artifact record is uploaded by wandb sync (from the staged copies)."""
    result = run_sdk(fake, tmp_path, TABLE_SCRIPT, DEFAULT_ENTITY, env={"WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stderr
    assert fake.requests == []

    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    wandb_sync(run_dir, fake)

    artifact = assert_table_artifact_recorded(fake, fake.single_run())
    assert artifact.history_step is None  # sync never sends one
    assert all(r.status == 200 for r in fake.requests if r.kind != "unknown")


# --------------------------------------------------------------------------- SDK artifacts
#
# One writer run logs artifacts with files and references of every kind (module fixture
# `logged_artifacts`); a second run uses and downloads them, and wandb.Api() reads them back,
# each SDK process with a HOME, cache and data directory of its own under the test's tmp dir.

# argv[1]: the base URL of the HTTP server of `references`, argv[2]: the metadata of "ds" as
# JSON. Files are made in the cwd (the writer's home), which the file:// references point at.
# Prints RESULT with the versions and digests it logged.
WRITE_ARTIFACTS_SCRIPT = """
import json
import sys
from pathlib import Path

import wandb

http = sys.argv[1]
Path("src/sub").mkdir(parents=True)
Path("src/a.txt").write_text("tree a\\n")
Path("src/sub/b.txt").write_text("tree b\\n")
Path("local.txt").write_text("local file\\n")
Path("referenced.txt").write_text("referenced file\\n")
Path("refdir/deeper").mkdir(parents=True)
Path("refdir/r1.txt").write_text("ref one\\n")
Path("refdir/deeper/r2.txt").write_text("ref two\\n")
here = Path.cwd().as_uri()

run = wandb.init(project="p", id="writer")
metadata = json.loads(sys.argv[2])
ds = wandb.Artifact("ds", type="dataset", description="the dataset", metadata=metadata)
ds.add_file("local.txt", name="top/local.txt")
ds.add_dir("src", name="tree")
with ds.new_file("made/new.txt") as f:
    f.write("new file\\n")
ds.add_reference(http + "/data.bin")  # checksum: the ETag, the size from Content-Length
ds.add_reference(http + "/plain.txt", name="web/plain.txt", checksum=False)
ds.add_reference(here + "/referenced.txt", name="fileref/referenced.txt")
ds.add_reference(here + "/refdir", name="fileref/dir")
ds.add_reference("s3://bkt/obj.bin")
ds.add_reference("s3://bkt/dir", name="s3dir")  # a prefix: one entry per object
run.log_artifact(ds, aliases=["best", "exp-1"], tags=["raw", "first cut"])
ds.wait()

v1 = wandb.Artifact("ds", type="dataset")
with v1.new_file("only.txt") as f:
    f.write("version one\\n")
run.log_artifact(v1, aliases=["best"])  # latest and best move to v1; exp-1 stays on v0
v1.wait()

unchecked = wandb.Artifact("unchecked", type="refs")
unchecked.add_reference(here + "/local.txt", name="f.txt", checksum=False)
unchecked.add_reference("s3://bkt/obj.bin", name="s3.bin", checksum=False)
unchecked.add_reference(http + "/data.bin", name="h.bin", checksum=False)
run.log_artifact(unchecked)
unchecked.wait()

result = {a.name: [a.version, a.digest] for a in (ds, v1, unchecked)}
print("RESULT", json.dumps(result))
run.finish()
"""

# The properties of an Artifact the read-side tests compare, and a directory as {path: text}.
_ARTIFACT_HELPERS = """
import json
import os
import sys

import wandb

entity = sys.argv[1]


def props(a):
    return {
        "id": a.id, "name": a.name, "source_name": a.source_name, "version": a.version,
        "type": a.type, "digest": a.digest, "description": a.description,
        "metadata": a.metadata, "aliases": sorted(a.aliases), "tags": sorted(a.tags),
        "size": a.size, "file_count": a.file_count, "state": a.state,
    }


def tree(root):
    found = {}
    for parent, _, names in os.walk(root):
        for name in names:
            path = os.path.join(parent, name)
            with open(path) as f:
                found[os.path.relpath(path, root).replace(os.sep, "/")] = f.read()
    return found


def failure(call):
    try:
        call()
    except Exception as err:
        return [type(err).__name__, str(err)]
    return None
"""

# A run that uses the logged artifacts (by alias, version, latest, with a right and a wrong
# type, and some that do not exist), then downloads them whole, by entry and with file().
USE_ARTIFACTS_SCRIPT = (
    _ARTIFACT_HELPERS
    + """
run = wandb.init(project="p", id="reader")
got = {}
exp = run.use_artifact(entity + "/p/ds:exp-1")
got["exp-1"] = props(exp)
got["v0"] = props(run.use_artifact("ds:v0", type="dataset"))
latest = run.use_artifact("ds:latest")
got["latest"] = props(latest)
got["best"] = props(run.use_artifact(entity + "/p/ds:best"))
got["wrong type"] = failure(lambda: run.use_artifact("ds:v0", type="model"))
got["missing version"] = failure(lambda: run.use_artifact("ds:v7"))
got["missing collection"] = failure(lambda: run.use_artifact("nope:latest"))
got["missing project"] = failure(lambda: run.use_artifact(entity + "/nowhere/ds:v0"))

# One entry first, with an empty cache: the SDK has no directUrl for it and fetches it from
# the API host (/artifactsV2/...), with the key.
entry = exp.get_entry("tree/sub/b.txt")
got["entry"] = [entry.path, entry.digest, entry.size, entry.ref]
with open(entry.download(root="entry")) as f:
    got["entry text"] = f.read()
s3entry = exp.get_entry("s3dir/sub/b.txt")
got["s3 entry"] = [s3entry.ref, s3entry.digest, s3entry.size, s3entry.extra]
got["download"] = tree(exp.download(root="downloaded"))
with open(latest.file()) as f:  # the only file of v1, under ./artifacts/<name as used>
    got["file"] = [os.path.relpath(f.name), f.read()]
got["no such entry"] = failure(lambda: exp.get_entry("nope.txt"))
run.finish()
print("RESULT", json.dumps(got))
"""
)

# wandb.Api() without a run: an artifact by name, downloaded to its default root, its files,
# its lineage and the runs' used and logged artifacts; the unchecked references.
API_READ_SCRIPT = (
    _ARTIFACT_HELPERS
    + """
api = wandb.Api()
got = {}
art = api.artifact(entity + "/p/ds:v0")
got["v0"] = props(art)
root = art.download()
got["root"] = os.path.relpath(root)
got["download"] = tree(root)
got["files"] = sorted([f.name, f.size] for f in art.files())
got["used by"] = [r.id for r in art.used_by()]
got["logged by"] = art.logged_by().id
got["used"] = [a.name for a in api.run(entity + "/p/reader").used_artifacts()]
got["logged"] = [a.name for a in api.run(entity + "/p/writer").logged_artifacts()]
got["missing"] = failure(lambda: api.artifact(entity + "/p/ds:v9"))
unchecked = api.artifact(entity + "/p/unchecked:latest")
got["unchecked entries"] = {
    path: [e.ref, e.digest, e.size] for path, e in unchecked.manifest.entries.items()
}
got["unchecked downloads"] = {
    path: failure(lambda path=path: unchecked.get_entry(path).download(root="unchecked"))
    for path in sorted(unchecked.manifest.entries)
}
print("RESULT", json.dumps(got))
"""
)

# Metadata of "ds": nested, with every JSON type.
DS_METADATA = {"rows": 3, "ratio": 0.5, "nested": {"list": [1, "x", None], "flag": True}}

# The files and references of "ds" v0 as the SDK downloads them (the file:// ones from the
# writer's home, the s3:// ones from moto, the http ones from `references`).
DS_CONTENTS = {
    "top/local.txt": "local file\n",
    "tree/a.txt": "tree a\n",
    "tree/sub/b.txt": "tree b\n",
    "made/new.txt": "new file\n",
    "data.bin": "http data\n",
    "web/plain.txt": "plain text\n",
    "fileref/referenced.txt": "referenced file\n",
    "fileref/dir/r1.txt": "ref one\n",
    "fileref/dir/deeper/r2.txt": "ref two\n",
    "obj.bin": "s3 object\n",
    "s3dir/a.txt": "s3 a\n",
    "s3dir/sub/b.txt": "s3 b\n",
}
S3_OBJECTS = {"obj.bin": b"s3 object\n", "dir/a.txt": b"s3 a\n", "dir/sub/b.txt": b"s3 b\n"}


class ReferenceServer:
    """An HTTP server on loopback for http:// references: /data.bin answers with an ETag and
    Content-Length (what add_reference(checksum=True) records), /plain.txt without an ETag.
    Every request is kept as (method, path, lower-cased headers)."""

    FILES: ClassVar[dict[str, tuple[bytes, bool]]] = {
        "/data.bin": (b"http data\n", True),
        "/plain.txt": (b"plain text\n", False),
    }

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.requests.append(
                    ("GET", self.path, {k.lower(): v for k, v in self.headers.items()})
                )
                body, etag = server.FILES.get(self.path, (b"", False))
                self.send_response(200 if self.path in server.FILES else 404)
                self.send_header("Content-Length", str(len(body)))
                if etag:
                    self.send_header("ETag", f'"{hashlib.md5(body).hexdigest()}"')
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """An in-process moto S3 server on loopback holding bucket "bkt" with `S3_OBJECTS`;
    yields its URL."""
    import boto3  # type: ignore[import-untyped]
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log on stderr
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        s3.create_bucket(Bucket="bkt")
        for key, body in S3_OBJECTS.items():
            s3.put_object(Bucket="bkt", Key=key, Body=body)
        yield url
    finally:
        server.stop()


def artifact_env(home: Path, s3_url: str, endpoint_variable: str = "AWS_S3_ENDPOINT_URL"):
    """Extra environment for an SDK process that uses artifacts: its artifact cache and data
    (staging) directories under `home`, and S3 at moto with dummy credentials. 0.31's S3
    handler passes AWS_S3_ENDPOINT_URL to boto3 itself; boto3 also honours AWS_ENDPOINT_URL
    and AWS_ENDPOINT_URL_S3 on its own."""
    return {
        "WANDB_CACHE_DIR": str(home / "cache"),
        "WANDB_DATA_DIR": str(home / "data"),
        "WANDB_CONFIG_DIR": str(home / "config"),
        endpoint_variable: s3_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
    }


def sdk_result(result: subprocess.CompletedProcess[str]) -> Any:
    """The RESULT line a script printed, parsed; the script must have succeeded."""
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT "))


@dataclass
class LoggedArtifacts:
    """What `logged_artifacts` made: the fake with the writer's artifacts, what each SDK
    script printed, and the requests of each script (indices into fake.requests)."""

    fake: FakeWandb
    references: ReferenceServer
    writer_home: Path
    reader_home: Path
    logged: dict[str, list[str]]
    used: dict[str, Any]
    read: dict[str, Any]
    spans: dict[str, tuple[int, int]]

    def requests(self, script: str) -> list[Request]:
        start, end = self.spans[script]
        return self.fake.requests[start:end]


@pytest.fixture(scope="module")
def references() -> Iterator[ReferenceServer]:
    server = ReferenceServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    with moto_s3() as url:
        yield url


@pytest.fixture(scope="module")
def logged_artifacts(
    tmp_path_factory: pytest.TempPathFactory, references: ReferenceServer, s3_url: str
) -> Iterator[LoggedArtifacts]:
    """The official SDK logs "ds" (v0 with everything, v1 with one file) and "unchecked"
    (references without checksums) in run "writer", uses and downloads them in run "reader"
    (USE_ARTIFACTS_SCRIPT), then reads them with wandb.Api() (API_READ_SCRIPT), each process
    with a home (and so a cache) of its own."""
    if importlib.util.find_spec("wandb") is None:
        pytest.skip("the official wandb SDK is not installed")
    root = tmp_path_factory.mktemp("artifacts")
    homes = {name: root / name for name in ("writer", "reader", "api")}
    for home in homes.values():
        home.mkdir()
    spans: dict[str, tuple[int, int]] = {}
    results: dict[str, Any] = {}
    with FakeWandb() as fake:
        runs: tuple[tuple[str, str, tuple[str, ...], dict[str, str]], ...] = (
            ("writer", WRITE_ARTIFACTS_SCRIPT, (references.url, json.dumps(DS_METADATA)), {}),
            ("reader", USE_ARTIFACTS_SCRIPT, (DEFAULT_ENTITY,), {}),
            # Pages of 5 file URLs: the download pages with the cursor.
            (
                "api",
                API_READ_SCRIPT,
                (DEFAULT_ENTITY,),
                {"WANDB_ARTIFACT_FETCH_FILE_URL_BATCH_SIZE": "5"},
            ),
        )
        for name, script, args, env in runs:
            home = homes[name]
            start = len(fake.requests)
            result = run_sdk(fake, home, script, *args, env={**artifact_env(home, s3_url), **env})
            spans[name] = (start, len(fake.requests))
            results[name] = sdk_result(result)
        yield LoggedArtifacts(
            fake=fake,
            references=references,
            writer_home=homes["writer"],
            reader_home=homes["reader"],
            logged=results["writer"],
            used=results["reader"],
            read=results["api"],
            spans=spans,
        )
    assert fake.internal_errors == []


@needs_sdk
def test_sdk_logs_artifacts_with_files_references_and_metadata(logged_artifacts):
    """What the writer's log_artifact calls leave on the fake: versions numbered in commit
    order, aliases moved to the newest version, description, metadata and tags stored, and
    manifests with stored files and references (ref, extra, sizes or none)."""
    fake, logged = logged_artifacts.fake, logged_artifacts.logged
    v0, v1 = fake.collection(DEFAULT_ENTITY, "p", "ds").versions
    (unchecked,) = fake.collection(DEFAULT_ENTITY, "p", "unchecked").versions
    assert (v0.version, v1.version, unchecked.version) == ("v0", "v1", "v0")
    assert logged == {
        "ds:v0": ["v0", v0.digest],
        "ds:v1": ["v1", v1.digest],
        "unchecked:v0": ["v0", unchecked.digest],
    }
    # "best" and "latest" moved to v1 when it was committed; "exp-1" stayed.
    assert (sorted(v0.aliases), sorted(v1.aliases)) == (["exp-1"], ["best", "latest"])
    assert (v0.description, v0.metadata, sorted(v0.tags)) == (
        "the dataset",
        DS_METADATA,
        ["first cut", "raw"],
    )
    assert (v1.description, v1.metadata, v1.tags) == (None, None, [])
    assert v0.logged_by == v1.logged_by == unchecked.logged_by == ["writer"]

    contents = v0.manifest["contents"]
    assert set(contents) == set(DS_CONTENTS)
    stored = {p for p, e in contents.items() if "ref" not in e}
    assert (
        stored == set(v0.files) == {"top/local.txt", "tree/a.txt", "tree/sub/b.txt", "made/new.txt"}
    )
    for path in stored:
        assert v0.files[path].decode() == DS_CONTENTS[path]
        assert contents[path]["digest"] == b64md5(v0.files[path])
    http_url = logged_artifacts.references.url
    writer = logged_artifacts.writer_home.resolve().as_uri()
    etag = hashlib.md5(b"http data\n").hexdigest()
    refs = {
        p: (e["ref"], e["digest"], e["size"], e.get("extra"))
        for p, e in contents.items()
        if "ref" in e
    }
    assert refs == {
        "data.bin": (f"{http_url}/data.bin", etag, 10, {"etag": f'"{etag}"'}),
        # Unchecked: the digest is the URL, and wandb-core writes size 0 for "no size".
        "web/plain.txt": (f"{http_url}/plain.txt", f"{http_url}/plain.txt", 0, None),
        "fileref/referenced.txt": (
            f"{writer}/referenced.txt",
            b64md5(b"referenced file\n"),
            16,
            None,
        ),
        "fileref/dir/r1.txt": (f"{writer}/refdir/r1.txt", b64md5(b"ref one\n"), 8, None),
        "fileref/dir/deeper/r2.txt": (
            f"{writer}/refdir/deeper/r2.txt",
            b64md5(b"ref two\n"),
            8,
            None,
        ),
        **{
            path: (f"s3://bkt/{key}", md5, len(body), {"etag": md5})
            for path, key, body in (
                ("obj.bin", "obj.bin", S3_OBJECTS["obj.bin"]),
                ("s3dir/a.txt", "dir/a.txt", S3_OBJECTS["dir/a.txt"]),
                ("s3dir/sub/b.txt", "dir/sub/b.txt", S3_OBJECTS["dir/sub/b.txt"]),
            )
            for md5 in [hashlib.md5(body).hexdigest()]
        },
    }
    assert v0.digest == artifact_digest({p: e["digest"] for p, e in contents.items()})
    # References are never uploaded: only the stored files got upload URLs.
    assert set(v0.issued_files) == stored
    uploads = {r.path for r in logged_artifacts.requests("writer") if r.kind == "upload"}
    assert {
        p.removeprefix(f"/artifacts/{v0.number}/files/")
        for p in uploads
        if p.startswith(f"/artifacts/{v0.number}/files/")
    } == stored

    assert {p: (e["ref"], e["digest"]) for p, e in unchecked.manifest["contents"].items()} == {
        "f.txt": (f"{writer}/local.txt", b64md5(f"{writer}/local.txt".encode())),
        "s3.bin": ("s3://bkt/obj.bin", "s3://bkt/obj.bin"),
        "h.bin": (f"{http_url}/data.bin", f"{http_url}/data.bin"),
    }
    assert unchecked.files == {} and unchecked.issued_files == {}
    # Only references: no CreateArtifactFiles for it.
    writer_ops = [r.operation for r in logged_artifacts.requests("writer") if r.kind == "graphql"]
    assert writer_ops.count("CreateArtifactFiles") == 2  # ds v0 and v1
    assert writer_ops.count("CommitArtifact") == 3


@needs_sdk
def test_sdk_use_artifact_resolves_names_and_records_lineage(logged_artifacts):
    """run.use_artifact by entity/project/name:alias, name:v0 (with the right type), latest
    and a moved alias resolves the right version with everything logged; a wrong type and
    names that do not exist fail as against W&B (null in the GraphQL data, no error), without
    recording a use. The uses are the run's inputArtifacts."""
    fake, used = logged_artifacts.fake, logged_artifacts.used
    v0, v1 = fake.collection(DEFAULT_ENTITY, "p", "ds").versions
    v0_props = {
        "id": v0.id,
        "source_name": "ds:v0",
        "version": "v0",
        "type": "dataset",
        "digest": v0.digest,
        "description": "the dataset",
        "metadata": DS_METADATA,
        "aliases": ["exp-1"],
        "tags": ["first cut", "raw"],
        "size": sum(e.get("size") or 0 for e in v0.manifest["contents"].values()),
        "file_count": len(DS_CONTENTS),
        "state": "COMMITTED",
    }
    # The name keeps the alias or version it was asked by.
    assert used["exp-1"] == {**v0_props, "name": "ds:exp-1"}
    assert used["v0"] == {**v0_props, "name": "ds:v0"}
    v1_props = {
        **v0_props,
        "id": v1.id,
        "source_name": "ds:v1",
        "version": "v1",
        "digest": v1.digest,
        "description": None,
        "metadata": {},
        "aliases": ["best", "latest"],
        "tags": [],
        "size": len("version one\n"),
        "file_count": 1,
    }
    assert used["latest"] == {**v1_props, "name": "ds:latest"}
    assert used["best"] == {**v1_props, "name": "ds:best"}

    assert used["wrong type"] == [
        "CommError",
        "type 'model' specified but this artifact is of type 'dataset'",
    ]
    assert used["missing version"] == [
        "CommError",
        f"artifact membership 'ds:v7' not found in '{DEFAULT_ENTITY}/p'",
    ]
    assert used["missing collection"] == [
        "CommError",
        f"artifact membership 'nope:latest' not found in '{DEFAULT_ENTITY}/p'",
    ]
    assert used["missing project"] == [
        "CommError",
        f"project 'nowhere' not found under entity '{DEFAULT_ENTITY}'",
    ]

    reads = logged_artifacts.requests("reader")
    assert all(r.status == 200 for r in reads if r.kind != "unknown"), [
        (r.path, r.operation, r.status) for r in reads if r.status != 200
    ]
    lookups = [r for r in reads if r.operation == "ArtifactMembershipByName"]
    assert [r.body["variables"]["name"] for r in lookups] == [
        "ds:exp-1",
        "ds:v0",
        "ds:latest",
        "ds:best",
        "ds:v0",
        "ds:v7",
        "nope:latest",
        "ds:v0",
    ]
    # Misses and the wrong type record nothing: one UseArtifact per successful use.
    uses = [r.body for r in reads if r.operation == "UseArtifact"]
    assert [u["variables"]["artifactID"] for u in uses] == [v0.id, v0.id, v1.id, v1.id]
    for use in uses:
        assert use["variables"] == {
            "entityName": DEFAULT_ENTITY,
            "projectName": "p",
            "runName": "reader",
            "artifactID": use["variables"]["artifactID"],
            "usedAs": None,
        }
        assert "$artifactEntityName" not in use["query"]  # only with the server feature
    assert v0.used_by == v1.used_by == [(DEFAULT_ENTITY, "p", "reader")]


@needs_sdk
def test_sdk_downloads_artifact_files_and_references(logged_artifacts):
    """download() fetches every file the fake lists: stored files from their directUrl
    (without the key), S3 references through boto3 from moto, http references from their
    host, file:// references from the disk; an entry alone and file() come from the API host
    (/artifactsV2/..., with the key)."""
    fake, used = logged_artifacts.fake, logged_artifacts.used
    v0, v1 = fake.collection(DEFAULT_ENTITY, "p", "ds").versions
    assert used["download"] == DS_CONTENTS
    assert used["entry"] == ["tree/sub/b.txt", b64md5(b"tree b\n"), 7, None]
    assert used["entry text"] == "tree b\n"
    b_md5 = hashlib.md5(b"s3 b\n").hexdigest()
    assert used["s3 entry"] == ["s3://bkt/dir/sub/b.txt", b_md5, 5, {"etag": b_md5}]
    # file() puts the single file under ./artifacts/<the name it was used by>.
    assert used["file"] == [os.path.join("artifacts", "ds:latest", "only.txt"), "version one\n"]
    assert used["no such entry"] == ["KeyError", "'Path not contained in artifact: nope.txt'"]

    reads = logged_artifacts.requests("reader")
    auth = basic_auth(fake.api_key)["Authorization"]
    downloads = [
        (r.path, r.headers.get("authorization"), r.status) for r in reads if r.kind == "download"
    ]
    birth = quote(v0.id, safe="")
    b_hex = hashlib.md5(b"tree b\n").hexdigest()
    only_hex = hashlib.md5(b"version one\n").hexdigest()
    v1_birth = quote(v1.id, safe="")
    api_host = [
        f"/artifactsV2/default/{DEFAULT_ENTITY}/p/ds/{birth}/{b_hex}/b.txt",
        f"/artifactsV2/default/{DEFAULT_ENTITY}/p/ds/{v1_birth}/{only_hex}/only.txt",
    ]
    assert [(p, a, s) for p, a, s in downloads if p.startswith("/artifactsV2/")] == [
        (path, auth, 200) for path in api_host
    ]
    signed = {p for p, a, s in downloads if not p.startswith("/artifactsV2/")}
    assert all(a is None for p, a, s in downloads if p in signed)
    # The reader's cache was empty: every stored file but the one fetched alone came from
    # its directUrl (the entry is in the cache by then).
    assert signed == {
        f"/artifacts/{v0.number}/wandb_manifest.json",
        f"/artifacts/{v1.number}/wandb_manifest.json",
        *(
            f"/artifacts/{v0.number}/files/{p}"
            for p in ("top/local.txt", "tree/a.txt", "made/new.txt")
        ),
    }
    pages = [r.body["variables"] for r in reads if r.operation == "GetArtifactMembershipFileUrls"]
    assert pages == [
        {
            "entity": DEFAULT_ENTITY,
            "project": "p",
            "collection": "ds",
            "alias": "v0",
            "cursor": None,
            "perPage": 5000,
        }
    ]
    # The http references were fetched from their host, without W&B's key.
    fetched = [(path, headers) for method, path, headers in logged_artifacts.references.requests]
    assert {"/data.bin", "/plain.txt"} <= {path for path, _ in fetched}
    assert not any("authorization" in headers for _, headers in fetched)
    # Where the SDK keeps things: the artifact cache (by MD5 and by ETag) under
    # WANDB_CACHE_DIR, staging copies of added files under WANDB_DATA_DIR.
    cache = logged_artifacts.reader_home / "cache" / "artifacts" / "obj"
    assert (cache / "md5").is_dir() and (cache / "etag").is_dir()
    assert (logged_artifacts.writer_home / "data" / "artifacts" / "staging").is_dir()


@needs_sdk
def test_sdk_public_api_reads_artifacts_and_lineage(logged_artifacts):
    """wandb.Api(): artifact(...) with everything logged, download() to its default root
    (paging the file URLs with the cursor), files() (references listed too), lineage both
    ways; a missing version fails."""
    fake, read = logged_artifacts.fake, logged_artifacts.read
    v0, _ = fake.collection(DEFAULT_ENTITY, "p", "ds").versions
    assert read["v0"]["id"] == v0.id
    assert (read["v0"]["name"], read["v0"]["aliases"], read["v0"]["metadata"]) == (
        "ds:v0",
        ["exp-1"],
        DS_METADATA,
    )
    assert read["root"] == os.path.join("artifacts", "ds:v0")  # ./artifacts/<source name>
    assert read["download"] == DS_CONTENTS
    sizes = {p: e.get("size") or 0 for p, e in v0.manifest["contents"].items()}
    assert read["files"] == sorted([p, sizes[p]] for p in DS_CONTENTS)
    assert read["used by"] == ["reader"]
    assert read["logged by"] == "writer"
    assert read["used"] == ["ds:v0", "ds:v1"]
    assert read["logged"] == ["ds:v0", "ds:v1", "unchecked:v0"]
    assert read["missing"] == [
        "CommError",
        f"artifact membership 'ds:v9' not found in '{DEFAULT_ENTITY}/p'",
    ]

    reads = logged_artifacts.requests("api")
    assert all(r.status == 200 for r in reads if r.kind != "unknown")
    pages = [r.body["variables"] for r in reads if r.operation == "GetArtifactMembershipFileUrls"]
    assert [(p["cursor"] is None, p["perPage"]) for p in pages] == [
        (True, 5),
        (False, 5),
        (False, 5),
    ]
    lineage = {"ArtifactUsedBy", "ArtifactCreatedBy", "RunInputArtifacts", "RunOutputArtifacts"}
    assert {"ArtifactMembershipFiles", *lineage} <= {r.operation for r in reads}


@needs_sdk
def test_sdk_does_not_download_unchecked_references(logged_artifacts):
    """References logged with checksum=False keep the URI as their digest, which the
    official SDK cannot verify on download: file:// and an http URL that has an ETag fail
    with a digest mismatch, s3:// as a missing object (what allow_missing_references
    skips). Only an http reference without an ETag (web/plain.txt of "ds") downloads."""
    read = logged_artifacts.read
    http_url = logged_artifacts.references.url
    writer = logged_artifacts.writer_home.resolve().as_uri()
    # [ref, digest, size]: the file's digest is the MD5 of its URI; "no size" arrives as 0,
    # since wandb-core writes the manifest.
    assert read["unchecked entries"] == {
        "f.txt": [f"{writer}/local.txt", b64md5(f"{writer}/local.txt".encode()), 11],
        "s3.bin": ["s3://bkt/obj.bin", "s3://bkt/obj.bin", 0],
        "h.bin": [f"{http_url}/data.bin", f"{http_url}/data.bin", 0],
    }
    downloads = read["unchecked downloads"]
    assert downloads["f.txt"][0] == "ValueError" and "Digest mismatch" in downloads["f.txt"][1]
    assert downloads["h.bin"][0] == "ValueError" and "Digest mismatch" in downloads["h.bin"][1]
    assert downloads["s3.bin"] == [
        "FileNotFoundError",
        "Couldn't find object version for bkt/obj.bin matching etag None",
    ]


# An offline run (argv[1]: the entity, argv[2]: the references' HTTP server) logs an
# artifact with files and references of every kind.
OFFLINE_ARTIFACT_SCRIPT = """
import sys
from pathlib import Path

import wandb

Path("local.txt").write_text("offline file\\n")
run = wandb.init(entity=sys.argv[1], project="p", id="offline-writer", mode="offline")
art = wandb.Artifact("offline-ds", type="dataset", description="made offline",
                     metadata={"nested": {"k": [1, 2]}})
art.add_file("local.txt", name="files/local.txt")
with art.new_file("files/new.txt") as f:
    f.write("offline new\\n")
art.add_reference(sys.argv[2] + "/data.bin")
art.add_reference(Path.cwd().as_uri() + "/local.txt", name="fileref/local.txt")
art.add_reference("s3://bkt/dir", name="s3dir")
art.add_reference("s3://bkt/obj.bin", name="unchecked.bin", checksum=False)
run.log_artifact(art, aliases=["offline"], tags=["off"])
run.finish()
"""

# Downloads argv[2] ("entity/project/name:alias") with wandb.Api().
API_DOWNLOAD_SCRIPT = (
    _ARTIFACT_HELPERS
    + """
art = wandb.Api().artifact(sys.argv[2])
got = props(art)
got["download"] = tree(art.download(root="downloaded", allow_missing_references=True))
print("RESULT", json.dumps(got))
"""
)


@needs_sdk
def test_sdk_offline_artifact_then_wandb_sync(tmp_path, references, s3_url):
    """An artifact logged offline (files and references) arrives committed through the
    official `wandb sync`, with its description, metadata, aliases and tags, and downloads
    with wandb.Api(). Here boto3 finds moto through AWS_ENDPOINT_URL."""
    writer, reader = tmp_path / "writer", tmp_path / "reader"
    writer.mkdir()
    reader.mkdir()
    with FakeWandb() as fake:
        env = {**artifact_env(writer, s3_url, "AWS_ENDPOINT_URL"), "WANDB_MODE": "offline"}
        result = run_sdk(
            fake, writer, OFFLINE_ARTIFACT_SCRIPT, DEFAULT_ENTITY, references.url, env=env
        )
        assert result.returncode == 0, result.stderr
        assert fake.requests == []

        (run_dir,) = (writer / "wandb").glob("offline-run-*")
        wandb_sync(run_dir, fake)

        (artifact,) = fake.artifacts()
        assert (artifact.name, artifact.state, artifact.version) == (
            "offline-ds",
            "COMMITTED",
            "v0",
        )
        assert sorted(artifact.aliases) == ["latest", "offline"]
        assert (artifact.description, artifact.metadata, artifact.tags) == (
            "made offline",
            {"nested": {"k": [1, 2]}},
            ["off"],
        )
        assert (artifact.run_name, artifact.history_step) == ("offline-writer", None)
        contents = artifact.manifest["contents"]
        assert sorted(contents) == [
            "data.bin",
            "fileref/local.txt",
            "files/local.txt",
            "files/new.txt",
            "s3dir/a.txt",
            "s3dir/sub/b.txt",
            "unchecked.bin",
        ]
        assert set(artifact.files) == {"files/local.txt", "files/new.txt"}
        assert contents["unchecked.bin"]["digest"] == "s3://bkt/obj.bin"

        env = artifact_env(reader, s3_url)
        got = sdk_result(
            run_sdk(
                fake,
                reader,
                API_DOWNLOAD_SCRIPT,
                DEFAULT_ENTITY,
                f"{DEFAULT_ENTITY}/p/offline-ds:offline",
                env=env,
            )
        )
        assert (got["version"], got["description"], got["tags"]) == ("v0", "made offline", ["off"])
        # Everything but the unchecked S3 reference, which the SDK cannot verify.
        assert got["download"] == {
            "files/local.txt": "offline file\n",
            "files/new.txt": "offline new\n",
            "data.bin": "http data\n",
            "fileref/local.txt": "offline file\n",
            "s3dir/a.txt": "s3 a\n",
            "s3dir/sub/b.txt": "s3 b\n",
        }
    assert fake.internal_errors == []


# Uses a draft artifact (logged by wandb-core with runName null, which then sends its own
# UseArtifact after the commit), then the same artifact by name; fetches its file alone.
DRAFT_USE_SCRIPT = (
    _ARTIFACT_HELPERS
    + """
run = wandb.init(project="p", id="drafter")
draft = wandb.Artifact("drafted", type="model")
with draft.new_file("w.txt") as f:
    f.write("weights\\n")
got = {"draft": props(run.use_artifact(draft))}
again = run.use_artifact("drafted:latest", type="model")
got["again"] = props(again)
with open(again.get_entry("w.txt").download(root="entry")) as f:
    got["entry"] = f.read()
run.finish()
print("RESULT", json.dumps(got))
"""
)


@needs_sdk
def test_sdk_uses_a_draft_artifact_against_a_server_with_features(tmp_path, s3_url):
    """run.use_artifact(draft): wandb-core logs it without a run (CreateArtifact runName null)
    and records the use with its own UseArtifact ($input). Against a server advertising
    USE_ARTIFACT_WITH_ENTITY_AND_PROJECT_INFORMATION and
    ARTIFACT_V2_DOWNLOAD_HANDLER_SUPPORTS_ARTIFACT_ID, the Python SDK's UseArtifact names the
    artifact's entity and project, and a file alone is fetched by an /artifactsV2/ URL with
    the artifact's id."""
    features = (
        "USE_ARTIFACT_WITH_ENTITY_AND_PROJECT_INFORMATION",
        "ARTIFACT_V2_DOWNLOAD_HANDLER_SUPPORTS_ARTIFACT_ID",
    )
    with FakeWandb(features=features) as fake:
        got = sdk_result(
            run_sdk(
                fake, tmp_path, DRAFT_USE_SCRIPT, DEFAULT_ENTITY, env=artifact_env(tmp_path, s3_url)
            )
        )
    assert fake.internal_errors == []
    (artifact,) = fake.artifacts()
    assert (artifact.name, artifact.version, artifact.run_name, artifact.logged_by) == (
        "drafted",
        "v0",
        None,
        [],
    )
    assert artifact.used_by == [(DEFAULT_ENTITY, "p", "drafter")]
    assert got["draft"]["id"] == got["again"]["id"] == artifact.id
    assert got["entry"] == "weights\n"
    (created,) = [
        r.body["variables"]["input"] for r in fake.requests if r.operation == "CreateArtifact"
    ]
    assert created["runName"] is None
    core, python = [r.body for r in fake.requests if r.operation == "UseArtifact"]
    assert core["variables"] == {
        "input": {
            "artifactID": artifact.id,
            "entityName": DEFAULT_ENTITY,
            "projectName": "p",
            "runName": "drafter",
            "clientMutationId": None,
            "usedAs": None,
            "artifactEntityName": DEFAULT_ENTITY,
            "artifactProjectName": "p",
        }
    }
    assert python["variables"] == {
        "entityName": DEFAULT_ENTITY,
        "projectName": "p",
        "runName": "drafter",
        "artifactID": artifact.id,
        "usedAs": None,
        "artifactEntityName": DEFAULT_ENTITY,
        "artifactProjectName": "p",
    }
    (entry,) = [r for r in fake.requests if r.path.startswith("/artifactsV2/")]
    hex_md5 = hashlib.md5(b"weights\n").hexdigest()
    artifact_id = quote(artifact.id, safe="")
    assert entry.path == (
        f"/artifactsV2/default/{DEFAULT_ENTITY}/p/drafted/{artifact_id}/{artifact_id}/{hex_md5}/w.txt"
    )
    assert entry.status == 200


# --------------------------------------------------------------------------- raw HTTP


def basic_auth(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"api:{key}".encode()).decode()}


def request(
    fake: FakeWandb,
    method: str,
    path: str,
    body: Any = None,
    *,
    auth: bool = True,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, http.client.HTTPMessage]:
    """One request on a fresh connection; auth sends the fake's API key."""
    all_headers = {
        "Content-Type": "application/json",
        **(basic_auth(fake.api_key) if auth else {}),
        **(headers or {}),
    }
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn = http.client.HTTPConnection(fake.base_url.removeprefix("http://"), timeout=10)
    try:
        conn.request(method, path, data, all_headers)
        response = conn.getresponse()
        payload = response.read()
    finally:
        conn.close()
    return response.status, json.loads(payload) if payload else None, response.headers


def graphql(fake: FakeWandb, operation: str, variables: dict[str, Any], **kwargs: Any):
    body = {"query": f"query {operation} {{ x }}", "variables": variables}
    return request(fake, "POST", "/graphql", {**body, "operationName": operation}, **kwargs)


def graphql_query(fake: FakeWandb, query: str, variables: dict[str, Any]):
    """A whole GraphQL document, sent as the Python SDK sends its queries (operationName "")."""
    body = {"query": query, "variables": variables, "operationName": ""}
    return request(fake, "POST", "/graphql", body)


def create_run(fake: FakeWandb, name: str = "r1") -> str:
    """Create run fake-entity/p/<name>; returns its file_stream path."""
    config = json.dumps({"lr": {"value": 0.1}})
    code, body, _ = graphql(fake, "UpsertBucket", {"name": name, "project": "p", "config": config})
    assert code == 200 and body["data"]["upsertBucket"]["inserted"], body
    return f"/files/{DEFAULT_ENTITY}/p/{name}/file_stream"


def history_chunk(offset: int, steps: range) -> dict[str, Any]:
    lines = [json.dumps({"_step": step, "loss": float("nan")}) for step in steps]
    return {"files": {"wandb-history.jsonl": {"offset": offset, "content": lines}}}


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def artifact_digest(digests: dict[str, str]) -> str:
    """W&B's artifact digest over {path: entry digest} (wandb-artifacts-resume.md §1.3)."""
    lines = "".join(f"{path}:{digests[path]}\n" for path in sorted(digests))
    return hashlib.md5(f"wandb-artifact-manifest-v1\n{lines}".encode()).hexdigest()


def manifest_bytes(files: dict[str, bytes], refs: dict[str, dict[str, Any]] | None = None) -> bytes:
    """A manifest (the Python SDK's form) of stored `files` and reference entries `refs`."""
    contents = {p: {"digest": b64md5(data), "size": len(data)} for p, data in files.items()}
    contents.update(refs or {})
    manifest = {
        "version": 1,
        "storagePolicy": "wandb-storage-policy-v1",
        "storagePolicyConfig": {"storageLayout": "V2"},
        "contents": contents,
    }
    return json.dumps(manifest).encode()


def graphql_data(fake: FakeWandb, operation: str, variables: dict[str, Any]) -> Any:
    """An operation that must succeed; returns its data."""
    code, body, _ = graphql(fake, operation, variables)
    assert code == 200 and body.get("errors") is None, body
    return body["data"]


def graphql_error_message(fake: FakeWandb, operation: str, variables: dict[str, Any]) -> str:
    """An operation that must fail as GraphQL does (200, no data); returns the message."""
    code, body, _ = graphql(fake, operation, variables)
    assert code == 200 and body["data"] is None, body
    return body["errors"][0]["message"]


def create_artifact_input(name: str, digest: str, client_id: str, **extra: Any) -> dict[str, Any]:
    """CreateArtifact variables as wandb-core sends them, for run r1 of project p."""
    return {
        "input": {
            "entityName": DEFAULT_ENTITY,
            "projectName": "p",
            "runName": "r1",
            "artifactTypeName": "dataset",
            "artifactCollectionName": name,
            "digest": digest,
            "digestAlgorithm": "MANIFEST_MD5",
            "aliases": [{"alias": "latest", "artifactCollectionName": name}],
            "clientID": client_id,
            "sequenceClientID": f"seq-{name}",
            "enableDigestDeduplication": True,
            "historyStep": None,
            **extra,
        }
    }


def manifest_variables(artifact_id: str, digest: str, include_upload: bool) -> dict[str, Any]:
    return {
        "artifactID": artifact_id,
        "baseArtifactID": None,
        "name": "wandb_manifest.json",
        "digest": digest,
        "entityName": DEFAULT_ENTITY,
        "projectName": "p",
        "runName": "r1",
        "manifestType": "FULL",
        "includeUpload": include_upload,
    }


def artifact_files_variables(
    artifact_id: str, manifest_id: str, files: dict[str, bytes]
) -> dict[str, Any]:
    specs = [
        {
            "artifactID": artifact_id,
            "artifactManifestID": manifest_id,
            "name": path,
            "md5": b64md5(data),
            "mimetype": None,
            "uploadPartsInput": None,
        }
        for path, data in files.items()
    ]
    return {"input": {"artifactFiles": specs, "storageLayout": "V2", "cloudRegionID": None}}


def put_signed(fake: FakeWandb, url: str, data: bytes, headers: list[str]) -> int:
    """PUT to an issued URL with its uploadHeaders ("Name:Value"), as wandb-core does."""
    sent = dict(header.split(":", 1) for header in headers)
    return request(fake, "PUT", url.removeprefix(fake.base_url), data, auth=False, headers=sent)[0]


def start_artifact(
    fake: FakeWandb,
    name: str,
    files: dict[str, bytes],
    client_id: str,
    refs: dict[str, dict[str, Any]] | None = None,
) -> tuple[str, str]:
    """CreateArtifact and the first CreateArtifactManifest; returns (artifact, manifest) ids."""
    digests = {path: b64md5(data) for path, data in files.items()}
    digests.update({path: entry["digest"] for path, entry in (refs or {}).items()})
    created = graphql_data(
        fake, "CreateArtifact", create_artifact_input(name, artifact_digest(digests), client_id)
    )["createArtifact"]["artifact"]
    assert created["state"] == "PENDING"
    manifest = graphql_data(
        fake, "CreateArtifactManifest", manifest_variables(created["id"], "", False)
    )["createArtifactManifest"]["artifactManifest"]
    assert "uploadUrl" not in manifest["file"]  # @include(if: $includeUpload)
    return created["id"], manifest["id"]


def upload_files(fake: FakeWandb, artifact_id: str, manifest_id: str, files: dict[str, bytes]):
    edges = graphql_data(
        fake, "CreateArtifactFiles", artifact_files_variables(artifact_id, manifest_id, files)
    )["createArtifactFiles"]["files"]["edges"]
    for (path, data), edge in zip(files.items(), edges, strict=True):
        node = edge["node"]
        assert node["artifact"]["id"] == artifact_id
        assert put_signed(fake, node["uploadUrl"], data, node["uploadHeaders"]) == 200, path


def upload_manifest(fake: FakeWandb, artifact_id: str, manifest: bytes) -> None:
    variables = manifest_variables(artifact_id, b64md5(manifest), True)
    file = graphql_data(fake, "CreateArtifactManifest", variables)["createArtifactManifest"][
        "artifactManifest"
    ]["file"]
    assert put_signed(fake, file["uploadUrl"], manifest, file["uploadHeaders"]) == 200


def log_artifact(
    fake: FakeWandb,
    name: str,
    files: dict[str, bytes],
    client_id: str,
    refs: dict[str, dict[str, Any]] | None = None,
) -> str:
    """The whole sequence of wandb-core's artifact saver (`refs`: reference entries, which
    are not uploaded); returns the artifact id."""
    artifact_id, manifest_id = start_artifact(fake, name, files, client_id, refs)
    if files:
        upload_files(fake, artifact_id, manifest_id, files)
    upload_manifest(fake, artifact_id, manifest_bytes(files, refs))
    commit = graphql_data(fake, "CommitArtifact", {"artifactID": artifact_id})
    assert commit["commitArtifact"]["artifact"]["id"] == artifact_id
    return artifact_id


def test_requests_need_the_api_key(fake):
    stream = create_run(fake)

    assert graphql(fake, "Viewer", {}, auth=False)[0] == 401
    code, body, _ = graphql(fake, "Viewer", {}, headers=basic_auth(WRONG_KEY))
    assert code == 401 and body["errors"][0]["message"]
    assert request(fake, "POST", stream, {}, auth=False)[0] == 401
    code, body, _ = graphql(fake, "Viewer", {})
    assert code == 200 and body["data"]["viewer"]["entity"] == DEFAULT_ENTITY


def test_graphql_rejects_malformed_requests(fake):
    create_run(fake)

    assert request(fake, "POST", "/graphql", b"{not json")[0] == 400
    assert request(fake, "POST", "/graphql", {"variables": {}})[0] == 400
    assert graphql(fake, "DropAllTables", {})[0] == 400
    named_elsewhere = {"query": "query Viewer { viewer { id } }", "operationName": "Other"}
    assert request(fake, "POST", "/graphql", named_elsewhere)[0] == 400
    assert graphql(fake, "UpsertBucket", {"name": "r2", "tags": "t1"})[0] == 400
    unwrapped = json.dumps({"lr": 0.1})
    assert graphql(fake, "UpsertBucket", {"name": "r2", "config": unwrapped})[0] == 400
    missing = {"entity": DEFAULT_ENTITY, "project": "p", "run": "nope", "files": ["a.txt"]}
    code, body, _ = graphql(fake, "CreateRunFiles", missing)
    assert code == 200 and body["data"] is None and "not found" in body["errors"][0]["message"]
    assert [r.name for r in fake.runs()] == ["r1"]


def test_file_stream_offsets_are_strict(fake):
    stream = create_run(fake)
    run = fake.run_state(DEFAULT_ENTITY, "p", "r1")

    assert request(fake, "POST", stream, history_chunk(0, range(2)))[0] == 200
    # A resend that overlaps stored lines replaces them: no duplicates.
    assert request(fake, "POST", stream, history_chunk(1, range(1, 4)))[0] == 200
    assert [row["_step"] for row in run.history] == [0, 1, 2, 3]
    assert math.isnan(run.history[0]["loss"])

    rejected = [
        history_chunk(6, range(6, 7)),  # skips lines 4 and 5
        history_chunk(3, range(10, 11)),  # line 3 resent with different content
        {"dropped": 0},  # legacy key that wandb-core never sends
        {"files": {"wandb-summary.json": {"offset": 0, "content": ["{}", "{}"]}}},
        {"files": {"notes.txt": {"offset": 0, "content": ["hi"]}}},
        {"uploaded": ["never-put.txt"]},
        {"exitcode": 0},  # only valid together with complete
        [1, 2],
    ]
    for body in rejected:
        assert request(fake, "POST", stream, body)[0] == 400, body
    assert [row["_step"] for row in run.history] == [0, 1, 2, 3]

    gzipped = {"Content-Encoding": "gzip"}  # FILESTREAM_GZIP was not advertised
    assert request(fake, "POST", stream, b"\x1f\x8b", headers=gzipped)[0] == 400
    assert request(fake, "POST", "/files/fake-entity/p/nope/file_stream", {})[0] == 404

    code, body, _ = request(fake, "POST", stream, {"complete": True, "exitcode": 3})
    assert (code, body) == (200, {"exitcode": None, "limits": {}, "stopped": False})
    assert (run.complete, run.exitcode) == (True, 3)


def test_uploads_go_to_issued_urls_without_the_key(fake):
    stream = create_run(fake)
    files = {"entity": DEFAULT_ENTITY, "project": "p", "run": "r1", "files": ["dir/a b.txt"]}
    code, body, _ = graphql(fake, "CreateRunFiles", files)
    assert code == 200, body
    (entry,) = body["data"]["createRunFiles"]["files"]
    assert entry["name"] == "dir/a b.txt"
    assert entry["uploadUrl"].startswith(fake.base_url + "/upload/")
    url_path = entry["uploadUrl"].removeprefix(fake.base_url)

    assert request(fake, "PUT", url_path, b"data")[0] == 400  # carries the API key
    unissued = url_path.replace("a%20b.txt", "other.txt")
    assert request(fake, "PUT", unissued, b"data", auth=False)[0] == 403
    assert request(fake, "PUT", url_path, b"data", auth=False)[0] == 200

    run = fake.run_state(DEFAULT_ENTITY, "p", "r1")
    assert run.files == {"dir/a b.txt": b"data"}
    assert request(fake, "POST", stream, {"uploaded": ["dir/a b.txt"]})[0] == 200
    assert run.uploaded == ["dir/a b.txt"]


def test_faults_are_consumed_in_order(fake):
    stream = create_run(fake)
    run = fake.run_state(DEFAULT_ENTITY, "p", "r1")
    fake.inject("file_stream", [status(429, {"Retry-After": "7"}), DROP_AFTER_APPLY, RESET])
    fake.inject("file_stream", [delay(0.3)])

    code, _, headers = request(fake, "POST", stream, history_chunk(0, range(1)))
    assert (code, headers["Retry-After"], run.history) == (429, "7", [])

    with pytest.raises(http.client.RemoteDisconnected):
        request(fake, "POST", stream, history_chunk(0, range(1)))
    assert len(run.history) == 1  # applied before the connection was dropped

    with pytest.raises(http.client.RemoteDisconnected):
        request(fake, "POST", stream, history_chunk(1, range(1, 2)))
    assert len(run.history) == 1  # not applied

    started = time.monotonic()
    assert request(fake, "POST", stream, history_chunk(1, range(1, 2)))[0] == 200
    assert time.monotonic() - started >= 0.3
    assert len(run.history) == 2
    assert fake.pending_faults() == {}
    assert [r.fault for r in fake.requests if r.kind == "file_stream"] == [
        "status",
        "drop_after_apply",
        "reset",
        "delay",
    ]

    with pytest.raises(ValueError):
        fake.inject("file_stream:Viewer", [500])


def test_rate_limit_refuses_above_the_rate_and_changes_nothing(fake):
    stream = create_run(fake)
    run = fake.run_state(DEFAULT_ENTITY, "p", "r1")
    files = {"entity": DEFAULT_ENTITY, "project": "p", "run": "r1", "files": ["a.txt"]}
    upload = graphql_data(fake, "CreateRunFiles", files)["createRunFiles"]["files"][0]
    upload_path = upload["uploadUrl"].removeprefix(fake.base_url)
    fake.rate_limit(1, retry_after=1, burst=2)

    # The burst goes through; then every kind of request is refused, and none is applied.
    assert request(fake, "POST", stream, history_chunk(0, range(1)))[0] == 200
    assert graphql(fake, "Viewer", {})[0] == 200
    code, body, headers = request(fake, "POST", stream, history_chunk(1, range(1, 2)))
    assert (code, headers["Retry-After"], headers["Content-Type"]) == (
        429,
        "1",
        "application/json",
    )
    assert "rate limit exceeded" in body["errors"][0]["message"]
    assert graphql(fake, "UpsertBucket", {"name": "r2", "project": "p"})[0] == 429
    assert request(fake, "PUT", upload_path, b"data", auth=False)[0] == 429
    # Back for the same run's file stream without waiting: a Retry-After violation.
    assert request(fake, "POST", stream, {"complete": True, "exitcode": 0})[0] == 429
    assert [r.name for r in fake.runs()] == ["r1"]
    assert (len(run.history), run.files, run.complete) == (1, {}, False)
    assert fake.rejected == 4

    # One token a second: after the Retry-After, one request goes through, the next not.
    time.sleep(1)
    assert request(fake, "POST", stream, history_chunk(1, range(1, 2)))[0] == 200
    assert [row["_step"] for row in run.history] == [0, 1]
    assert graphql(fake, "Viewer", {})[0] == 429
    assert fake.rejected == 5

    fake.rate_limit(None)
    assert all(graphql(fake, "ServerFeaturesQuery", {})[0] == 200 for _ in range(10))
    assert fake.rejected == 5

    refused = [r for r in fake.requests if r.fault == "rate_limit"]
    assert [t.request for t in fake.retry_afters] == refused
    assert [r.resource for r in refused] == [
        f"POST {stream}",
        "graphql UpsertBucket project=p name=r2",
        f"PUT {upload_path}",
        f"POST {stream}",
        "graphql Viewer",
    ]
    assert all(t.seconds == 1 and not t.shared for t in fake.retry_afters[:4])
    assert fake.retry_afters[4].shared  # Viewer names no run: every client asks for it
    (violation,) = fake.retry_after_violations()
    assert violation.request is refused[3] and violation.told.request is refused[0]
    assert 0 < violation.early <= 1
    assert stream in str(violation)


def test_retry_after_of_injected_faults_is_accounted(fake):
    """Retry-After from an injected fault counts too, in decimal seconds; requests already
    in flight when it was answered, and those for other resources, are no violation."""
    stream = create_run(fake)
    other = create_run(fake, "r2")
    fake.inject("file_stream", [status(503, {"Retry-After": "0.3"})])
    assert request(fake, "POST", stream, history_chunk(0, range(1)))[0] == 503
    assert request(fake, "POST", other, history_chunk(0, range(1)))[0] == 200
    assert request(fake, "POST", stream, history_chunk(0, range(1)))[0] == 200  # too early
    time.sleep(0.3)
    assert request(fake, "POST", stream, history_chunk(1, range(1, 2)))[0] == 200
    (told,) = fake.retry_afters
    assert (told.seconds, told.request.status, told.resource) == (0.3, 503, f"POST {stream}")
    streams = [r for r in fake.requests if r.kind == "file_stream"]
    assert [v.request for v in fake.retry_after_violations()] == [streams[2]]

    fake.rate_limit(1, retry_after=0.25, burst=1)
    assert graphql(fake, "Viewer", {})[0] == 200
    code, _, headers = graphql(fake, "Viewer", {})
    assert (code, headers["Retry-After"]) == (429, "0.25")
    assert graphql(fake, "Viewer", {})[0] == 429  # too early, but shared
    assert len(fake.retry_after_violations()) == 2
    assert len(fake.retry_after_violations(include_shared=False)) == 1


def test_slow_phase_delays_every_request(fake):
    fake.slow_phase(5, latency=0.3)
    started = time.monotonic()
    assert graphql(fake, "Viewer", {})[0] == 200
    assert time.monotonic() - started >= 0.3
    fake.rate_limit(1, retry_after=0.25, burst=1)
    assert graphql(fake, "ServerFeaturesQuery", {})[0] == 200
    started = time.monotonic()
    assert graphql(fake, "Viewer", {})[0] == 429  # a refusal is slow too
    assert time.monotonic() - started >= 0.3
    fake.rate_limit(None)

    fake.slow_phase(0.2, latency=0.3)  # replaces the phase, and ends by itself
    time.sleep(0.2)
    assert graphql(fake, "Viewer", {})[0] == 200
    fake.slow_phase(5, latency=0.3)
    fake.slow_phase(0, 0)  # ends it now
    assert graphql(fake, "Viewer", {})[0] == 200
    assert [r.slowed for r in fake.requests] == [0.3, 0.3, 0.3, 0.0, 0.0]


def test_alerts_are_validated(fake):
    create_run(fake)
    run = fake.run_state(DEFAULT_ENTITY, "p", "r1")
    alert = {
        "entityName": DEFAULT_ENTITY,
        "projectName": "p",
        "runName": "r1",
        "title": "Hi",
        "text": "body",
    }

    rejected = [
        {**alert, "title": None},
        {k: v for k, v in alert.items() if k != "text"},
        {**alert, "runName": 1},
        {**alert, "severity": "FATAL"},
        {**alert, "severity": "warn"},
        {**alert, "waitDuration": "300000"},
        {**alert, "waitDuration": 1.5},
        {**alert, "waitDuration": True},
        {**alert, "waitDuration": -1},
    ]
    for variables in rejected:
        assert graphql(fake, "NotifyScriptableRunAlert", variables)[0] == 400, variables
    code, body, _ = graphql(fake, "NotifyScriptableRunAlert", {**alert, "runName": "nope"})
    assert code == 200 and body["data"] is None and "not found" in body["errors"][0]["message"]
    assert run.alerts == []

    # severity defaults to INFO, and waitDuration may be left out.
    code, body, _ = graphql(fake, "NotifyScriptableRunAlert", alert)
    assert (code, body) == (200, {"data": {"notifyScriptableRunAlert": {"success": True}}})
    full = {**alert, "severity": "ERROR", "waitDuration": 60000}
    assert graphql(fake, "NotifyScriptableRunAlert", full)[0] == 200
    assert run.alerts == [
        {"title": "Hi", "text": "body", "severity": "INFO", "wait_duration": None},
        {"title": "Hi", "text": "body", "severity": "ERROR", "wait_duration": 60000},
    ]


def test_artifact_uploads_are_checked(fake):
    """Artifact files and the manifest go to URLs signed for their MD5: the uploadHeaders must
    be sent, the body must match, and nothing is accepted before its URL was issued."""
    create_run(fake)
    files = {"a.txt": b"hello world\n"}
    artifact_id, manifest_id = start_artifact(fake, "ds", files, "client-1")
    variables = artifact_files_variables(artifact_id, manifest_id, files)
    spec = variables["input"]["artifactFiles"][0]

    wrong_manifest = artifact_files_variables(artifact_id, artifact_id, files)
    assert "manifest" in graphql_error_message(fake, "CreateArtifactFiles", wrong_manifest)
    bad_md5 = {"input": {**variables["input"], "artifactFiles": [{**spec, "md5": "abc"}]}}
    assert "md5" in graphql_error_message(fake, "CreateArtifactFiles", bad_md5)
    # "digest" only exists on servers with the ARTIFACT_DIGEST_ALGORITHM feature.
    with_digest = {"input": {**variables["input"], "artifactFiles": [{**spec, "digest": "x"}]}}
    assert graphql(fake, "CreateArtifactFiles", with_digest)[0] == 400

    (edge,) = graphql_data(fake, "CreateArtifactFiles", variables)["createArtifactFiles"]["files"][
        "edges"
    ]
    node = edge["node"]
    assert node["uploadUrl"].startswith(f"{fake.base_url}/artifacts/")
    assert node["uploadHeaders"] == [f"Content-MD5:{b64md5(files['a.txt'])}"]
    url = node["uploadUrl"].removeprefix(fake.base_url)
    signed = {"Content-MD5": b64md5(files["a.txt"])}
    assert request(fake, "PUT", url, files["a.txt"], auth=True, headers=signed)[0] == 400
    assert request(fake, "PUT", url, files["a.txt"], auth=False)[0] == 403  # header missing
    assert put_signed(fake, node["uploadUrl"], b"other bytes\n", node["uploadHeaders"]) == 400
    unissued = url.replace("a.txt", "b.txt")
    assert put_signed(fake, fake.base_url + unissued, files["a.txt"], node["uploadHeaders"]) == 403
    (artifact,) = fake.artifacts()
    assert artifact.files == {}
    assert put_signed(fake, node["uploadUrl"], files["a.txt"], node["uploadHeaders"]) == 200
    assert artifact.files == files

    message = graphql_error_message(fake, "CommitArtifact", {"artifactID": artifact_id})
    assert "manifest was never uploaded" in message
    no_digest = manifest_variables(artifact_id, "", True)
    assert "digest" in graphql_error_message(fake, "CreateArtifactManifest", no_digest)
    manifest = manifest_bytes(files)
    file = graphql_data(
        fake, "CreateArtifactManifest", manifest_variables(artifact_id, b64md5(manifest), True)
    )["createArtifactManifest"]["artifactManifest"]["file"]
    assert put_signed(fake, file["uploadUrl"], manifest + b" ", file["uploadHeaders"]) == 400
    assert put_signed(fake, file["uploadUrl"], manifest, file["uploadHeaders"]) == 200

    commit = graphql_data(fake, "CommitArtifact", {"artifactID": artifact_id})
    assert commit["commitArtifact"]["artifact"]["id"] == artifact_id
    assert (artifact.state, artifact.version, artifact.aliases) == ("COMMITTED", "v0", ["latest"])
    # A committed artifact's files are final; a repeated commit changes nothing.
    assert put_signed(fake, node["uploadUrl"], files["a.txt"], node["uploadHeaders"]) == 403
    assert "PENDING" in graphql_error_message(fake, "CreateArtifactFiles", variables)
    assert graphql_data(fake, "CommitArtifact", {"artifactID": artifact_id}) == commit
    assert fake.artifacts() == [artifact]


def test_commit_checks_the_manifest_against_uploads(fake):
    """CommitArtifact fails (the artifact stays PENDING) unless every stored file of the
    manifest was uploaded with its digest and the manifest matches the artifact's digest."""
    create_run(fake)
    files = {"a.txt": b"a\n", "d/b.txt": b"b\n"}
    artifact_id, manifest_id = start_artifact(fake, "ds", files, "client-1")
    upload_files(fake, artifact_id, manifest_id, {"a.txt": files["a.txt"]})  # not d/b.txt
    upload_manifest(fake, artifact_id, manifest_bytes(files))
    message = graphql_error_message(fake, "CommitArtifact", {"artifactID": artifact_id})
    assert "'d/b.txt' was not uploaded" in message

    # A manifest that does not add up to the digest given to CreateArtifact.
    other_id, other_manifest = start_artifact(fake, "other", files, "client-2")
    upload_files(fake, other_id, other_manifest, files)
    upload_manifest(fake, other_id, manifest_bytes({"a.txt": files["a.txt"]}))
    message = graphql_error_message(fake, "CommitArtifact", {"artifactID": other_id})
    assert "differs from the digest" in message

    assert [a.state for a in fake.artifacts()] == ["PENDING", "PENDING"]
    assert "not found" in graphql_error_message(fake, "CommitArtifact", {"artifactID": "QQ=="})


def test_artifact_versions_dedup_and_client_ids(fake):
    create_run(fake)
    first = log_artifact(fake, "ds", {"a.txt": b"1\n"}, "client-1")

    # The same content again: W&B answers the committed version and makes no new one.
    same = create_artifact_input("ds", artifact_digest({"a.txt": b64md5(b"1\n")}), "client-2")
    created = graphql_data(fake, "CreateArtifact", same)["createArtifact"]["artifact"]
    assert (created["id"], created["state"]) == (first, "COMMITTED")
    assert len(fake.artifacts()) == 1

    second = log_artifact(fake, "ds", {"a.txt": b"2\n"}, "client-3")
    v0, v1 = fake.artifacts()
    assert (v0.version, v0.aliases, v1.version, v1.aliases) == ("v0", [], "v1", ["latest"])
    assert (v0.client_ids, v1.client_ids) == (["client-1", "client-2"], ["client-3"])
    for client_id, server_id in (("client-2", first), ("client-3", second)):
        mapping = graphql_data(fake, "ClientIDMapping", {"clientID": client_id})
        assert mapping == {"clientIDMapping": {"serverID": server_id}}
    assert graphql_data(fake, "ClientIDMapping", {"clientID": "nope"}) == {"clientIDMapping": None}
    assert fake.resolve_client_artifact_url("wandb-client-artifact://seq-ds:latest/a.txt") == (
        v1,
        "a.txt",
    )
    assert fake.collection(DEFAULT_ENTITY, "p", "ds").versions == [v0, v1]

    typed = create_artifact_input("ds", "0" * 32, "client-4", artifactTypeName="model")
    assert "has type dataset" in graphql_error_message(fake, "CreateArtifact", typed)
    no_run = create_artifact_input("ds", "0" * 32, "client-5", runName="nope")
    assert "not found" in graphql_error_message(fake, "CreateArtifact", no_run)
    unknown_field = create_artifact_input("ds", "0" * 32, "client-6", color="red")
    assert graphql(fake, "CreateArtifact", unknown_field)[0] == 400
    bad_digest = create_artifact_input("ds", "not-hex", "client-7")
    assert "digest" in graphql_error_message(fake, "CreateArtifact", bad_digest)
    assert len(fake.artifacts()) == 2


# UseArtifact as wandb-core sends it, and as the Python SDK's run.use_artifact does (with
# the artifact's entity and project only against servers advertising the feature).
CORE_USE_ARTIFACT = """mutation UseArtifact ($input: UseArtifactInput!) {
	useArtifact(input: $input) {
		artifact {
			id
		}
	}
}"""
PY_USE_ARTIFACT = """
mutation UseArtifact($entityName: String!, $projectName: String!, $runName: String!,
        $artifactID: ID!) {
    useArtifact(input: {entityName: $entityName, projectName: $projectName,
            runName: $runName, artifactID: $artifactID}) {
        artifact { id digest description state createdAt metadata }
    }
}"""
PY_USE_ARTIFACT_WITH_PROJECT = PY_USE_ARTIFACT.replace(
    "$artifactID: ID!)",
    "$artifactID: ID!, $artifactEntityName: String, $artifactProjectName: String)",
).replace(
    "artifactID: $artifactID}",
    "artifactID: $artifactID, artifactEntityName: $artifactEntityName,"
    " artifactProjectName: $artifactProjectName}",
)


def graphql_errors(fake: FakeWandb, query: str, variables: dict[str, Any]) -> str:
    """A query that must fail as GraphQL does (200, no data); returns the message."""
    code, body, _ = graphql_query(fake, query, variables)
    assert code == 200 and body["data"] is None, body
    return body["errors"][0]["message"]


def test_use_artifact_is_executed_and_checked(fake):
    """UseArtifact in both forms records the run as a user of a committed artifact and
    answers the selected fields; bad input or a field the fake does not serve is a 400 and
    records nothing; an unknown or uncommitted artifact and an unknown run are GraphQL
    errors. artifactEntityName/artifactProjectName need the server feature."""
    create_run(fake)
    artifact_id = log_artifact(fake, "ds", {"a.txt": b"a\n"}, "client-1")
    (artifact,) = fake.artifacts()
    use = {
        "artifactID": artifact_id,
        "entityName": DEFAULT_ENTITY,
        "projectName": "p",
        "runName": "r1",
        "clientMutationId": None,
        "usedAs": None,
    }
    py_vars = {k: v for k, v in use.items() if k != "clientMutationId"}

    refused = [
        (CORE_USE_ARTIFACT.replace("\t\t\tid\n", "\t\t\tid\n\t\t\tcolor\n"), {"input": use}),
        (CORE_USE_ARTIFACT, {"input": {**use, "color": "red"}}),
        (CORE_USE_ARTIFACT, {"input": {**use, "artifactEntityName": DEFAULT_ENTITY}}),
        (CORE_USE_ARTIFACT, {"input": {**use, "runName": 5}}),
        (CORE_USE_ARTIFACT, {"input": {**use, "artifactID": None}}),
        (CORE_USE_ARTIFACT, {"input": "not an object"}),
        (PY_USE_ARTIFACT, {**py_vars, "artifactID": 1.5}),  # ID!
        (PY_USE_ARTIFACT, {k: v for k, v in py_vars.items() if k != "runName"}),
        (PY_USE_ARTIFACT_WITH_PROJECT, {**py_vars, "artifactEntityName": DEFAULT_ENTITY}),
    ]
    for query, variables in refused:
        code, body, _ = graphql_query(fake, query, variables)
        assert code == 400, (variables, body)
    code, body, _ = graphql_query(fake, refused[0][0], refused[0][1])
    assert "Artifact.color" in body["errors"][0]["message"]
    assert artifact.used_by == []

    message = graphql_errors(fake, CORE_USE_ARTIFACT, {"input": {**use, "artifactID": "QQ=="}})
    assert "not found" in message
    pending, _ = start_artifact(fake, "pending", {"b.txt": b"b\n"}, "client-2")
    message = graphql_errors(fake, CORE_USE_ARTIFACT, {"input": {**use, "artifactID": pending}})
    assert message == f"cannot use artifact {pending} as it has not committed"
    message = graphql_errors(fake, PY_USE_ARTIFACT, {**py_vars, "runName": "nope"})
    assert message == f"run {DEFAULT_ENTITY}/p/nope not found"
    assert artifact.used_by == []

    assert graphql_data_of(fake, CORE_USE_ARTIFACT, {"input": use}) == {
        "useArtifact": {"artifact": {"id": artifact_id}}
    }
    answer = graphql_data_of(fake, PY_USE_ARTIFACT, py_vars)["useArtifact"]["artifact"]
    assert answer == {
        "id": artifact_id,
        "digest": artifact.digest,
        "description": None,
        "state": "COMMITTED",
        "createdAt": artifact.created_at,
        "metadata": None,
    }
    assert artifact.used_by == [(DEFAULT_ENTITY, "p", "r1")]  # once, however often used

    with FakeWandb(features=("USE_ARTIFACT_WITH_ENTITY_AND_PROJECT_INFORMATION",)) as featured:
        create_run(featured)
        featured_id = log_artifact(featured, "ds", {"a.txt": b"a\n"}, "client-1")
        named = {**py_vars, "artifactID": featured_id, "artifactEntityName": DEFAULT_ENTITY}
        message = graphql_errors(
            featured, PY_USE_ARTIFACT_WITH_PROJECT, {**named, "artifactProjectName": "q"}
        )
        assert "artifactProjectName q" in message
        graphql_data_of(
            featured, PY_USE_ARTIFACT_WITH_PROJECT, {**named, "artifactProjectName": "p"}
        )
        core_named = {"input": {**use, "artifactID": featured_id, "artifactProjectName": "p"}}
        graphql_data_of(featured, CORE_USE_ARTIFACT, core_named)
        assert featured.artifacts()[0].used_by == [(DEFAULT_ENTITY, "p", "r1")]
    assert featured.internal_errors == []


def graphql_data_of(fake: FakeWandb, query: str, variables: dict[str, Any]) -> Any:
    """A whole GraphQL document that must succeed; returns its data."""
    code, body, _ = graphql_query(fake, query, variables)
    assert code == 200 and body.get("errors") is None, body
    return body["data"]


# The official SDK's query behind artifact.download() (0.31.0), with fewer fields.
FILE_URLS_QUERY = """
query GetArtifactMembershipFileUrls($entity: String!, $project: String!, $collection: String!,
        $alias: String!, $cursor: String, $perPage: Int) {
  project(name: $project, entityName: $entity) {
    artifactCollection(name: $collection) {
      __typename
      artifactMembership(aliasName: $alias) {
        files(after: $cursor, first: $perPage) {
          pageInfo { endCursor hasNextPage }
          edges { node { name directUrl url sizeBytes digest storagePath } }
        }
      }
    }
  }
}"""


def test_artifact_files_list_references_and_download_from_the_api_host(fake):
    """An artifact's files are all its manifest entries, references too (their directUrl and
    url are the reference), paged by cursor. A stored file also downloads from the API host
    (/artifactsV2/<region>/<entity>/<project>/<collection>/[<artifact id>/]<birth id>/<hex
    MD5>/<name>), which needs the key; a reference never does."""
    create_run(fake)
    files = {"a.txt": b"a\n", "d/b.txt": b"b\n"}
    refs = {
        "ref.bin": {
            "digest": "0123456789abcdef0123456789abcdef",
            "ref": "s3://bkt/ref.bin",
            "extra": {"etag": "0123456789abcdef0123456789abcdef"},
        },
        "web.txt": {
            "digest": "https://example.invalid/web.txt",
            "ref": "https://example.invalid/web.txt",
        },
    }
    artifact_id = log_artifact(fake, "ds", files, "client-1", refs)
    (artifact,) = fake.artifacts()
    variables = {
        "entity": DEFAULT_ENTITY,
        "project": "p",
        "collection": "ds",
        "alias": "v0",
        "cursor": None,
        "perPage": 3,
    }
    first = graphql_data_of(fake, FILE_URLS_QUERY, variables)
    page = first["project"]["artifactCollection"]["artifactMembership"]["files"]
    assert page["pageInfo"]["hasNextPage"] is True
    second = graphql_data_of(
        fake, FILE_URLS_QUERY, {**variables, "cursor": page["pageInfo"]["endCursor"]}
    )
    rest = second["project"]["artifactCollection"]["artifactMembership"]["files"]
    assert rest["pageInfo"]["hasNextPage"] is False
    nodes = {e["node"]["name"]: e["node"] for e in page["edges"] + rest["edges"]}
    assert sorted(nodes) == ["a.txt", "d/b.txt", "ref.bin", "web.txt"]
    stored_url = f"{fake.base_url}/artifacts/{artifact.number}/files/d/b.txt"
    hex_md5 = hashlib.md5(b"b\n").hexdigest()
    assert nodes["d/b.txt"] == {
        "name": "d/b.txt",
        "directUrl": stored_url,
        "url": stored_url,
        "sizeBytes": 2,
        "digest": b64md5(b"b\n"),
        "storagePath": f"wandb_artifacts/{artifact.number}/{hex_md5}",
    }
    assert nodes["ref.bin"] == {
        "name": "ref.bin",
        "directUrl": "s3://bkt/ref.bin",
        "url": "s3://bkt/ref.bin",
        "sizeBytes": 0,
        "digest": refs["ref.bin"]["digest"],
        "storagePath": None,
    }

    born = quote(artifact_id, safe="")
    other = quote(_node_id_of("Artifact", "9"), safe="")
    plain = f"/artifactsV2/default/{DEFAULT_ENTITY}/p/ds/{born}/{hex_md5}/b.txt"
    with_id = f"/artifactsV2/default/{DEFAULT_ENTITY}/p/ds/{born}/{born}/{hex_md5}/b.txt"

    def get(path: str, auth: bool = True) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(fake.base_url.removeprefix("http://"), timeout=10)
        try:
            conn.request("GET", path, headers=basic_auth(fake.api_key) if auth else {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    assert get(plain) == (200, b"b\n")
    assert get(with_id) == (200, b"b\n")
    assert get(plain, auth=False)[0] == 401
    for wrong in (
        plain.replace(hex_md5, "0" * 32),  # another MD5
        plain.replace("/b.txt", "/c.txt"),  # another name
        plain.replace("/ds/", "/other/"),  # another collection
        plain.replace("/default/", "/eu-west/"),  # another storage region
        with_id.replace(f"/{born}/{born}/", f"/{other}/{born}/"),  # not a version of ds
        f"/artifactsV2/default/{DEFAULT_ENTITY}/p/ds/{born}/0123456789abcdef0123456789abcdef/ref.bin",
    ):
        assert get(wrong)[0] == 404, wrong
    assert request(fake, "PUT", plain, b"b\n")[0] == 404
    # The signed directUrl of a stored file takes no key, as before.
    assert get(stored_url.removeprefix(fake.base_url), auth=False) == (200, b"b\n")


def _node_id_of(type_name: str, key: str) -> str:
    return base64.b64encode(f"{type_name}:{key}".encode()).decode()


def test_read_query_variables_are_type_checked(fake):
    """Variables of executed operations must fit their declared types and be declared where
    used; undeclared extra variables are ignored, a single value stands for a list of one."""
    create_run(fake)
    query = """
        query RunFiles(
            $entity: String!, $project: String!, $first: Int, $names: [String!], $id: ID
        ) {
            project(name: $project, entityName: $entity) {
                run(name: "r1") { files(first: $first, names: $names) { totalCount } }
            }
        }"""
    ok = {"entity": DEFAULT_ENTITY, "project": "p"}
    assert graphql_data_of(fake, query, {**ok, "names": "config.yaml", "id": 7, "extra": [1]}) == {
        "project": {"run": {"files": {"totalCount": 0}}}
    }
    for variables, problem in (
        ({**ok, "first": "5"}, "$first of type Int"),
        ({**ok, "first": True}, "$first of type Int"),
        ({**ok, "first": 2**40}, "$first of type Int"),
        ({**ok, "names": ["a", None]}, "$names[1] of type String!"),
        ({**ok, "id": 1.5}, "$id of type ID"),
        ({"project": "p"}, "$entity of type String! must not be null"),
    ):
        code, body, _ = graphql_query(fake, query, variables)
        assert code == 400 and problem in body["errors"][0]["message"], (variables, body)
    undeclared = query.replace('run(name: "r1")', "run(name: $run)")
    code, body, _ = graphql_query(fake, undeclared, {**ok, "run": "r1"})
    assert code == 400 and "$run is not declared" in body["errors"][0]["message"]


def test_missing_artifacts_are_null_data_not_errors(fake):
    """As W&B answers them: an unknown project, collection, version or artifact id is null
    in the data, with no errors (the SDK turns that into "... not found")."""
    create_run(fake)
    log_artifact(fake, "ds", {"a.txt": b"a\n"}, "client-1")
    query = """
        query ArtifactMembershipByName($entity: String!, $project: String!, $name: String!) {
            project(name: $project, entityName: $entity) {
                artifactCollectionMembership(name: $name) { versionIndex artifact { id } }
            }
        }"""
    found = {"entity": DEFAULT_ENTITY, "project": "p", "name": "ds:latest"}
    membership = graphql_data_of(fake, query, found)["project"]["artifactCollectionMembership"]
    assert membership["versionIndex"] == 0
    for name in ("ds:v1", "ds:nope", "other:latest"):
        assert graphql_data_of(fake, query, {**found, "name": name}) == {
            "project": {"artifactCollectionMembership": None}
        }
    assert graphql_data_of(fake, query, {**found, "project": "nowhere"}) == {"project": None}
    by_id = "query ArtifactByID($id: ID!) { artifact(id: $id) { id } }"
    assert graphql_data_of(fake, by_id, {"id": _node_id_of("Artifact", "99")}) == {"artifact": None}


def test_read_queries_run_their_selection_sets(fake):
    """The public API's queries are executed: aliases, fragments, @include and arguments
    work, and a field the fake does not serve is a 400 that names it."""
    stream = create_run(fake)
    assert request(fake, "POST", stream, history_chunk(0, range(3)))[0] == 200
    query = """
        query Run($entity: String!, $project: String!, $name: String!, $keys: Boolean = false) {
            project(name: $project, entityName: $entity) {
                __typename
                r: run(name: $name) { ...R historyKeys @include(if: $keys) }
                missing: run(name: "nope") { name }
            }
        }
        fragment R on Run { name history(samples: 2) }
    """
    variables = {"entity": DEFAULT_ENTITY, "project": "p", "name": "r1"}
    code, body, _ = graphql_query(fake, query, variables)
    assert code == 200, body
    history = [json.dumps({"_step": s, "loss": float("nan")}) for s in (0, 2)]
    assert body == {
        "data": {
            "project": {
                "__typename": "Project",
                "r": {"name": "r1", "history": history},
                "missing": None,
            }
        }
    }
    code, body, _ = graphql_query(fake, query, {**variables, "keys": True})
    assert body["data"]["project"]["r"]["historyKeys"]["lastStep"] == 2

    unknown = query.replace("name history", "name color")
    code, body, _ = graphql_query(fake, unknown, variables)
    assert code == 400 and "Run.color" in body["errors"][0]["message"]
    code, body, _ = graphql_query(fake, query.replace("fragment R", "fragment S"), variables)
    assert code == 400 and "unknown fragment" in body["errors"][0]["message"]


# --------------------------------------------------------------------------- our client


def test_wandb_nexus_obeys_retry_after(fake, monkeypatch):
    """wandb_nexus against the rate-limited fake: the run arrives whole, and no request came
    back for a resource before the Retry-After its refusal gave."""
    monkeypatch.setenv("WANDB_BASE_URL", fake.base_url)
    monkeypatch.setenv("WANDB_API_KEY", fake.api_key)
    monkeypatch.setenv("WANDB_NEXUS_RETRY_WAIT_MIN", "0.05")  # Retry-After must still rule
    fake.rate_limit(20, retry_after=1, burst=1)

    run = log_reference_run()

    assert fake.rejected > 0
    assert fake.retry_after_violations() == [], [str(v) for v in fake.retry_after_violations()]
    assert_arrived_whole(fake, run)
