"""Many threads on one run: every row is kept exactly once with consistent steps, and finish()
from another thread while they log is safe."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import wandb_nexus as wandb

import wandb_log
from conftest import run_records
from fake_wandb import FakeWandb

THREADS = 8
ROWS_PER_THREAD = 2_000


def log_from_threads(run: wandb.Run) -> None:
    start = threading.Barrier(THREADS)

    def worker(thread: int) -> None:
        start.wait()
        for i in range(ROWS_PER_THREAD):
            run.log({"thread": thread, "i": i, f"only_{thread}": i})
            if i % 500 == 0:
                run.summary[f"seen_{thread}"] = i
                run.config.update({f"thread_{thread}": True})

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def assert_rows_whole(rows: list[dict[str, Any]]) -> None:
    # Each call is one step: steps 0..n-1 in the order the rows were written.
    assert [row["_step"] for row in rows] == list(range(THREADS * ROWS_PER_THREAD))
    for thread in range(THREADS):
        mine = [row for row in rows if row["thread"] == thread]
        # Exactly once each, in the thread's own order, never mixed with another thread's row.
        assert [row["i"] for row in mine] == list(range(ROWS_PER_THREAD))
        assert all(
            set(row) - {"_step", "_runtime", "_timestamp"} == {"thread", "i", f"only_{thread}"}
            for row in mine
        )


def test_eight_threads_logging_to_one_run_offline() -> None:
    run = wandb.init(project="threads")
    log_from_threads(run)
    run.finish()
    records = run_records(run)
    assert_rows_whole(wandb_log.history_rows(records))
    assert wandb_log.config(records)["thread_7"] is True
    assert wandb_log.summary(records)["seen_3"] == 1500


def test_eight_threads_logging_to_one_run_online(fake: FakeWandb) -> None:
    run = wandb.init(project="threads")
    log_from_threads(run)
    run.finish()
    state = fake.single_run()
    assert state.complete
    assert_rows_whole(state.history)


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_finish_from_another_thread_while_logging(
    mode: str, request: pytest.FixtureRequest
) -> None:
    fake = request.getfixturevalue("fake") if mode == "online" else None
    run = wandb.init(project="threads")
    logged: dict[int, list[int]] = {t: [] for t in range(4)}
    refused: dict[int, str] = {}

    def worker(thread: int) -> None:
        for i in range(1_000_000):
            try:
                run.log({"thread": thread, "i": i})
            except wandb.UsageError as e:
                refused[thread] = str(e)
                return
            logged[thread].append(i)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while min(len(rows) for rows in logged.values()) < 200:
        assert time.monotonic() < deadline, "the threads did not get going"
        time.sleep(0.01)
    run.finish()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()
    # Every thread was told the run has finished, and every call that returned normally
    # before that is in the run, exactly once.
    assert set(refused) == set(range(4)) and all("has finished" in m for m in refused.values())
    rows = fake.single_run().history if fake else wandb_log.history_rows(run_records(run))
    for thread in range(4):
        assert [row["i"] for row in rows if row["thread"] == thread] == logged[thread]
    assert [row["_step"] for row in rows] == list(range(len(rows)))
