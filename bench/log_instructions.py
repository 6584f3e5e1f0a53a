"""Instructions per log() call, counted by valgrind's callgrind: a measure of log()'s cost
that this machine's timing noise does not move. Counts the calling thread and the writer
thread separately, as the difference between a run of N calls and a run of none. Ours is
imported from the layer that `bench/run.py` (or `scripts/build_layer.py`) built last, or from
the directory given with --site (an unpacked wheel of another commit, to compare).
`bench/run.py` imports `per_call` for its table.

    pipenv run python bench/log_instructions.py [--calls N] [--site DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

# The same loop whatever `log` is: ours, the official SDK's, or a function that does nothing
# (what Python's own loop, dict building and call cost, to read the others against).
SCRIPT = """
import sys
calls, work, kind, site = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
if kind == "noop":
    def log(data):
        pass
else:
    wandb = __import__(kind)
    assert kind != "wandb_nexus" or wandb.__file__.startswith(site), wandb.__file__
    run = wandb.init(project="bench", dir=work)
    log = run.log
for i in range(calls):
    log({"loss": 0.5, "accuracy": 0.25, "epoch": i})
if kind != "noop":
    run.finish()
"""


def thread_totals(kind: str, calls: int, site: Path, work: Path) -> list[int]:
    """Instructions of each thread that ran more than a few thousand, in start order."""
    work = work / f"{kind}-{calls}"
    work.mkdir()
    out = work / "callgrind"
    # Offline, at home in `work`, and one hash seed for every run: the two runs then differ
    # only by the calls.
    env = {
        **os.environ,
        "HOME": str(work),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "PYTHONHASHSEED": "0",
    }
    if kind == "wandb_nexus":
        env["PYTHONPATH"] = str(site)
    # sys.executable, not a shim script: valgrind must start the interpreter itself. It does
    # not follow child processes, so the official SDK's wandb-core (Go) runs uncounted.
    subprocess.run(
        ["valgrind", "--tool=callgrind", "--separate-threads=yes",
         f"--callgrind-out-file={out}",
         sys.executable, "-c", SCRIPT, str(calls), str(work), kind, str(site)],
        check=True, capture_output=True, cwd=work, env=env,
    )  # fmt: skip
    totals = []
    for part in sorted(work.glob("callgrind-*")):
        match = re.search(r"^summary: (\d+)", part.read_text(), re.M)
        if match and int(match.group(1)) > 100_000:
            totals.append(int(match.group(1)))
    return totals


def per_call(
    kind: str,
    calls: int,
    site: Path,
    check: Callable[[Path, int], None] | None = None,
) -> tuple[float, float]:
    """Instructions per call of the calling thread, and of all the other threads of the process
    together (ours: the writer, per row), for `kind` = "wandb_nexus", "wandb" or "noop".
    `check(dir, rows)`, if given, is run on each run's directory: a run that lost rows must not
    give a figure."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base, loaded = (thread_totals(kind, n, site, work) for n in (0, calls))
        if check:
            check(work / f"{kind}-0", 0)
            check(work / f"{kind}-{calls}", calls)
    # Thread 1 is Python's main thread, the caller; the others may start in another order.
    return (loaded[0] - base[0]) / calls, (sum(loaded[1:]) - sum(base[1:])) / calls


def main() -> None:
    # Imported here: run.py imports this module.
    from run import LAYER_SITE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--site", type=Path, default=LAYER_SITE)
    args = parser.parse_args()
    site = args.site.resolve()
    if not (site / "wandb_nexus").is_dir():
        raise SystemExit(f"no wandb_nexus in {site}: run scripts/build_layer.py first")
    caller, writer = per_call("wandb_nexus", args.calls, site)
    print(f"log() of a 3-key dict, {args.calls:,} calls: caller {caller:,.0f} instructions per "
          f"call (Python's loop and dict included), writer {writer:,.0f} per row")  # fmt: skip


if __name__ == "__main__":
    main()
