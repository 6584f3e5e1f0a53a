"""Handlers run the way Lambda runs them: the real runtime interface client (awslambdaric)
inside a read-only sandbox, driven by our Runtime and Extensions API emulator, frozen with
SIGSTOP between invocations and killed at the end (tests/lambda_emulator.py). W&B is the
strict fake server (tests/fake_wandb.py).

The freeze makes these checks exact rather than timed: once an invocation has ended, the
whole runtime process is stopped, so whatever the server holds at that moment was delivered
before the freeze, within the invocation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO, needs_sandbox
from fake_wandb import DROP_AFTER_APPLY, FakeWandb, RunState, status
from lambda_emulator import Invocation, LambdaEmulator

FUNCTIONS = Path(__file__).resolve().parent / "lambda_functions"

pytestmark = needs_sandbox


@pytest.fixture
def fake() -> Iterator[FakeWandb]:
    with FakeWandb() as server:
        yield server


def wandb_env(fake: FakeWandb, **extra: str) -> dict[str, str]:
    return {"WANDB_BASE_URL": fake.base_url, "WANDB_API_KEY": fake.api_key, **extra}


def run_of(fake: FakeWandb, invocation: Invocation) -> RunState:
    """The server's run whose Lambda config names this invocation's request id."""
    found = [
        run
        for run in fake.runs()
        if run.config_values.get("lambda", {}).get("request_id") == invocation.request_id
    ]
    assert len(found) == 1, [run.config_values.get("lambda") for run in fake.runs()]
    return found[0]


def assert_arrived_whole(fake: FakeWandb, invocation: Invocation, rows: int) -> None:
    """The run of a tests/lambda_functions invocation is on the server, finished, with each
    of its rows once and its console output."""
    run = run_of(fake, invocation)
    assert [row["i"] for row in run.history] == list(range(rows))
    assert run.complete and run.exitcode == 0
    assert run.console[0].endswith(f"logged {rows} rows")


def assert_response_never_waited_for_wandb(fake: FakeWandb, lam: LambdaEmulator) -> None:
    """No W&B answer came between an event's dispatch and its response. With a slow W&B,
    that means the response never waited for W&B (with a fast one, an answer to a request
    sent after the handler returned may still beat the runtime's response post)."""
    for invocation in lam.invocations:
        assert invocation.responded_at is not None
        answered = [
            (r.kind, r.operation)
            for r in fake.requests
            if r.answered_at
            and invocation.dispatched_at <= r.answered_at <= invocation.responded_at
        ]
        assert answered == [], answered


def assert_nothing_sent_while_handling(fake: FakeWandb, lam: LambdaEmulator) -> None:
    """No request reached W&B while a handler of tests/lambda_functions ran (they return the
    time they returned at)."""
    for invocation in lam.invocations:
        if invocation.outcome != "response":
            continue
        returned_at = invocation.body["returned_at"]
        sent = [
            r.kind
            for r in fake.requests
            if invocation.dispatched_at <= r.received_at <= returned_at
        ]
        assert sent == [], sent


def assert_ended_in_time(lam: LambdaEmulator) -> None:
    for invocation in lam.invocations:
        assert not invocation.timed_out, invocation
        assert invocation.outcome == "response", invocation.body


def test_slow_wandb_adds_nothing_to_the_response_and_every_row_arrives_once(
    fake: FakeWandb,
) -> None:
    fake.latency = 0.5  # every W&B request takes half a second
    with LambdaEmulator(REPO, "handler.hello", env=wandb_env(fake), timeout=20) as lam:
        assert lam.extension_names == ["wandb-nexus-internal"]
        for number in range(3):
            invocation = lam.invoke({"invocation": number}, pause=0.3)
            # Frozen now: the run must already be on the server, whole.
            run = run_of(fake, invocation)
            assert [row["epoch"] for row in run.history] == list(range(10))
            assert run.complete and run.exitcode == 0
            assert run.summary["final_accuracy"] == run.history[-1]["accuracy"]
            info = run.config_values["lambda"]
            assert info["cold_start"] is (number == 0)
            assert info["function_name"] == lam.function_name
            assert info["memory_limit_mb"] == 128
            assert info["log_stream"].endswith("0123456789abcdef")
            assert 0 < info["remaining_time_ms"] <= 20_000
            assert run.job_type == "lambda"
            assert lam.child_processes() == []
        # Lambda's smallest size is enough (and, where cgroups allow, is enforced).
        assert lam.memory_mb == 128
        assert lam.peak_rss_mb() < 128
        peak = lam.peak_memory_mb()
        assert peak is None or peak < 128
    assert_ended_in_time(lam)
    assert_response_never_waited_for_wandb(fake, lam)
    assert len(fake.runs()) == 3
    assert fake.api_key.encode() not in lam.output


def test_one_run_per_environment_keeps_its_steps_across_frozen_invocations(
    fake: FakeWandb,
) -> None:
    fake.latency = 0.2
    with LambdaEmulator(FUNCTIONS, "functions.per_environment", env=wandb_env(fake)) as lam:
        for number in range(3):
            lam.invoke({"invocation": number, "rows": 4}, pause=0.2)
            run = fake.single_run()
            # Everything logged so far arrived before the freeze, each row once.
            assert [row["_step"] for row in run.history] == list(range(4 * (number + 1)))
            assert [row["invocation"] for row in run.history][-4:] == [number] * 4
            assert run.config_values["lambda"]["request_id"] == lam.invocations[-1].request_id
            assert not run.complete  # the environment's run stays open
        assert [inv.body["step"] for inv in lam.invocations] == [4, 8, 12]
    assert_ended_in_time(lam)
    assert_nothing_sent_while_handling(fake, lam)
    assert_response_never_waited_for_wandb(fake, lam)


def test_an_outage_is_delivered_by_the_next_invocation_exactly_once(fake: FakeWandb) -> None:
    env = wandb_env(fake, WANDB_NEXUS_RETRY_WAIT_MIN="0.1", WANDB_NEXUS_RETRY_WAIT_MAX="0.2")
    with LambdaEmulator(FUNCTIONS, "functions.per_invocation", env=env, timeout=3) as lam:
        # W&B applies the rows but every answer is lost, until the invocation runs out of
        # time: the run was partly delivered, and nobody knows how much.
        fake.inject("file_stream", [DROP_AFTER_APPLY] * 1000)
        first = lam.invoke({"invocation": 0, "rows": 6}, pause=0.2)
        assert fake.pending_faults()["file_stream"] < 1000
        fake.clear_faults()
        second = lam.invoke({"invocation": 1, "rows": 3}, pause=0.2)
        assert_arrived_whole(fake, first, rows=6)
        assert_arrived_whole(fake, second, rows=3)
        # A W&B that refuses everything for a whole invocation: nothing arrives, then all of it.
        fake.inject("graphql", [status(503)] * 1000)
        third = lam.invoke({"invocation": 2, "rows": 2}, pause=0.2)
        fake.clear_faults()
        fourth = lam.invoke({"invocation": 3, "rows": 1}, pause=0.2)
        assert_arrived_whole(fake, third, rows=2)
        assert_arrived_whole(fake, fourth, rows=1)
    # The outage cost time after the response, but never ran an invocation past its deadline.
    assert_ended_in_time(lam)
    assert_nothing_sent_while_handling(fake, lam)
    assert len(fake.runs()) == 4


def test_connections_left_stale_by_a_freeze_are_not_reused(fake: FakeWandb) -> None:
    env = wandb_env(fake, WANDB_HTTP_TIMEOUT="30")
    with LambdaEmulator(FUNCTIONS, "functions.per_invocation", env=env, timeout=5) as lam:
        lam.invoke({"invocation": 0, "rows": 2})
        # While frozen, the network forgets the pooled connections.
        assert fake.strand_connections() >= 1
        second = lam.invoke({"invocation": 1, "rows": 2})
        assert run_of(fake, second).complete
    assert [r.kind for r in fake.requests if r.fault == "stranded"] == []
    assert_ended_in_time(lam)


def test_an_exception_finishes_the_run_failed_and_is_raised_again(fake: FakeWandb) -> None:
    with LambdaEmulator(FUNCTIONS, "functions.per_invocation", env=wandb_env(fake)) as lam:
        failed = lam.invoke({"invocation": 0, "rows": 2, "fail": True})
        assert failed.outcome == "error"
        assert failed.body["errorType"] == "ValueError"
        assert failed.body["errorMessage"] == "invocation 0 failed on purpose"
        run = run_of(fake, failed)
        assert run.complete and run.exitcode == 1
        assert [row["i"] for row in run.history] == [0, 1]
        console = "\n".join(run.console)
        assert "Traceback (most recent call last)" in console
        assert "ValueError: invocation 0 failed on purpose" in console
        # The environment goes on: the next invocation gets a new run.
        ok = lam.invoke({"invocation": 1, "rows": 1})
        assert ok.outcome == "response" and run_of(fake, ok).exitcode == 0


def test_offline_without_a_key_writes_only_under_tmp() -> None:
    # No API key: the run stays in /tmp; the read-only sandbox turns any other write into an
    # error, which would fail the invocation.
    with LambdaEmulator(FUNCTIONS, "functions.per_invocation") as lam:
        invocation = lam.invoke({"invocation": 0, "rows": 2})
    assert invocation.outcome == "response", lam.output.decode()
    assert invocation.body["step"] == 2


def test_invocations_of_one_job_continue_its_run_across_outages_and_environments(
    fake: FakeWandb,
) -> None:
    """`id` from the event with `resume="allow"`: each invocation continues the job's run
    where the last stopped, also when the last one's data was spooled by an outage (it then
    arrives first, in order) and when the next invocation runs in a new environment (which
    asks the server where the run stands)."""
    env = wandb_env(fake, WANDB_NEXUS_RETRY_WAIT_MIN="0.1", WANDB_NEXUS_RETRY_WAIT_MAX="0.2")
    job = {"job": "job-7", "rows": 3}
    with LambdaEmulator(FUNCTIONS, "functions.per_job", env=env, timeout=3) as lam:
        lam.invoke({**job, "invocation": 0}, pause=0.2)
        run = fake.single_run()
        assert [row["_step"] for row in run.history] == [0, 1, 2]
        # The next invocation's delivery meets an outage: its part stays in /tmp.
        fake.inject("graphql", [status(503)] * 1000)
        lam.invoke({**job, "invocation": 1}, pause=0.2)
        fake.clear_faults()
        assert len(run.history) == 3
        lam.invoke({**job, "invocation": 2}, pause=0.2)
        assert [row["_step"] for row in run.history] == list(range(9))
        assert [row["invocation"] for row in run.history] == [0] * 3 + [1] * 3 + [2] * 3
        assert [inv.body["step"] for inv in lam.invocations] == [3, 6, 9]
    # A new environment (its own /tmp) asks the server where the run stands.
    with LambdaEmulator(FUNCTIONS, "functions.per_job", env=env, timeout=3) as lam:
        lam.invoke({**job, "invocation": 3}, pause=0.2)
    assert len(fake.runs()) == 1
    assert [row["_step"] for row in run.history] == list(range(12))
    assert [line.split(" ", 1)[1] for line in run.console] == ["logged 3 rows"] * 4
    assert run.complete and run.exitcode == 0
    assert run.display_name == "job job-7" and run.tags == ["invocation-3"]
