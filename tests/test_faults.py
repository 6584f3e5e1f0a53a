"""Faults beyond plain retries, against the strict fake W&B API: answers cut off mid-body,
bodies that are not JSON, GraphQL errors, servers that never answer; file_stream's size
limits; and a process killed mid-run, whose transaction log still syncs up to its last
complete record.

Transient faults are retried and the run arrives whole, once. Faults that persist end in a
clear error or warning, with the run kept on disk for ``python -m wandb_nexus sync``: a
GraphQL error is not retried (as in wandb-core), and a run whose creation it refuses raises
`CommError` like any other refusal; an answer that is not JSON (a proxy's page) is retried,
and after the retry budget counts as an unreachable server."""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from wandb.proto import wandb_internal_pb2 as pb

import wandb_nexus as wandb

import wandb_log
from conftest import assert_arrived_whole, log_reference_run, run_records, sync_command
from fake_wandb import (
    CLOSE_MID_BODY,
    GARBAGE_BODY,
    HANG,
    MAX_LINE_BYTES,
    MAX_REQUEST_BYTES,
    TRUNCATED_JSON,
    FakeWandb,
    graphql_error,
    wandb_sync,
)

PERMISSION_DENIED = "permission denied: cannot write to project online"


# --------------------------------------------------------------------------- transient faults


@pytest.mark.parametrize(
    "fault", [CLOSE_MID_BODY, HANG, GARBAGE_BODY, TRUNCATED_JSON], ids=lambda f: f.action
)
@pytest.mark.parametrize("kind", ["graphql:UpsertBucket", "graphql:CreateRunFiles", "file_stream"])
def test_a_transient_fault_is_retried_and_loses_nothing(
    fake: FakeWandb, monkeypatch: pytest.MonkeyPatch, kind: str, fault
) -> None:
    """Close mid-body and truncated JSON are applied by the server before the answer goes
    wrong, so the retry must not duplicate; a hang and a proxy's page are not applied, so
    taking either for success would lose the request."""
    monkeypatch.setenv("WANDB_HTTP_TIMEOUT", "0.5")  # the hang ends the attempt after this
    fake.inject(kind, [fault])
    run = log_reference_run()
    assert not fake.pending_faults()
    assert_arrived_whole(fake, run)
    assert (Path(run.sync_dir) / f"run-{run.id}.wandb.synced").exists()


# --------------------------------------------------------------------------- permanent faults


def test_graphql_error_at_init_is_a_clear_error(fake: FakeWandb, clean_env: Path) -> None:
    fake.inject("graphql:UpsertBucket", [graphql_error(PERMISSION_DENIED)])
    with pytest.raises(wandb.CommError, match=f"UpsertBucket: {PERMISSION_DENIED}$"):
        wandb.init(project="online")
    assert wandb.run is None and not (clean_env / "wandb").exists()
    # Not retried: wandb-core hands a GraphQL error straight back too.
    assert fake.graphql_operations().count("UpsertBucket") == 1


def test_graphql_error_at_finish_leaves_a_syncable_run(fake: FakeWandb) -> None:
    fake.inject("graphql:CreateRunFiles", [graphql_error(PERMISSION_DENIED)])
    with pytest.warns(UserWarning, match=f"not fully delivered.*{PERMISSION_DENIED}.*sync"):
        run = log_reference_run()
    assert fake.single_run().files == {}
    assert not (Path(run.sync_dir) / f"run-{run.id}.wandb.synced").exists()
    sync_command(run.sync_dir)
    assert_arrived_whole(fake, run)


@pytest.mark.parametrize("fault", [GARBAGE_BODY, TRUNCATED_JSON], ids=lambda f: f.action)
def test_answers_that_stay_unreadable_at_init_keep_the_run_offline(
    fake: FakeWandb, monkeypatch: pytest.MonkeyPatch, fault
) -> None:
    monkeypatch.setenv("WANDB_NEXUS_RETRY_SECONDS", "0.5")
    fake.inject("graphql:UpsertBucket", [fault] * 100)
    with pytest.warns(UserWarning, match="cannot reach W&B.*not JSON.*wandb_nexus sync"):
        run = log_reference_run()
    assert run.mode == "offline"
    assert fake.graphql_operations().count("UpsertBucket") > 1  # it was retried
    fake.clear_faults()
    sync_command(run.sync_dir)
    assert_arrived_whole(fake, run)


@pytest.mark.parametrize("fault", [GARBAGE_BODY, TRUNCATED_JSON], ids=lambda f: f.action)
@pytest.mark.parametrize("kind", ["graphql:CreateRunFiles", "file_stream"])
def test_answers_that_stay_unreadable_at_finish_leave_a_syncable_run(
    fake: FakeWandb, monkeypatch: pytest.MonkeyPatch, kind: str, fault
) -> None:
    monkeypatch.setenv("WANDB_NEXUS_RETRY_SECONDS", "0.5")
    fake.inject(kind, [fault] * 100)
    with pytest.warns(UserWarning, match="not fully delivered.*not JSON.*wandb_nexus sync"):
        run = log_reference_run()
    assert not (Path(run.sync_dir) / f"run-{run.id}.wandb.synced").exists()
    fake.clear_faults()
    sync_command(run.sync_dir)
    assert_arrived_whole(fake, run)


def test_init_against_a_server_that_never_answers_ends_with_the_retry_budget(
    fake: FakeWandb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attempt timeout is left at its default (30 s): the budget bounds the attempt too."""
    monkeypatch.setenv("WANDB_NEXUS_RETRY_SECONDS", "1")
    fake.inject("graphql:UpsertBucket", [HANG] * 100)
    started = time.monotonic()
    with pytest.warns(UserWarning, match="cannot reach W&B"):
        run = wandb.init(project="online")
    assert time.monotonic() - started < 15
    assert run.mode == "offline"
    run.finish()


# --------------------------------------------------------------------------- size limits


def file_streams(fake: FakeWandb) -> list:
    return [r for r in fake.requests if r.kind == "file_stream"]


def assert_requests_within_the_limit(fake: FakeWandb) -> None:
    for request in file_streams(fake):
        assert int(request.headers["content-length"]) <= MAX_REQUEST_BYTES
        assert request.status == 200


TEN_MB_TEXT = "x" * 10_000_000 + ' "quoted", naïve\n'


@pytest.mark.parametrize(
    "value", [TEN_MB_TEXT, list(range(1_000_000))], ids=["10MB-string", "million-numbers"]
)
def test_a_huge_row_arrives_whole(fake: FakeWandb, value: object) -> None:
    run = wandb.init(project="big")
    run.log({"a": 0})
    run.log({"value": value})
    run.log({"a": 2})
    run.finish()
    state = fake.single_run()
    assert [row["_step"] for row in state.history] == [0, 1, 2]
    assert state.history[1]["value"] == value
    assert state.summary["value"] == value and state.complete
    assert_requests_within_the_limit(fake)


def test_rows_over_one_request_are_split_between_lines(fake: FakeWandb) -> None:
    run = wandb.init(project="big")
    blobs = [letter * 4_000_000 for letter in "abc"]
    for blob in blobs:
        run.log({"blob": blob})
    run.flush()
    carrying_rows = [
        r for r in file_streams(fake) if "wandb-history.jsonl" in r.body.get("files", {})
    ]
    assert len(carrying_rows) > 1
    assert [row["blob"] for row in fake.single_run().history] == blobs
    run.finish()
    assert [row["blob"] for row in fake.single_run().history] == blobs
    assert_requests_within_the_limit(fake)


def test_a_row_over_the_line_limit_is_kept_on_disk_only(
    fake: FakeWandb, capfd: pytest.CaptureFixture[str]
) -> None:
    run = wandb.init(project="big")
    oversized = "y" * (MAX_LINE_BYTES + 1)
    for step, blob in enumerate(["small", oversized, "small", oversized, "small"]):
        run.log({"blob": blob, "i": step})
    run.finish()
    state = fake.single_run()
    assert [row["i"] for row in state.history] == [0, 2, 4]
    assert state.summary["blob"] == "small" and state.complete
    assert_requests_within_the_limit(fake)
    warnings = [line for line in capfd.readouterr().err.splitlines() if "over W&B's limit" in line]
    assert len(warnings) == 1 and "step 1" in warnings[0], warnings
    logged = wandb_log.history_rows(run_records(run))
    assert [len(row["blob"]) for row in logged] == [5, len(oversized), 5, len(oversized), 5]


def post(fake: FakeWandb, path: str, body: object, timeout: float = 30) -> tuple[int, bytes]:
    """Status and body of the answer to an authenticated JSON POST to `fake`."""
    address = urlsplit(fake.base_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=timeout)
    try:
        credentials = base64.b64encode(f"api:{fake.api_key}".encode()).decode()
        headers = {"Authorization": f"Basic {credentials}", "Content-Type": "application/json"}
        connection.request("POST", path, json.dumps(body).encode(), headers)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def history_lines(offset: int, *lines: str) -> dict:
    return {"files": {"wandb-history.jsonl": {"offset": offset, "content": list(lines)}}}


def test_the_fake_enforces_the_size_limits(fake: FakeWandb) -> None:
    """Without this, the size tests above could pass against a lenient server."""
    run = wandb.init(project="big")
    stream = f"/files/{fake.entity}/big/{run.id}/file_stream"
    over_the_line_limit = json.dumps({"s": "z" * (MAX_LINE_BYTES - 8)})
    assert post(fake, stream, history_lines(0, over_the_line_limit))[0] == 400
    longest_line = json.dumps({"s": "z" * (MAX_LINE_BYTES - 9)})
    assert len(longest_line) == MAX_LINE_BYTES
    assert post(fake, stream, history_lines(0, longest_line))[0] == 200
    half = json.dumps({"s": "z" * (MAX_REQUEST_BYTES // 2)})
    assert post(fake, stream, history_lines(1, half, half))[0] == 413
    run.finish()


def test_the_fake_applies_faults_as_documented(fake: FakeWandb) -> None:
    """What the fault tests above prove rests on which faults are applied and which not."""
    run = wandb.init(project="big")
    state = fake.single_run()
    stream = f"/files/{fake.entity}/big/{run.id}/file_stream"
    row = [json.dumps({"_step": step}) for step in range(3)]
    fake.inject("file_stream", [CLOSE_MID_BODY, TRUNCATED_JSON, GARBAGE_BODY, HANG])

    with pytest.raises(http.client.IncompleteRead):
        post(fake, stream, history_lines(0, row[0]))
    assert len(state.history) == 1  # applied
    code, answer = post(fake, stream, history_lines(1, row[1]))
    assert code == 200 and len(state.history) == 2  # applied
    with pytest.raises(ValueError):
        json.loads(answer)
    code, answer = post(fake, stream, history_lines(2, row[2]))
    assert code == 200 and answer.startswith(b"<html>") and len(state.history) == 2
    with pytest.raises(TimeoutError):
        post(fake, stream, history_lines(2, row[2]), timeout=0.5)
    assert len(state.history) == 2

    fake.inject("graphql:UpsertBucket", [graphql_error("denied")])
    upsert = {"query": "mutation UpsertBucket { x }", "variables": {"name": "other"}}
    code, answer = post(fake, "/graphql", upsert)
    assert (code, json.loads(answer)) == (200, {"errors": [{"message": "denied"}]})
    assert len(fake.runs()) == 1  # not applied
    run.finish()


# --------------------------------------------------------------------------- killed runs

LOG_FOREVER = """
import wandb_nexus as wandb

run = wandb.init(project="killed")
print(run.sync_dir, flush=True)
step = 0
while True:
    run.log({"i": step, "pad": "p" * 200})
    step += 1
    if step % 40 == 0:
        run.flush()
        print(step, flush=True)
"""


def log_until_killed(flushed_rows: int, env: dict[str, str]) -> tuple[Path, int]:
    """Runs LOG_FOREVER until at least `flushed_rows` rows were flushed, then SIGKILLs it.
    Returns the run directory and how many rows had been flushed."""
    child = subprocess.Popen(
        [sys.executable, "-c", LOG_FOREVER],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run_dir = Path(child.stdout.readline().strip())
        flushed = 0
        while flushed < flushed_rows:
            line = child.stdout.readline()
            assert line, f"the logging process ended early: {child.communicate()[1]}"
            flushed = int(line)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return run_dir, flushed


def assert_prefix_of_the_logged_rows(history: list[dict], at_least: int) -> None:
    assert len(history) >= at_least
    assert [row["_step"] for row in history] == list(range(len(history)))
    assert [row["i"] for row in history] == list(range(len(history)))
    assert all(row["pad"] == "p" * 200 for row in history)


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_a_killed_run_syncs_every_flushed_row_once(
    fake: FakeWandb, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: str
) -> None:
    """Online, the rows streamed before the kill are sent again by the sync at the same
    offsets: the strict fake refuses a resent line that differs, so each arrives once. The
    sync first completes the log from the rows journal; the official `wandb sync` then reads
    the same rows from it."""
    monkeypatch.setenv("WANDB_MODE", mode)
    monkeypatch.setenv("WANDB_X_FILE_STREAM_TRANSMIT_INTERVAL", "0.1")
    run_dir, flushed = log_until_killed(200, dict(os.environ))
    if mode == "online":
        assert_prefix_of_the_logged_rows(fake.single_run().history, flushed)

    sync_command(str(run_dir))
    state = fake.single_run()
    assert_prefix_of_the_logged_rows(state.history, flushed)
    assert state.complete and state.exitcode == 1  # no exit record: the run died
    official_copy = tmp_path / "official" / run_dir.name
    shutil.copytree(run_dir, official_copy)
    for marker in official_copy.glob("*.synced"):
        marker.unlink()

    with FakeWandb() as second:
        wandb_sync(official_copy, second, args=("--include-online",))
        assert second.single_run().history == state.history


def parse_record(payload: bytes) -> pb.Record:
    record = pb.Record()
    record.ParseFromString(payload)
    return record


def test_a_log_cut_mid_record_syncs_up_to_the_last_whole_record(
    fake: FakeWandb, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = wandb.init(project="cut")
    for step in range(400):
        run.log({"i": step, "pad": "p" * 200})
    run.finish()
    source = Path(run.sync_dir)
    data = (source / f"run-{run.id}.wandb").read_bytes()
    assert len(data) > 3 * wandb_log.BLOCK

    # Inside a record in mid-file, and just past a block boundary, where a record may go on.
    for cut in (len(data) // 3 + 5, 2 * wandb_log.BLOCK + 3):
        with pytest.raises(wandb_log.CorruptLog):
            wandb_log.read_payloads(data[:cut])  # the cut is not between two records
        copy = tmp_path / f"cut-{cut}" / source.name
        shutil.copytree(source, copy)
        (copy / f"run-{run.id}.wandb").write_bytes(data[:cut])
        whole_rows = wandb_log.history_rows(
            [parse_record(p) for p in wandb_log.read_payloads(data[:cut], strict=False)]
        )
        sync_command(str(copy), "--project", f"cut-{cut}")
        state = fake.run_state(fake.entity, f"cut-{cut}", run.id)
        assert [row["i"] for row in state.history] == [row["i"] for row in whole_rows]
        assert_prefix_of_the_logged_rows(state.history, at_least=10)
