"""Online mode against the strict fake W&B API: the whole run arrives, in few requests, and
survives server errors, rate limits, lost responses, slow servers and reset connections with
nothing lost or duplicated. A wrong key is a clear error; the key goes nowhere else."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import wandb_nexus as wandb

from conftest import assert_arrived_whole, log_reference_run, sync_command
from fake_wandb import DROP_AFTER_APPLY, RESET, FakeWandb, delay, status, wandb_sync


def test_online_run_arrives_whole_in_few_requests(fake: FakeWandb) -> None:
    run = log_reference_run(name="live")
    assert_arrived_whole(fake, run)
    state = fake.single_run()
    assert run.url == f"{fake.base_url}/{fake.entity}/online/runs/{run.id}"
    assert run.entity == fake.entity and run.mode == "online" and not run.offline
    assert (Path(run.sync_dir) / f"run-{run.id}.wandb.synced").exists()
    assert Path(run.sync_dir).name.startswith("run-")
    kinds = [(r.kind, r.operation) for r in fake.requests]
    assert kinds.count(("graphql", "UpsertBucket")) == 1
    assert kinds.count(("graphql", "CreateRunFiles")) == 1
    assert sum(1 for k, _ in kinds if k == "upload") == 4
    assert sum(1 for k, _ in kinds if k == "file_stream") == 1
    assert len(fake.requests) == 7
    assert state.display_name == "live"


def test_a_run_that_printed_nothing_uploads_no_console_file(fake: FakeWandb) -> None:
    """As the official SDK does: an empty output.log is kept on disk but not uploaded."""
    run = wandb.init(project="online")
    run.log({"loss": 1.0})
    run.finish()
    assert (Path(run.dir) / "output.log").read_text() == ""
    state = fake.single_run()
    assert sorted(state.uploaded) == sorted(state.files)
    assert sorted(state.files) == ["config.yaml", "wandb-metadata.json", "wandb-summary.json"]
    assert len(fake.requests) == 6


def test_unnamed_run_adopts_the_servers_name(fake: FakeWandb) -> None:
    run = wandb.init()
    assert run.name == "fake-run-1" and run.project == "uncategorized"
    run.finish()


def test_finish_uploads_files_concurrently_between_two_rounds(fake: FakeWandb) -> None:
    """finish() is three rounds: upload URLs, then every PUT at once, then the final
    file_stream. Each PUT is held 0.5 s, so overlapping arrivals prove they were concurrent."""
    run = wandb.init(project="online")
    for step in range(10):
        run.log({"loss": step})
    print("console output, so that output.log is uploaded too")
    fake.inject("upload", [delay(0.5)] * 4)
    first_finish_request = len(fake.requests)
    run.finish()
    finish_requests = fake.requests[first_finish_request:]
    assert [(r.kind, r.operation) for r in finish_requests[:1]] == [("graphql", "CreateRunFiles")]
    puts = [r for r in finish_requests if r.kind == "upload"]
    assert len(puts) == 4 and finish_requests[-1].kind == "file_stream"
    assert max(r.received_at for r in puts) - min(r.received_at for r in puts) < 0.5
    assert finish_requests[-1].received_at >= max(r.received_at for r in puts) + 0.5


def test_rows_stream_while_the_run_is_open(fake: FakeWandb, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_X_FILE_STREAM_TRANSMIT_INTERVAL", "0.1")
    run = wandb.init(project="online")
    run.log({"a": 1})
    run.config.update({"late": True})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not fake.single_run().history:
        time.sleep(0.05)
    state = fake.single_run()
    assert [row["a"] for row in state.history] == [1] and not state.complete
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "late" not in state.config_values:
        time.sleep(0.05)
    assert state.config_values["late"] is True
    run.log({"a": 2})
    run.finish()
    assert [row["a"] for row in state.history] == [1, 2] and state.complete


@pytest.mark.parametrize(
    ("kind", "faults"),
    [
        ("graphql:UpsertBucket", [500, 502, 503]),
        ("file_stream", [500, 500]),
        ("file_stream", [DROP_AFTER_APPLY]),
        ("file_stream", [RESET, RESET]),
        ("graphql:CreateRunFiles", [DROP_AFTER_APPLY, 500]),
        ("upload", [503, RESET]),
    ],
    ids=["init-5xx", "stream-5xx", "stream-lost-response", "stream-reset", "files-lost", "put"],
)
def test_faults_lose_and_duplicate_nothing(fake: FakeWandb, kind: str, faults: list) -> None:
    fake.inject(kind, faults)
    run = log_reference_run()
    assert not fake.pending_faults()
    assert_arrived_whole(fake, run)


def test_rate_limit_honours_retry_after(fake: FakeWandb) -> None:
    fake.inject("file_stream", [status(429, {"Retry-After": "1"})])
    run = log_reference_run()
    streams = [r for r in fake.requests if r.kind == "file_stream"]
    assert len(streams) == 2 and streams[1].received_at - streams[0].received_at >= 1.0
    assert_arrived_whole(fake, run)


def test_slow_server_past_the_attempt_timeout(fake: FakeWandb, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_HTTP_TIMEOUT", "0.5")
    fake.inject("file_stream", [delay(1.5)])  # applied after the client gave up: sent twice
    run = log_reference_run()
    assert_arrived_whole(fake, run)


def test_wrong_key_is_a_clear_error(fake: FakeWandb, monkeypatch, clean_env: Path) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    with pytest.raises(wandb.AuthenticationError, match=r"401.*WANDB_API_KEY") as error:
        wandb.init(project="online")
    assert isinstance(error.value, PermissionError)
    assert "x" * 40 not in str(error.value)
    assert wandb.run is None and not (clean_env / "wandb").exists()


def test_permanent_client_error_is_reported(fake: FakeWandb) -> None:
    fake.inject("graphql:UpsertBucket", [400])
    with pytest.raises(wandb.CommError, match="UpsertBucket: HTTP 400"):
        wandb.init(project="online")


def test_unreachable_server_keeps_the_run_for_sync(fake: FakeWandb, monkeypatch) -> None:
    real_url = fake.base_url
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("WANDB_NEXUS_RETRY_SECONDS", "0.5")
    with pytest.warns(UserWarning, match="cannot reach W&B"):
        run = wandb.init(project="online")
    assert run.mode == "offline" and run.url is None
    run.log({"a": 1})
    run.finish()
    monkeypatch.setenv("WANDB_BASE_URL", real_url)
    out = sync_command(run.sync_dir)
    assert "synced to" in out.stdout
    assert [row["a"] for row in fake.single_run().history] == [1]
    again = sync_command(run.sync_dir)
    assert "already synced" in again.stdout
    assert len(fake.single_run().history) == 1


def test_server_failing_at_finish_leaves_a_syncable_run(fake: FakeWandb, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_NEXUS_RETRY_SECONDS", "0.5")
    run = wandb.init(project="online")
    for step in range(3):
        run.log({"a": step})
    fake.inject("file_stream", [503] * 50)
    with pytest.warns(UserWarning, match=r"not fully delivered.*python -m wandb_nexus sync"):
        run.finish()
    assert not fake.single_run().complete
    fake.clear_faults()
    sync_command(run.sync_dir)
    state = fake.single_run()
    assert [row["a"] for row in state.history] == [0, 1, 2] and state.complete


def test_sync_uploads_offline_runs_and_is_safe_twice(fake: FakeWandb, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = log_reference_run()
    assert fake.requests == []
    out = sync_command(run.sync_dir)
    assert f"synced to {fake.base_url}/{fake.entity}/online/runs/{run.id}" in out.stdout
    assert_arrived_whole(fake, run)
    assert "already synced" in sync_command(run.sync_dir).stdout


def test_sync_uploads_an_official_sdk_offline_run(fake: FakeWandb, tmp_path: Path) -> None:
    script = (
        "import wandb\n"
        "run = wandb.init(project='official', config={'lr': 0.5})\n"
        "for i in range(5): run.log({'v': i})\n"
        "run.summary['best'] = 7\n"
        "run.finish()\n"
        "print(run.settings.sync_dir)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_MODE="offline", WANDB_SILENT="true", HOME=str(tmp_path), WANDB_DIR=str(tmp_path)
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    sync_command(out.stdout.strip().splitlines()[-1])
    state = fake.single_run()
    assert [row["v"] for row in state.history] == [0, 1, 2, 3, 4]
    assert state.config_values["lr"] == 0.5 and state.summary["best"] == 7
    assert state.complete and state.exitcode == 0


def test_our_online_run_is_also_accepted_by_official_sync(fake: FakeWandb) -> None:
    run = log_reference_run()
    # Our delivery marked it synced, which the official sync honours; take the mark away.
    (Path(run.sync_dir) / f"run-{run.id}.wandb.synced").unlink()
    with FakeWandb() as second:
        wandb_sync(run.sync_dir, second, args=("--include-online",))
        assert [row["_step"] for row in second.single_run().history] == list(range(10))


def test_stop_from_the_ui_is_seen(fake: FakeWandb, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_X_FILE_STREAM_TRANSMIT_INTERVAL", "0.1")
    run = wandb.init(project="online")
    fake.single_run().stopped = True
    run.log({"a": 1})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not run.stopped:
        time.sleep(0.05)
    assert run.stopped
    run.finish()


def test_flush_sends_what_was_logged(fake: FakeWandb) -> None:
    run = wandb.init(project="online")
    for step in range(3):
        run.log({"a": step})
    run.log({"pending": 1}, commit=False)
    run.flush()
    state = fake.single_run()
    assert [row["a"] for row in state.history] == [0, 1, 2] and not state.complete
    run.finish()
    assert [row.get("pending") for row in state.history] == [None, None, None, 1]


def test_flush_during_an_outage_warns_and_keeps_the_data(fake: FakeWandb, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_NEXUS_RETRY_SECONDS", "0.3")
    run = wandb.init(project="online")
    run.log({"a": 1})
    fake.inject("file_stream", [503] * 30)
    with pytest.warns(UserWarning, match="stays queued"):
        run.flush()
    fake.clear_faults()
    run.finish()
    assert [row["a"] for row in fake.single_run().history] == [1]


def test_asyncio_finish_and_flush(fake: FakeWandb) -> None:
    import asyncio

    async def main() -> int:
        run = wandb.init(project="online")
        run.log({"a": 1})
        await run.flush_async()
        assert [row["a"] for row in fake.single_run().history] == [1]
        run.log({"a": 2})
        fake.inject("file_stream", [delay(0.5)])
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        task = asyncio.create_task(ticker())
        await run.finish_async()
        task.cancel()
        return ticks

    ticks = asyncio.run(main())
    assert ticks >= 3  # the loop kept running while finish waited for the server
    state = fake.single_run()
    assert [row["a"] for row in state.history] == [1, 2] and state.complete
    assert wandb.run is None


def test_quiet_run_sends_heartbeats(fake: FakeWandb, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_X_FILE_STREAM_TRANSMIT_INTERVAL", "0.05")
    monkeypatch.setenv("WANDB_NEXUS_HEARTBEAT_SECONDS", "0.2")
    run = wandb.init(project="online")
    deadline = time.monotonic() + 10
    heartbeats: list = []
    while time.monotonic() < deadline and len(heartbeats) < 2:
        time.sleep(0.05)
        heartbeats = [r for r in fake.requests if r.kind == "file_stream" and r.body == {}]
    assert len(heartbeats) >= 2
    run.finish()


def test_saved_files_go_up_now_as_they_change_and_at_finish(
    fake: FakeWandb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`save(policy="now")` uploads at once, `"live"` again whenever the file changed, `"end"`
    only at finish; the run's files hold the latest contents."""
    monkeypatch.setenv("WANDB_X_FILE_STREAM_TRANSMIT_INTERVAL", "0.1")
    Path("now.txt").write_text("now")
    Path("live.txt").write_text("live 1")
    Path("end.txt").write_text("end")
    run = wandb.init(project="online")
    run.save("now.txt", policy="now")
    run.save("live.txt", policy="live")
    run.save("end.txt", policy="end")

    def puts(name: str) -> list[bytes]:
        return [r.body for r in fake.requests if r.kind == "upload" and r.path.endswith(name)]

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (puts("now.txt") and puts("live.txt")):
        time.sleep(0.05)
    assert puts("now.txt") == [b"now"] and puts("live.txt") == [b"live 1"]
    assert puts("end.txt") == []
    Path("live.txt").write_text("live 2, longer")
    while time.monotonic() < deadline and len(puts("live.txt")) < 2:
        time.sleep(0.05)
    assert puts("live.txt") == [b"live 1", b"live 2, longer"]
    run.finish()
    state = fake.single_run()
    assert state.files["live.txt"] == b"live 2, longer" and state.files["end.txt"] == b"end"
    assert {"now.txt", "live.txt", "end.txt"} <= set(state.uploaded)
