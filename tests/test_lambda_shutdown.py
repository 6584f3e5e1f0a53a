"""Nothing lost when Lambda kills or retires the environment: the layer as built (its
Python package and its external extension, mounted read-only at /opt) under the emulated
Lambda lifecycle (tests/lambda_emulator.py): SIGTERM to the runtime, SHUTDOWN with its reason
and deadline to the extension, SIGKILL at the deadline, resets after a timeout or a crash.

Every check is made once the environment is gone (or reset): whatever the fake W&B holds
then was delivered before the sandbox went away."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_lambda_runtime import run_of, wandb_env

from conftest import needs_sandbox
from fake_wandb import FakeWandb, RunState, status
from lambda_emulator import LambdaEmulator

FUNCTIONS = Path(__file__).resolve().parent / "lambda_functions"

pytestmark = needs_sandbox


def environment(
    layer: Path, fake: FakeWandb, handler: str, timeout: float = 5, **env: str
) -> LambdaEmulator:
    wandb = wandb_env(fake, WANDB_NEXUS_RETRY_WAIT_MIN="0.1", WANDB_NEXUS_RETRY_WAIT_MAX="0.2")
    return LambdaEmulator(
        FUNCTIONS,
        f"shutdown_functions.{handler}",
        env={**wandb, **env},
        timeout=timeout,
        opt=layer,
    )


def assert_rows(run: RunState, rows: int, invocation: int = 0) -> None:
    """Each of the invocation's rows once, in order."""
    mine = [row for row in run.history if row.get("invocation") == invocation]
    assert [row["i"] for row in mine] == list(range(rows)), run.history


def assert_failed_because(run: RunState, words: str) -> None:
    assert run.complete and run.exitcode == 1
    assert any(words in line for line in run.console), run.console


def test_the_extension_registers_for_shutdown_only(layer: Path, fake: FakeWandb) -> None:
    with environment(layer, fake, "per_invocation") as lam:
        extension = lam.extension("wandb-nexus")
        assert extension.external and extension.events == ["SHUTDOWN"]
        assert "wandb-nexus-internal" in lam.extension_names
        lam.invoke({"invocation": 0, "rows": 2})
        assert extension.invoke_events == 0
        shutdown = lam.shutdown()
    assert shutdown is not None and not shutdown.killed_at_deadline
    assert "wandb-nexus" in shutdown.extensions_exited_at


def test_a_timed_out_invocation_arrives_whole_before_the_sandbox_is_gone(
    layer: Path, fake: FakeWandb
) -> None:
    with environment(layer, fake, "per_invocation", timeout=3) as lam:
        timed_out = lam.invoke({"invocation": 0, "rows": 5, "end": "timeout"})
        assert timed_out.outcome == "timeout" and timed_out.reset is not None
        assert timed_out.reset.reason == "timeout"
        # The reset is over: the extension delivered the run within its deadline.
        run = run_of(fake, timed_out)
        assert_rows(run, 5)
        assert_failed_because(run, "timed out")
        assert not timed_out.reset.killed_at_deadline
        # Re-initialised in the same sandbox: later invocations, and no duplicates.
        for number in (1, 2):
            later = lam.invoke({"invocation": number, "rows": 3})
            assert later.outcome == "response"
            assert_rows(run_of(fake, later), 3, number)
        assert lam.extension("wandb-nexus").generation == 2
    assert len(fake.runs()) == 3
    assert_rows(run, 5)


@pytest.mark.parametrize("end", ["exit", "segfault", "oom"])
def test_a_crashed_runtime_leaves_every_logged_row(layer: Path, fake: FakeWandb, end: str) -> None:
    with environment(layer, fake, "per_invocation", timeout=10) as lam:
        crashed = lam.invoke({"invocation": 0, "rows": 5, "end": end})
        assert crashed.outcome == "crash" and crashed.reset is not None
        assert crashed.reset.reason == "failure"
        if end == "oom":
            assert crashed.oom_killed or lam.memory_cgroup is None
        run = run_of(fake, crashed)
        assert_rows(run, 5)
        assert_failed_because(run, "failed")
        after = lam.invoke({"invocation": 1, "rows": 1})
        assert after.outcome == "response"
    assert len(fake.runs()) == 2


def test_an_environment_run_is_finished_at_spindown(layer: Path, fake: FakeWandb) -> None:
    with environment(layer, fake, "per_environment") as lam:
        for number in range(3):
            lam.invoke({"invocation": number, "rows": 4}, pause=0.1)
        run = fake.single_run()
        assert not run.complete
        shutdown = lam.shutdown("spindown")
    assert shutdown is not None and shutdown.sigterm_at is not None
    run = fake.single_run()
    assert [row["_step"] for row in run.history] == list(range(12))
    assert run.complete and run.exitcode == 0


def test_periodic_runs_cost_no_delivery_until_due_and_arrive_at_spindown(
    layer: Path, fake: FakeWandb
) -> None:
    with environment(layer, fake, "periodic") as lam:
        lam.invoke({"invocation": 0, "rows": 2})
        after_first = len(fake.requests)
        assert len(fake.single_run().history) == 2  # the first is due at once
        for number in range(1, 4):
            lam.invoke({"invocation": number, "rows": 2})
        assert len(fake.requests) == after_first, "nothing was due"
        lam.shutdown("spindown")
    run = fake.single_run()
    assert [row["_step"] for row in run.history] == list(range(8))
    assert run.complete and run.exitcode == 0


def test_unreachable_wandb_at_shutdown_leaves_the_runs_for_a_later_invocation(
    layer: Path, fake: FakeWandb
) -> None:
    with environment(layer, fake, "per_invocation", timeout=3) as lam:
        fake.inject("graphql", [status(503)] * 10_000)
        timed_out = lam.invoke({"invocation": 0, "rows": 4, "end": "timeout"})
        assert timed_out.reset is not None and not timed_out.reset.killed_at_deadline
        assert fake.runs() == []
        # Lambda keeps /tmp across a reset: the run is still there, not marked delivered.
        logs = [path for path in lam.tmp_files() if path.endswith(".wandb")]
        assert len(logs) == 1 and f"{logs[0]}.synced" not in lam.tmp_files()
        fake.clear_faults()
        later = lam.invoke({"invocation": 1, "rows": 1})
        assert_rows(run_of(fake, timed_out), 4)
        assert_rows(run_of(fake, later), 1, 1)
    # After a spindown the sandbox and its /tmp are gone: what W&B did not take is lost.
    assert len(fake.runs()) == 2


def test_the_extension_can_be_turned_off(layer: Path, fake: FakeWandb) -> None:
    with environment(layer, fake, "per_invocation", WANDB_NEXUS_EXTENSION="off") as lam:
        invocation = lam.invoke({"invocation": 0, "rows": 2})
        assert invocation.outcome == "response"
        assert_rows(run_of(fake, invocation), 2)
        shutdown = lam.shutdown()
    assert shutdown is not None and not shutdown.killed_at_deadline
    assert b"turned off by WANDB_NEXUS_EXTENSION" in lam.output
