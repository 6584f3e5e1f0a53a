"""Instructions per log() call, counted by valgrind's callgrind: a measure of log()'s cost
that this machine's timing noise does not move. Counts the calling thread and the writer
thread separately, as the difference between a run of N calls and a run of none. Ours is
imported from the layer that `bench/run.py` (or `scripts/build_layer.py`) built last, or from
the directory given with --site (an unpacked wheel of another commit, to compare).

    pipenv run python bench/log_instructions.py [--calls N] [--site DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from run import LAYER_SITE

SCRIPT = """
import sys
import wandb_nexus as wandb
assert wandb.__file__.startswith(sys.argv[3]), wandb.__file__
run = wandb.init(project="bench", dir=sys.argv[2])
log = run.log
for i in range(int(sys.argv[1])):
    log({"loss": 0.5, "accuracy": 0.25, "epoch": i})
run.finish()
"""


def thread_totals(calls: int, site: Path, work: Path) -> list[int]:
    """Instructions of each thread that ran more than a few thousand, in start order."""
    out = work / f"callgrind.{calls}"
    env = {**os.environ, "PYTHONPATH": str(site)}
    subprocess.run(
        ["valgrind", "--tool=callgrind", "--separate-threads=yes",
         f"--callgrind-out-file={out}",
         sys.executable, "-c", SCRIPT, str(calls), str(work), str(site)],
        check=True, capture_output=True, cwd=work, env=env,
    )  # fmt: skip
    totals = []
    for part in sorted(work.glob(f"callgrind.{calls}-*")):
        match = re.search(r"^summary: (\d+)", part.read_text(), re.M)
        if match and int(match.group(1)) > 100_000:
            totals.append(int(match.group(1)))
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--site", type=Path, default=LAYER_SITE)
    args = parser.parse_args()
    site = args.site.resolve()
    if not (site / "wandb_nexus").is_dir():
        raise SystemExit(f"no wandb_nexus in {site}: run scripts/build_layer.py first")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base, loaded = thread_totals(0, site, work), thread_totals(args.calls, site, work)
    # Thread 1 is Python's main thread, the caller; the writer is the busiest other thread.
    caller = (loaded[0] - base[0]) / args.calls
    writer = max(loaded[1:]) / args.calls
    print(f"log() of a 3-key dict, {args.calls:,} calls: caller {caller:,.0f} instructions per "
          f"call (Python's loop and dict included), writer {writer:,.0f} per row")  # fmt: skip


if __name__ == "__main__":
    main()
