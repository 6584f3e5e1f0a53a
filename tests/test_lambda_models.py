"""The execution models beyond on-demand, with the layer as built and the real runtime client
under the emulator (tests/lambda_emulator.py):

* SnapStart: INIT runs once, the snapshot is taken where the runtime asks `restore/next`, and
  environments are restored from it (copies forked from the snapshot's runtime process).
  Copies must never share a run, a run id or a file, and must deliver as on-demand
  environments do.
* Managed Instances: worker processes take concurrent invocations, nothing freezes, and each
  worker delivers in the background; the external extension delivers what is left at
  SHUTDOWN."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from test_lambda_runtime import run_of, wandb_env

from conftest import needs_sandbox
from fake_wandb import FakeWandb, RunState, request_resource, status
from lambda_emulator import Invocation, LambdaEmulator

FUNCTIONS = Path(__file__).resolve().parent / "lambda_functions"

pytestmark = needs_sandbox


def environment(layer: Path, fake: FakeWandb, handler: str, **options: object) -> LambdaEmulator:
    wandb = wandb_env(fake, WANDB_NEXUS_RETRY_WAIT_MIN="0.1", WANDB_NEXUS_RETRY_WAIT_MAX="0.2")
    return LambdaEmulator(
        FUNCTIONS,
        f"model_functions.{handler}" if "." not in handler else handler,
        env=wandb,
        opt=layer,
        **options,  # type: ignore[arg-type]
    )


def assert_rows(run: RunState, rows: int, invocation: int) -> None:
    """Each of the invocation's rows once, in order, in a finished run."""
    mine = [row for row in run.history if row.get("invocation") == invocation]
    assert [row["i"] for row in mine] == list(range(rows)), run.history
    assert run.complete and run.exitcode == 0


def wait_until(ready: Callable[[], bool], seconds: float = 20) -> None:
    end = time.monotonic() + seconds
    while not ready():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.05)


# ---------------------------------------------------------------------------------- SnapStart


def test_snapstart_copies_of_one_snapshot_never_share_a_run_an_id_or_a_file(
    layer: Path, fake: FakeWandb
) -> None:
    with environment(layer, fake, "per_invocation", snapstart=True) as snapshot:
        assert "wandb-nexus-internal" in snapshot.extension_names
        # Nothing of ours is in the snapshot's /tmp, so no copy starts with a file of another.
        assert snapshot.tmp_files() == []
        with snapshot.restore() as one, snapshot.restore() as two:
            invocations = []
            for number, copy in enumerate([one, two, one, two]):
                invocation = copy.invoke({"invocation": number, "rows": 5})
                assert invocation.outcome == "response", invocation.body
                # Frozen now: delivered within the invocation by the copy's extension thread.
                assert_rows(run_of(fake, invocation), 5, number)
                invocations.append(invocation)
            for copy in (one, two):
                internal = [e for e in copy.extensions if not e.external]
                assert [e.invoke_events for e in internal] == [2]
                assert copy.extension("wandb-nexus").external
                assert copy.inits[-1].duration < 10  # Lambda's restore limit
        bodies = [invocation.body for invocation in invocations]
        assert len({body["run"] for body in bodies}) == 4
        assert len({body["dir"] for body in bodies}) == 4
        assert {body["pid"] for body in bodies[0::2]} != {body["pid"] for body in bodies[1::2]}
    assert len(fake.runs()) == 4


def test_a_run_started_during_a_snapstart_init_is_refused_with_a_reason(
    layer: Path, fake: FakeWandb
) -> None:
    handler = "snapstart_init_run.handler"
    with environment(layer, fake, handler, snapstart=True) as snapshot:
        assert snapshot.tmp_files() == []
        with snapshot.restore() as copy:
            invocation = copy.invoke({})
    assert "during a SnapStart INIT" in invocation.body["refused"]
    assert fake.runs() == []


def test_a_copy_restored_without_wandb_delivers_later_exactly_once(
    layer: Path, fake: FakeWandb
) -> None:
    with environment(layer, fake, "per_invocation", snapstart=True, timeout=3) as snapshot:
        fake.inject("graphql", [status(503)] * 1000)
        with snapshot.restore() as copy:
            first = copy.invoke({"invocation": 0, "rows": 4})
            assert first.outcome == "response"
            assert fake.runs() == []
            fake.clear_faults()
            second = copy.invoke({"invocation": 1, "rows": 2})
            assert_rows(run_of(fake, first), 4, 0)
            assert_rows(run_of(fake, second), 2, 1)
    assert len(fake.runs()) == 2


def test_a_copy_that_times_out_is_delivered_at_shutdown_and_restored_again(
    layer: Path, fake: FakeWandb
) -> None:
    with environment(layer, fake, "per_invocation", snapstart=True, timeout=2) as snapshot:
        with snapshot.restore() as copy:
            timed_out = copy.invoke({"invocation": 0, "rows": 3, "sleep": 60})
            assert timed_out.outcome == "timeout" and timed_out.reset is not None
            after = copy.invoke({"invocation": 1, "rows": 3})
            assert after.outcome == "response"
            assert after.init is not None and after.init.phase == "invoke"
            assert after.body["pid"] != copy.inits[0].runtime_pid
            assert_rows(run_of(fake, after), 3, 1)
    run = run_of(fake, timed_out)
    assert run.complete and run.exitcode == 1
    assert any("timed out" in line for line in run.console), run.console


def test_a_copys_environment_run_is_finished_by_sigterm_and_delivered_at_spindown(
    layer: Path, fake: FakeWandb
) -> None:
    with environment(layer, fake, "per_environment", snapstart=True) as snapshot:
        with snapshot.restore() as copy:
            for number in range(2):
                assert copy.invoke({"invocation": number, "rows": 3}).outcome == "response"
            assert not fake.single_run().complete
            shutdown = copy.shutdown()
    assert shutdown is not None and shutdown.sigterm_at is not None
    run = fake.single_run()
    assert [row["_step"] for row in run.history] == list(range(6))
    # Finished by the copy's own SIGTERM handler (exit code 0), not closed as failed.
    assert run.complete and run.exitcode == 0


# -------------------------------------------------------------------------- Managed Instances


def invoke_until_taken(lam: LambdaEmulator, payload: dict[str, object]) -> Invocation:
    """Invokes until a worker takes it: Lambda throttles invocations while every worker is
    busy, and a caller retries."""
    while True:
        invocation = lam.invoke(payload)
        if invocation.outcome != "throttled":
            return invocation
        time.sleep(0.005)


def test_four_workers_take_100_concurrent_invocations_each_in_its_own_run(
    layer: Path, fake: FakeWandb
) -> None:
    options = {"max_concurrency": 4, "memory_mb": 1024, "timeout": 20}
    with environment(layer, fake, "per_invocation", **options) as lam:
        # No internal extension from the workers; the external one gets SHUTDOWN only.
        assert lam.extension_names == ["wandb-nexus"]
        assert lam.extension("wandb-nexus").events == ["SHUTDOWN"]
        assert lam.registration_errors == []
        payloads = [{"invocation": number, "rows": 20} for number in range(100)]
        with ThreadPoolExecutor(8) as pool:
            invocations = list(pool.map(lambda p: invoke_until_taken(lam, p), payloads))
        assert {invocation.outcome for invocation in invocations} == {"response"}
        assert len({invocation.body["pid"] for invocation in invocations}) == 4
        # Nothing freezes: the workers deliver in the background, without an invocation.
        assert not lam.frozen
        wait_until(lambda: sum(run.complete for run in fake.runs()) == 100)
    for number, invocation in enumerate(invocations):
        assert_rows(run_of(fake, invocation), 20, number)
    assert len(fake.runs()) == 100
    assert len({invocation.body["run"] for invocation in invocations}) == 100


def test_workers_respond_before_anything_of_their_runs_reaches_wandb(
    layer: Path, fake: FakeWandb
) -> None:
    fake.latency = 0.3  # every W&B request takes that long to answer
    options = {"max_concurrency": 2, "memory_mb": 512, "timeout": 10}
    with environment(layer, fake, "per_invocation", **options) as lam:
        invocations = [invoke_until_taken(lam, {"invocation": n, "rows": 3}) for n in range(4)]
        wait_until(lambda: sum(run.complete for run in fake.runs()) == 4)
    for number, invocation in enumerate(invocations):
        assert_rows(run_of(fake, invocation), 3, number)
        answered = [
            request.answered_at
            for request in fake.requests
            if invocation.body["run"] in (request_resource(request) or "")
            and request.answered_at is not None
        ]
        assert answered and invocation.responded_at is not None
        assert min(answered) > invocation.responded_at


def test_a_timed_out_invocation_keeps_running_and_its_run_ends_whole(
    layer: Path, fake: FakeWandb
) -> None:
    options = {"max_concurrency": 2, "memory_mb": 512, "timeout": 1}
    with environment(layer, fake, "per_invocation", **options) as lam:
        late = invoke_until_taken(lam, {"invocation": 0, "rows": 5, "sleep": 2})
        assert late.outcome == "timeout"
        wait_until(lambda: late.request_id in lam.late_results)
        wait_until(lambda: any(run.complete for run in fake.runs()))
        assert_rows(run_of(fake, late), 5, 0)
        on_time = invoke_until_taken(lam, {"invocation": 1, "rows": 2})
        assert on_time.outcome == "response"
    assert_rows(run_of(fake, on_time), 2, 1)


def test_a_dead_workers_run_is_delivered_whole_by_the_others(layer: Path, fake: FakeWandb) -> None:
    options = {"max_concurrency": 2, "memory_mb": 512, "timeout": 2}
    with environment(layer, fake, "per_invocation", **options) as lam:
        wait_until(lambda: lam._idle_workers == 2)
        died = invoke_until_taken(lam, {"invocation": 0, "rows": 5, "end": "exit"})
        assert died.outcome == "timeout"  # no result: the worker is gone
        # The other worker goes on, and its delivery thread sweeps what the dead one left.
        after = invoke_until_taken(lam, {"invocation": 1, "rows": 2})
        assert after.outcome == "response"
        wait_until(lambda: sum(run.complete for run in fake.runs()) == 2)
    run = run_of(fake, died)
    assert [row["i"] for row in run.history] == list(range(5))
    assert run.complete and run.exitcode == 1
    assert any("ended before the run finished" in line for line in run.console), run.console
    assert_rows(run_of(fake, after), 2, 1)
    assert len(fake.runs()) == 2


def test_a_run_per_worker_ends_at_shutdown_with_every_row_once(
    layer: Path, fake: FakeWandb
) -> None:
    options = {"max_concurrency": 2, "memory_mb": 512, "timeout": 10}
    with environment(layer, fake, "per_environment", **options) as lam:
        invocations = [invoke_until_taken(lam, {"invocation": n, "rows": 3}) for n in range(8)]
        assert {invocation.outcome for invocation in invocations} == {"response"}
        shutdown = lam.shutdown()
    assert shutdown is not None and shutdown.sigterm_at is not None
    assert "wandb-nexus" in shutdown.sent_to
    runs = fake.runs()
    workers = {invocation.body["pid"] for invocation in invocations}
    assert len(runs) == len(workers)
    for run in runs:
        assert run.complete and run.exitcode == 0
        logged = [(row["invocation"], row["i"]) for row in run.history]
        assert len(logged) == len(set(logged))
    every = sorted((row["invocation"], row["i"]) for run in runs for row in run.history)
    assert every == [(n, i) for n in range(8) for i in range(3)]
