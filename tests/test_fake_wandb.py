"""Proves tests/fake_wandb.py: the official wandb SDK must work against it unmodified, and its
strictness and fault injection must behave as documented."""

from __future__ import annotations

import base64
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

from fake_wandb import (
    DEFAULT_ENTITY,
    DROP_AFTER_APPLY,
    RESET,
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


def create_run(fake: FakeWandb, name: str = "r1") -> str:
    """Create run fake-entity/p/<name>; returns its file_stream path."""
    config = json.dumps({"lr": {"value": 0.1}})
    code, body, _ = graphql(fake, "UpsertBucket", {"name": name, "project": "p", "config": config})
    assert code == 200 and body["data"]["upsertBucket"]["inserted"], body
    return f"/files/{DEFAULT_ENTITY}/p/{name}/file_stream"


def history_chunk(offset: int, steps: range) -> dict[str, Any]:
    lines = [json.dumps({"_step": step, "loss": float("nan")}) for step in steps]
    return {"files": {"wandb-history.jsonl": {"offset": offset, "content": lines}}}


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
