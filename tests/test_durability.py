"""A row that log() returned for survives the death of the process: each committed row is
also stored in the run's memory-mapped journal (the kernel's page cache outlives the
process), and a sync of a run left by a dead process appends what its log lacks and closes
it as failed, with the reason in its console output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import wandb_nexus

from conftest import sync_command
from fake_wandb import FakeWandb, wandb_sync

ROWS = 5


def crash_after_logging(work: Path, crash: str, extra: str = "", rows: int = ROWS) -> Path:
    """Runs a script that logs `rows` rows and dies at once by `crash`; returns its run dir."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        import wandb_nexus
        run = wandb_nexus.init(project="durable", mode="offline")
        {extra}
        for i in range({rows}):
            run.log({{"i": i, "loss": 1 / (i + 1)}})
        print(run.sync_dir, flush=True)
        {crash}
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=work, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0, out
    return Path(out.stdout.split()[-1])


CRASHES = {
    "os._exit": "os._exit(3)",
    "SIGKILL": "os.kill(os.getpid(), signal.SIGKILL)",
    "SIGSEGV": "import ctypes; ctypes.string_at(0)",
}


@pytest.mark.parametrize("crash", CRASHES)
def test_rows_logged_right_before_a_crash_reach_the_server_once(
    crash: str, clean_env: Path, fake: FakeWandb
) -> None:
    run_dir = crash_after_logging(clean_env, CRASHES[crash])
    (log,) = run_dir.glob("*.wandb")
    assert Path(f"{log}.journal").exists()
    sync_command(str(run_dir))
    state = fake.single_run()
    assert [row["i"] for row in state.history] == list(range(ROWS))
    assert state.summary["i"] == ROWS - 1
    assert state.exitcode == 1 and state.complete
    assert any("ended before finishing it" in line for line in state.console), state.console
    assert not Path(f"{log}.journal").exists(), "the journal goes once the log is whole"
    # A second sync finds the run delivered, and nothing is sent twice.
    assert "already synced" in sync_command(str(run_dir)).stdout
    assert len(fake.single_run().history) == ROWS


def test_a_long_tight_loop_then_a_kill_loses_no_row(clean_env: Path, fake: FakeWandb) -> None:
    """50,000 rows as fast as Python makes them: the journal goes round as the writer hands
    rows to the OS (a few laps of 256 KiB, not 5 MB of rows), and at the kill every row is in
    the log or in the journal, once."""
    rows = 50_000
    run_dir = crash_after_logging(clean_env, CRASHES["SIGKILL"], rows=rows)
    (log,) = run_dir.glob("*.wandb")
    assert os.path.getsize(f"{log}.journal") <= 1 << 20
    sync_command(str(run_dir))
    state = fake.single_run()
    assert [row["i"] for row in state.history] == list(range(rows))
    assert state.exitcode == 1 and state.complete


def test_the_official_sync_accepts_a_completed_log(clean_env: Path, fake: FakeWandb) -> None:
    """After our sync completed the log, the official `wandb sync` reads the same rows."""
    run_dir = crash_after_logging(clean_env, CRASHES["os._exit"])
    sync_command(str(run_dir))
    for marker in run_dir.glob("*.synced"):
        marker.unlink()
    with FakeWandb() as judge:
        wandb_sync(str(run_dir), judge)
        state = judge.single_run()
        assert [row["i"] for row in state.history] == list(range(ROWS))
        assert state.exitcode == 1


def test_media_rows_keep_their_other_values(clean_env: Path, fake: FakeWandb) -> None:
    """A row whose image was still being encoded at the crash keeps its other values."""
    extra = (
        "import numpy; "
        'run.log({"img": wandb_nexus.Image(numpy.zeros((512, 512, 3), numpy.uint8)), "n": 1})'
    )
    run_dir = crash_after_logging(clean_env, CRASHES["os._exit"], extra)
    sync_command(str(run_dir))
    history = fake.single_run().history
    assert history[0]["n"] == 1
    assert [row.get("i") for row in history[1:]] == list(range(ROWS))


def test_a_run_still_open_elsewhere_is_not_synced(clean_env: Path, fake: FakeWandb) -> None:
    run = wandb_nexus.init(project="durable", mode="offline")
    run.log({"i": 0})
    out = subprocess.run(
        [sys.executable, "-m", "wandb_nexus", "sync", str(run.sync_dir)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )
    assert out.returncode == 1
    assert "still being written by a running process" in out.stderr
    assert fake.runs() == []
    run.finish()
    sync_command(str(run.sync_dir))
    state = fake.single_run()
    assert state.exitcode == 0 and [row["i"] for row in state.history] == [0]


def test_a_finished_run_leaves_no_journal(clean_env: Path) -> None:
    run = wandb_nexus.init(project="durable", mode="offline")
    for i in range(3):
        run.log({"i": i})
    assert any(Path(run.sync_dir).glob("*.wandb.journal"))
    run.finish()
    assert not any(Path(run.sync_dir).glob("*.wandb.journal"))


def test_a_forked_child_still_dies_of_sigterm(clean_env: Path) -> None:
    """The native SIGTERM handler hands the signal on in a child without our thread."""
    script = textwrap.dedent(
        """
        import os, signal, time
        os.environ["AWS_LAMBDA_RUNTIME_API"] = "127.0.0.1:9"
        from wandb_nexus import _core
        try:
            _core.start_lambda_extension()
        except Exception:
            pass
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
        print(os.WTERMSIG(status) if os.WIFSIGNALED(status) else "exited")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.split()[-1] == str(int(signal.SIGTERM)), out
