"""Proves tests/fake_wandb.py: the official wandb SDK must work against it unmodified, and its
strictness, fault injection, rate limiter and slow phase must behave as documented."""

from __future__ import annotations

import base64
import hashlib
import http.client
import importlib.util
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_arrived_whole, log_reference_run
from fake_wandb import (
    DEFAULT_ENTITY,
    DROP_AFTER_APPLY,
    RESET,
    ArtifactState,
    FakeWandb,
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


def manifest_bytes(files: dict[str, bytes]) -> bytes:
    contents = {p: {"digest": b64md5(data), "size": len(data)} for p, data in files.items()}
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
    fake: FakeWandb, name: str, files: dict[str, bytes], client_id: str
) -> tuple[str, str]:
    """CreateArtifact and the first CreateArtifactManifest; returns (artifact, manifest) ids."""
    digests = {path: b64md5(data) for path, data in files.items()}
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


def log_artifact(fake: FakeWandb, name: str, files: dict[str, bytes], client_id: str) -> str:
    """The whole sequence of wandb-core's artifact saver; returns the artifact id."""
    artifact_id, manifest_id = start_artifact(fake, name, files, client_id)
    upload_files(fake, artifact_id, manifest_id, files)
    upload_manifest(fake, artifact_id, manifest_bytes(files))
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
