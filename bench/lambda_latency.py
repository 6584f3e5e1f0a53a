"""What the layer costs a Lambda function, under Lambda's lifecycle as the tests emulate it
(tests/lambda_emulator.py: the real awslambdaric runtime and the layer's extension in a
read-only sandbox with the layer mounted at /opt, frozen between invocations, SIGTERM and
SHUTDOWN at the end):

  * INIT: cold starts of a handler that imports nothing, without the layer, against the same
    handler wrapped by `wandb_nexus.lambda_handler` with the layer, in fresh environments,
    interleaved; the difference is what the layer adds (module import, the decorator and its
    internal extension's registration, the extension's start and registration, which the
    runtime waits for). `hello` with the layer is shown beside them;
  * the extension's peak memory (VmHWM), idle and while delivering at SHUTDOWN;
  * response latency (what the caller waits for) with no W&B and with a W&B taking 500 ms
    per request;
  * billed time after the response (delivery, before the environment may freeze) for a run
    per invocation with W&B at 50 ms per request, and for an environment run with
    flush="periodic" when nothing is due;
  * SnapStart: how long a restore from a snapshot takes, and the response in a restored
    environment with a W&B taking 500 ms per request;
  * Managed Instances: the response of a worker process with a W&B taking 500 ms per
    request, while the workers deliver in the background;
  * the layer zip's size.

Writes its section of BENCHMARKS.md. Fails if an invocation fails or a run does not arrive
whole.

    pipenv run python bench/lambda_latency.py [--invocations N] [--cold-starts N]
"""

from __future__ import annotations

import argparse
import datetime
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# bench/run.py, beside this script: the shared section writer and the machine's description.
from run import REPO, machine, write_section

sys.path.insert(0, str(REPO / "tests"))

from fake_wandb import FakeWandb
from lambda_emulator import Invocation, LambdaEmulator

LAYER = REPO / "build" / "layer-x86_64"
LAYER_ZIP = REPO / "dist" / "layer-x86_64.zip"
FUNCTIONS = REPO / "tests" / "lambda_functions"
BARE_HANDLER = "def handler(event, context):\n    return {'statusCode': 200}\n"
# The same handler in lambda_handler; it prints how long its import and decoration took.
WRAPPED_HANDLER = f"""import time
started = time.perf_counter()
import wandb_nexus


@wandb_nexus.lambda_handler(project="init-bench")
{BARE_HANDLER}
print(f"layer init {{(time.perf_counter() - started) * 1000:.3f}} ms", flush=True)
"""


def ms(values: list[float]) -> str:
    cells = [v * 1000 for v in values]
    return f"{statistics.median(cells):.1f} ms ({min(cells):.1f}-{max(cells):.1f})"


def wandb_env(fake: FakeWandb | None) -> dict[str, str]:
    return {} if fake is None else {"WANDB_BASE_URL": fake.base_url, "WANDB_API_KEY": fake.api_key}


@contextmanager
def init_functions() -> Iterator[Path]:
    """A task root with the bare handler (`bare.handler`) and the same handler wrapped by
    `wandb_nexus.lambda_handler` (`wrapped.handler`)."""
    with tempfile.TemporaryDirectory() as root:
        (Path(root) / "bare.py").write_text(BARE_HANDLER)
        (Path(root) / "wrapped.py").write_text(WRAPPED_HANDLER)
        yield Path(root)


def cold_starts(count: int) -> dict[str, list[float]]:
    """INIT durations, interleaved: "bare" (no layer), "wrapped" (with the layer), "added"
    (wrapped minus the bare one just before it), "hello" (with the layer); and the parts of
    what the layer adds: the extension's "registration" (from its start until it registered)
    and "in_runtime" (the import and the decorator, timed by the handler module), in seconds."""
    found: dict[str, list[float]] = {
        key: [] for key in ("bare", "wrapped", "added", "hello", "registration", "in_runtime")
    }
    with init_functions() as root:
        for _ in range(count):
            with LambdaEmulator(root, "bare.handler") as lam:
                found["bare"].append(lam.init_duration)
            with LambdaEmulator(root, "wrapped.handler", opt=LAYER) as lam:
                found["wrapped"].append(lam.init_duration)
                found["registration"].append(lam.extension("wandb-nexus").startup)
            # Read once the environment is gone: its output is then whole.
            said = re.search(rb"layer init ([0-9.]+) ms", lam.output)
            if said is None:
                raise SystemExit(f"the wrapped handler said nothing:\n{lam.output.decode()}")
            found["in_runtime"].append(float(said[1]) / 1000)
            found["added"].append(found["wrapped"][-1] - found["bare"][-1])
            with LambdaEmulator(REPO, "handler.hello", opt=LAYER) as lam:
                found["hello"].append(lam.init_duration)
    return found


def after_response(invocations: list[Invocation]) -> list[float]:
    return [inv.ended_at - inv.responded_at for inv in invocations]  # type: ignore[operator]


def check(label: str, invocations: list[Invocation], lam: LambdaEmulator) -> None:
    for invocation in invocations:
        if invocation.outcome != "response" or invocation.timed_out:
            raise SystemExit(f"{label}: invocation failed: {invocation}\n{lam.output.decode()}")


def extension_peak_mib(lam: LambdaEmulator) -> float:
    """The peak memory (VmHWM) the extension reported as it ended: the peak RSS that wait4
    gives for a process includes the Python process that started it."""
    found = re.findall(rb"SHUTDOWN handled in \d+ ms; peak memory ([0-9.]+) MiB", lam.output)
    if not found:
        raise SystemExit(f"the extension reported no peak memory:\n{lam.output.decode()}")
    return max(float(value) for value in found)


def warm_hello(count: int, fake: FakeWandb | None) -> tuple[list[Invocation], float]:
    """Warm invocations of `hello` (the first, cold, one dropped) and the extension's peak
    memory in MiB, as it reported at the environment's shutdown."""
    with LambdaEmulator(REPO, "handler.hello", env=wandb_env(fake), timeout=30, opt=LAYER) as lam:
        runs = [lam.invoke({"n": n}, pause=0.05) for n in range(count + 1)]
        lam.shutdown()
    check("hello", runs, lam)
    if fake is not None:
        whole = [r for r in fake.runs() if r.complete and len(r.history) == 10]
        if len(whole) != len(runs):
            raise SystemExit(f"{len(whole)} of {len(runs)} runs arrived whole")
    return runs[1:], extension_peak_mib(lam) if fake is not None else 0.0


def periodic(count: int, fake: FakeWandb) -> list[Invocation]:
    """Invocations of an environment run with flush="periodic" that have nothing due."""
    with LambdaEmulator(
        FUNCTIONS, "shutdown_functions.periodic", env=wandb_env(fake), timeout=30, opt=LAYER
    ) as lam:
        runs = [lam.invoke({"invocation": n, "rows": 10}, pause=0.05) for n in range(count + 1)]
        lam.shutdown()
    check("periodic", runs, lam)
    run = fake.single_run()
    if len(run.history) != 10 * len(runs) or not run.complete:
        raise SystemExit(f"periodic: {len(run.history)} rows arrived, {10 * len(runs)} logged")
    return runs[1:]  # the first is due at once


def delivery_at_shutdown(fake: FakeWandb) -> float:
    """The extension's peak RSS (MiB) when it delivers a timed-out invocation's run."""
    with LambdaEmulator(
        FUNCTIONS, "shutdown_functions.per_invocation", env=wandb_env(fake), timeout=3, opt=LAYER
    ) as lam:
        invocation = lam.invoke({"invocation": 0, "rows": 1000, "end": "timeout"})
        rss = extension_peak_mib(lam)
    runs = fake.runs()
    if invocation.reset is None or len(runs) != 1 or len(runs[0].history) != 1000:
        raise SystemExit("the timed-out run did not arrive whole at SHUTDOWN")
    return rss


def snapstart(count: int, fake: FakeWandb | None) -> tuple[list[float], list[Invocation]]:
    """Environments restored from one snapshot: each restore's duration (from the snapshot's
    fork until the copy waits for its first event: the runtime client's restore, our
    after-restore hooks, the extension's start) and the first invocation of `hello` in each."""
    restores, invocations = [], []
    with LambdaEmulator(
        REPO, "handler.hello", env=wandb_env(fake), timeout=30, opt=LAYER, snapstart=True
    ) as snapshot:
        for number in range(count):
            with snapshot.restore() as copy:
                restores.append(copy.inits[-1].duration)
                invocation = copy.invoke({"n": number})
                check("snapstart", [invocation], copy)
                invocations.append(invocation)
    if fake and sum(run.complete and len(run.history) == 10 for run in fake.runs()) != count:
        raise SystemExit("snapstart: not every run arrived whole")
    return restores, invocations


def invoke_when_a_worker_waits(lam: LambdaEmulator, payload: dict[str, int]) -> Invocation:
    """Lambda throttles an invocation that finds every worker busy (the one that just
    answered may not be asking for its next event yet); a caller retries."""
    while True:
        invocation = lam.invoke(payload)
        if invocation.outcome != "throttled":
            return invocation
        time.sleep(0.001)


def managed_instances(count: int, fake: FakeWandb) -> list[Invocation]:
    """Invocations of `hello`, one after another, on four Managed Instances workers, which
    deliver the runs in the background."""
    with LambdaEmulator(
        REPO, "handler.hello", env=wandb_env(fake), timeout=30, opt=LAYER, max_concurrency=4,
        memory_mb=2048,
    ) as lam:  # fmt: skip
        runs = [invoke_when_a_worker_waits(lam, {"n": n}) for n in range(count)]
        check("managed instances", runs, lam)
        end = time.monotonic() + 120
        while sum(run.complete for run in fake.runs()) < count:
            if time.monotonic() > end:
                raise SystemExit("managed instances: the runs did not arrive")
            time.sleep(0.1)
    return runs


def measure(invocations: int, cold: int) -> list[list[str]]:
    rows = [["Measure", "Ours", "Target", "Met"]]

    def row(measure: str, value: str, target: str, met: bool | None) -> None:
        rows.append([measure, value, target, "" if met is None else ("yes" if met else "NO")])

    inits = cold_starts(cold)
    added = statistics.median(inits["added"])
    row("INIT, a handler importing nothing, no layer", ms(inits["bare"]), "", None)
    row("INIT, the same handler in `wandb_nexus.lambda_handler`, with the layer",
        ms(inits["wrapped"]), "", None)  # fmt: skip
    row("INIT the layer adds (paired difference)", ms(inits["added"]), "≤ 10 ms median",
        added <= 0.010)  # fmt: skip
    row("Extension: start to registration", ms(inits["registration"]), "", None)
    row("Runtime: `import wandb_nexus` and `lambda_handler` (its internal extension's "
        "registration included), timed in the handler module",
        ms(inits["in_runtime"]), "", None)  # fmt: skip
    parts = zip(inits["registration"], inits["in_runtime"], strict=True)
    by_parts = [registration + in_runtime for registration, in_runtime in parts]
    row("INIT the layer adds, by its parts (the two rows above)", ms(by_parts), "≤ 10 ms median",
        statistics.median(by_parts) <= 0.010)  # fmt: skip
    row("INIT, `hello` with the layer", ms(inits["hello"]), "", None)

    offline, _ = warm_hello(invocations, None)
    with FakeWandb() as fake:
        fake.latency = 0.5
        slow, idle_rss = warm_hello(invocations, fake)
    with FakeWandb() as fake:
        shutdown_rss = delivery_at_shutdown(fake)
    peak = max(idle_rss, shutdown_rss)
    row("Extension peak memory (VmHWM), nothing left / delivering 1,000 rows at SHUTDOWN",
        f"{idle_rss:.1f} / {shutdown_rss:.1f} MiB", "≤ 10 MiB", peak <= 10)  # fmt: skip
    response_none = statistics.median([i.response_latency for i in offline])
    response_slow = statistics.median([i.response_latency for i in slow])
    row("Response, no W&B (offline)", ms([i.response_latency for i in offline]), "", None)
    row("Response, W&B at 500 ms per request", ms([i.response_latency for i in slow]),
        "≤ no W&B + 1 ms", response_slow <= response_none + 0.001)  # fmt: skip

    with FakeWandb() as fake:
        fake.latency = 0.05
        per_invocation, _ = warm_hello(invocations, fake)
    row("Billed after the response, a run per invocation, W&B at 50 ms per request",
        ms(after_response(per_invocation)), "", None)  # fmt: skip
    with FakeWandb() as fake:
        fake.latency = 0.05
        nothing_due = after_response(periodic(invocations, fake))
    row('Billed after the response, environment run, flush="periodic", nothing due',
        ms(nothing_due), "≤ 1 ms median", statistics.median(nothing_due) <= 0.001)  # fmt: skip
    restores, restored_offline = snapstart(invocations, None)
    with FakeWandb() as fake:
        fake.latency = 0.5
        _, restored = snapstart(invocations, fake)
    row("SnapStart: a restore, until the environment waits for its first event",
        ms(restores), "≤ 10 s (Lambda's limit)", max(restores) <= 10)  # fmt: skip
    first_none = statistics.median([i.response_latency for i in restored_offline])
    first_slow = statistics.median([i.response_latency for i in restored])
    row("SnapStart: first response in a restored environment, no W&B (offline)",
        ms([i.response_latency for i in restored_offline]), "", None)  # fmt: skip
    row("SnapStart: first response in a restored environment, W&B at 500 ms per request",
        ms([i.response_latency for i in restored]), "≤ no W&B + 1 ms",
        first_slow <= first_none + 0.001)  # fmt: skip
    with FakeWandb() as fake:
        fake.latency = 0.5
        workers = managed_instances(invocations, fake)
    response_workers = statistics.median([i.response_latency for i in workers])
    row("Managed Instances (4 workers): response, W&B at 500 ms per request",
        ms([i.response_latency for i in workers]), "≤ no W&B + 1 ms",
        response_workers <= response_none + 0.001)  # fmt: skip
    size = LAYER_ZIP.stat().st_size
    row("Layer zip (x86_64)", f"{size / 1e6:.2f} MB", "≤ 5 MB", size <= 5_000_000)
    return rows


def render(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def section(table: str, invocations: int, cold: int) -> str:
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""## On Lambda: INIT, the extension, latency and billed time

What the layer costs a function under the emulated Lambda lifecycle, measured by
`bench/lambda_latency.py` (this section only):

```bash
pipenv run python scripts/build_layer.py --arch x86_64   # the layer measured
pipenv run python bench/lambda_latency.py
```

- Date: {date}
- Machine: {machine()}
- The layer as built in `build/layer-x86_64` (its Python package and its extension, mounted
  read-only at /opt), the real awslambdaric runtime, 128 MB memory cgroup; median (min-max).
- INIT: {cold} cold starts each, interleaved: a handler importing nothing, without the layer;
  the same handler wrapped by `wandb_nexus.lambda_handler`, with the layer; `hello`. INIT is
  from starting the first process until the runtime and every extension wait for their next
  event. The sandbox's init (a process inside the sandbox, started before INIT) starts them
  with posix_spawn, as Lambda's init does inside its microVM. Each wrapped start is paired
  with the bare one just before it: the spread of Python's own start on this machine (tens of
  ms) is larger than what the layer adds, so it is also given by its parts, each timed
  directly: the extension's start to registration (which the runtime's start waits for), and
  the import and decoration inside the runtime. No machine here runs Lambda itself: these are
  this machine's times.
- Latency and billed time: {invocations} warm invocations each (the cold one dropped). Billed
  after the response is from the runtime's response until the last process asks for its next
  event (when Lambda may freeze the environment).
- SnapStart: {invocations} environments restored from one snapshot, one invocation each (the
  emulator's snapshot is the runtime process, forked where it asks `restore/next`); the first
  response of an environment includes what a first invocation sets up (the run's writer).
  Managed Instances: {invocations} invocations, one after another, on 4 worker processes.

{table}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invocations", type=int, default=10, help="warm invocations per case")
    parser.add_argument("--cold-starts", type=int, default=30, help="cold starts per case")
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    if not (LAYER / "extensions" / "wandb-nexus").exists():
        raise SystemExit("no layer in build/layer-x86_64: run scripts/build_layer.py first")
    table = render(measure(args.invocations, args.cold_starts))
    print(table)
    write_section(args.output, "lambda", section(table, args.invocations, args.cold_starts))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
