"""Response latency of the `hello` Lambda function under Lambda's lifecycle.

Runs handler.hello in the emulated execution environment of the tests (the real awslambdaric
runtime in a read-only sandbox, frozen between invocations; tests/lambda_emulator.py) three
ways: without W&B (no API key, the run stays in /tmp), with the fake W&B server answering at
once, and with it answering each request after 500 ms. For each it prints the median (min,
max) over the warm invocations of

  * response: from handing the event to the runtime until its response arrives (what the
    caller waits for);
  * after response: from the response until the environment may freeze (delivery; billed,
    but nobody waits for it);

plus the cold start's response and the runtime's peak memory. Fails if an invocation fails
or a run does not arrive whole.

    pipenv run python bench/lambda_latency.py [--invocations N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fake_wandb import FakeWandb  # noqa: E402
from lambda_emulator import Invocation, LambdaEmulator  # noqa: E402


def spread(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):7.1f} ms ({min(ms):.1f}-{max(ms):.1f})"


def measure(label: str, invocations: int, fake: FakeWandb | None) -> list[str]:
    env = {} if fake is None else {"WANDB_BASE_URL": fake.base_url, "WANDB_API_KEY": fake.api_key}
    with LambdaEmulator(REPO, "handler.hello", env=env, timeout=30) as lam:
        runs: list[Invocation] = [lam.invoke({"n": n}, pause=0.05) for n in range(invocations + 1)]
        peak = lam.peak_rss_mb()
    for invocation in runs:
        if invocation.outcome != "response" or invocation.timed_out:
            raise SystemExit(f"{label}: invocation failed: {invocation}\n{lam.output.decode()}")
    if fake is not None:
        arrived = [r for r in fake.runs() if r.complete and len(r.history) == 10]
        if len(arrived) != len(runs):
            raise SystemExit(f"{label}: {len(arrived)} of {len(runs)} runs arrived whole")
    cold, warm = runs[0], runs[1:]
    after = [inv.ended_at - inv.responded_at for inv in warm]  # type: ignore[operator]
    return [
        label,
        f"{cold.response_latency * 1000:.1f} ms",
        spread([inv.response_latency for inv in warm]),
        spread(after),
        f"{peak:.0f} MiB",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invocations", type=int, default=10, help="warm invocations per case")
    args = parser.parse_args()
    rows = [["W&B", "cold response", "warm response", "after response", "peak RSS"]]
    rows.append(measure("none (offline)", args.invocations, None))
    for latency in (0.0, 0.5):
        with FakeWandb() as fake:
            fake.latency = latency
            rows.append(measure(f"fake, {latency * 1000:.0f} ms/request", args.invocations, fake))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
