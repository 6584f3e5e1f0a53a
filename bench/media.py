"""Rich data types: wandb-nexus against the official wandb SDK, side by side.

    pipenv run python bench/media.py [--repeats N]

Measures what the caller of `run.log` pays for an Image, a Table and a Histogram, and the CPU
and wall time of a whole run that logs 100 images, for ours and the official SDK (the version
pinned in the Pipfile). Every figure is the median (min-max) over repeats; each repeat runs
every measure in fresh processes, offline, ours then the official SDK's, one right after the
other (this machine has phases of minutes in which everything is 2-3x slower). Prints a table
and replaces the section between the markers `<!-- media:start -->` and `<!-- media:end -->`
in BENCHMARKS.md (appending it if they are absent), leaving the rest as it is. Nothing here
asserts a timing; but a measured run that fails, or whose media did not land (the files in
the run directory, one history row per log call), stops the benchmark with an error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# bench/run.py, beside this script: its figures, rows, table, runner and clean environment.
from run import (
    LAYER_SITE,
    PY,
    REPO,
    Figure,
    Row,
    environment,
    fresh_dir,
    machine,
    met,
    render,
    run_process,
    write_section,
)

sys.path.insert(0, str(REPO / "tests"))

import wandb_log

MODULES = ("wandb_nexus", "wandb")  # ours, the official SDK

IMAGE_CALLS, IMAGE_WARMUP = 50, 5
TABLE_CALLS, TABLE_WARMUP = 3, 1
HISTOGRAM_CALLS, HISTOGRAM_WARMUP = 5, 1
TABLE_ROWS = 10_000
HISTOGRAM_VALUES = 1_000_000
RUN_IMAGES = 100

# What every measured process logs, built before anything is timed. The table is a predictions
# table as a user would log one: id, the input text, the model's score and label, and whether
# it was right; its cells are Python values, as the user's code would have them.
DATA = """
import numpy as np
rng = np.random.default_rng(0)
arr = rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
"""

TABLE_DATA = """
COLUMNS = ["id", "input", "score", "label", "correct"]
LABELS = ["cat", "dog", "bird", "fish", "horse"]
truth = rng.integers(0, len(LABELS), {rows}).tolist()
guess = rng.integers(0, len(LABELS), {rows}).tolist()
scores = rng.random({rows}).tolist()
rows = [
    [i, f"sample {{i}}: a photo of a {{LABELS[t]}} in the field", scores[i], LABELS[g], g == t]
    for i, (t, g) in enumerate(zip(truth, guess))
]
"""

# Caller's time of construction + log, each call timed alone; the process prints the times of
# the calls after the warm-up as JSON (json is imported before the run: nothing timed pays).
CALLER = """
import json, os, time
{data}
import {module} as wandb
run = wandb.init(project="bench-media", dir=os.getcwd())
times = []
for i in range({warmup} + {calls}):
    t = time.perf_counter()
    run.log({{{key!r}: {construct}}})
    times.append(time.perf_counter() - t)
run.finish()
print(json.dumps(times[{warmup}:]))
"""

# A whole run: the process's wall time and CPU are measured by the benchmark around it; the
# process prints how long init() to the end of finish() took. The bare process does the same
# imports and builds the same array, without a run.
WHOLE_RUN = """
import os, time
{data}
import {module} as wandb
started = time.perf_counter()
run = wandb.init(project="bench-media", dir=os.getcwd())
for i in range({images}):
    run.log({{"img": wandb.Image(arr)}})
run.finish()
print(time.perf_counter() - started)
"""

BARE_RUN = """
{data}
print(0.0)
"""


def our_environment(home: Path, module: str | None) -> dict[str, str]:
    """A clean offline environment in `home`; ours from the Lambda layer when it is built."""
    env = environment(home)
    if module == "wandb_nexus" and LAYER_SITE.is_dir():
        env["PYTHONPATH"] = str(LAYER_SITE)
    return env


# --------------------------------------------------------------------------- checks


def run_files(home: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The run's files/ directory and its history rows, from its one transaction log."""
    # The official SDK also links wandb/latest-run to the run directory.
    logs = [log for log in home.glob("wandb/*/run-*.wandb") if not log.parent.is_symlink()]
    if len(logs) != 1:
        raise SystemExit(f"expected one transaction log under {home}, found {logs}")
    return logs[0].parent / "files", wandb_log.history_rows(wandb_log.read_records(logs[0]))


def check_rows(home: Path, rows: list[dict[str, Any]], key: str, kind: str, n: int) -> None:
    kinds = [
        row.get(key, {}).get("_type") if isinstance(row.get(key), dict) else None for row in rows
    ]
    if len(rows) != n or any(k != kind for k in kinds):
        raise SystemExit(f"{home}: expected {n} history rows with {key} of {kind}, got {kinds}")


def check_images(n: int) -> Callable[[Path], None]:
    def check(home: Path) -> None:
        files, rows = run_files(home)
        pngs = list((files / "media" / "images").glob("*.png"))
        if len(pngs) != n:
            raise SystemExit(f"{home}: {len(pngs)} PNGs in {files}/media/images, expected {n}")
        check_rows(home, rows, "img", "image-file", n)

    return check


def check_tables(n: int) -> Callable[[Path], None]:
    def check(home: Path) -> None:
        files, rows = run_files(home)
        tables = sorted((files / "media" / "table").glob("*.table.json"))
        if len(tables) != n:
            raise SystemExit(f"{home}: {len(tables)} tables in {files}/media/table, expected {n}")
        stored = json.loads(tables[-1].read_text())
        if (
            stored.get("columns") != ["id", "input", "score", "label", "correct"]
            or len(stored.get("data", [])) != TABLE_ROWS
        ):
            raise SystemExit(f"{tables[-1]}: not the {TABLE_ROWS}-row table logged")
        check_rows(home, rows, "tbl", "table-file", n)

    return check


def check_histograms(n: int) -> Callable[[Path], None]:
    def check(home: Path) -> None:
        _, rows = run_files(home)
        check_rows(home, rows, "hist", "histogram", n)
        counts = [sum(row["hist"].get("values", [])) for row in rows]
        if any(count != HISTOGRAM_VALUES for count in counts):
            raise SystemExit(f"{home}: histogram counts {counts}, expected {HISTOGRAM_VALUES}")

    return check


# --------------------------------------------------------------------------- runs


@dataclass
class Measured:
    wall: float  # s, the whole process, from this benchmark
    cpu: float  # s, user + system of the process and the children it waited for
    stdout: str


def measured_run(code: str, module: str | None, check: Callable[[Path], None]) -> Measured:
    """One process in a fresh directory, checked; its CPU is the difference of this process's
    RUSAGE_CHILDREN around it, which holds every waited-for descendant (the official SDK waits
    for its wandb-core process at exit, so that is counted too)."""
    home = fresh_dir()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sample = run_process([PY, "-c", code], our_environment(home, module), home, False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    check(home)
    shutil.rmtree(home)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measured(sample.wall, cpu, sample.stdout)


@dataclass
class CallerMeasure:
    """construction + run.log of one value, timed call by call in the calling thread."""

    label: str
    key: str
    construct: str
    data: str
    warmup: int
    calls: int
    check: Callable[[int], Callable[[Path], None]]
    target: float  # the largest ratio ours / official that meets the target

    def code(self, module: str) -> str:
        return CALLER.format(
            data=self.data,
            module=module,
            key=self.key,
            construct=self.construct,
            warmup=self.warmup,
            calls=self.calls,
        )

    def once(self, module: str) -> float:
        """The median call of one process."""
        result = measured_run(self.code(module), module, self.check(self.warmup + self.calls))
        times = json.loads(result.stdout.strip().splitlines()[-1])
        if len(times) != self.calls:
            raise SystemExit(f"{self.label} ({module}): {len(times)} times, expected {self.calls}")
        return statistics.median(times)


CALLER_MEASURES = [
    CallerMeasure(
        "Image 256x256x3 uint8: construction + log(), per call "
        f"(median of {IMAGE_CALLS} after {IMAGE_WARMUP})",
        "img",
        "wandb.Image(arr)",
        DATA,
        IMAGE_WARMUP,
        IMAGE_CALLS,
        check_images,
        0.05,
    ),
    CallerMeasure(
        f"Table {TABLE_ROWS:,} rows x 5 columns: construction + log(), per call "
        f"(median of {TABLE_CALLS} after {TABLE_WARMUP})",
        "tbl",
        "wandb.Table(columns=COLUMNS, data=rows)",
        DATA + TABLE_DATA.format(rows=TABLE_ROWS),
        TABLE_WARMUP,
        TABLE_CALLS,
        check_tables,
        0.05,
    ),
    CallerMeasure(
        f"Histogram of {HISTOGRAM_VALUES:,} float64: construction + log(), per call "
        f"(median of {HISTOGRAM_CALLS} after {HISTOGRAM_WARMUP})",
        "hist",
        "wandb.Histogram(x)",
        DATA + f"x = rng.normal(size={HISTOGRAM_VALUES})\n",
        HISTOGRAM_WARMUP,
        HISTOGRAM_CALLS,
        check_histograms,
        0.5,
    ),
]


def measure(repeats: int) -> list[Row]:
    caller: dict[str, dict[str, list[float]]] = {
        m.label: {x: [] for x in MODULES} for m in CALLER_MEASURES
    }
    whole: dict[str, list[Measured]] = {name: [] for name in ("bare", *MODULES)}
    in_run: dict[str, list[float]] = {module: [] for module in MODULES}
    for repeat in range(repeats):
        started = time.perf_counter()
        for m in CALLER_MEASURES:
            for module in MODULES:
                caller[m.label][module].append(m.once(module))
        whole["bare"].append(measured_run(BARE_RUN.format(data=DATA), None, lambda home: None))
        for module in MODULES:
            code = WHOLE_RUN.format(data=DATA, module=module, images=RUN_IMAGES)
            result = measured_run(code, module, check_images(RUN_IMAGES))
            whole[module].append(result)
            in_run[module].append(float(result.stdout.split()[-1]))
        print(f"repeat {repeat + 1}/{repeats}: {time.perf_counter() - started:.1f} s", flush=True)

    rows = []
    for m in CALLER_MEASURES:
        ours, official = (milliseconds(caller[m.label][x]) for x in MODULES)
        ratio = ours.median / official.median
        rows.append(Row(m.label, ours, official, f"ratio ≤ {m.target:g}", met(ratio <= m.target)))
    tag = f"whole run (init, {RUN_IMAGES} x log(Image), finish)"
    ours, official = (milliseconds(in_run[x]) for x in MODULES)
    rows.append(Row(f"{tag}: init() to finish() returned, wall", ours, official))
    for field, label in (("wall", "process wall"), ("cpu", "process CPU user+sys, children")):
        ours, official = (milliseconds([getattr(r, field) for r in whole[x]]) for x in MODULES)
        rows.append(Row(f"{tag}: {label}", ours, official))
        bare = [getattr(b, field) for b in whole["bare"]]
        ours, official = (
            milliseconds([getattr(r, field) - b for r, b in zip(whole[x], bare, strict=True)])
            for x in MODULES
        )
        rows.append(Row(f"{tag}: {label}, over bare Python + numpy (paired)", ours, official))
        rows.append(
            Row(f"bare Python + numpy + the array: {label}", milliseconds(bare), milliseconds(bare))
        )
    return rows


def milliseconds(seconds: list[float]) -> Figure:
    return Figure(seconds, "ms", 1000)


# --------------------------------------------------------------------------- ours, as deployed

PROBE = """
import hashlib, pathlib, wandb_nexus
missing = [n for n in ("Image", "Table", "Histogram") if not hasattr(wandb_nexus, n)]
if missing:
    raise SystemExit(f"wandb_nexus lacks {missing}")
native = pathlib.Path(wandb_nexus._core.__file__)
print(wandb_nexus.__file__)
print(hashlib.sha256(native.read_bytes()).hexdigest())
"""


def our_module(attempts: int = 10, wait: float = 60) -> tuple[str, str]:
    """Where our processes import wandb_nexus from, and a digest of its native module. While
    the module cannot be imported or lacks the media types (it is being rebuilt), waits and
    tries again."""
    for attempt in range(attempts):
        home = fresh_dir()
        probe = subprocess.run(
            [PY, "-c", PROBE],
            env=our_environment(home, "wandb_nexus"),
            cwd=home,
            capture_output=True,
            text=True,
        )
        shutil.rmtree(home)
        if probe.returncode == 0:
            path, digest = probe.stdout.split()[-2:]
            if LAYER_SITE.is_dir() and not path.startswith(str(LAYER_SITE)):
                raise SystemExit(f"wandb_nexus came from {path}, not from the layer {LAYER_SITE}")
            return path, digest
        error = (probe.stderr.strip().splitlines() or ["?"])[-1]
        if attempt + 1 < attempts:
            print(f"wandb_nexus not usable ({error}); trying again in {wait:g} s", flush=True)
            time.sleep(wait)
    raise SystemExit(f"wandb_nexus not usable after {attempts} attempts: {error}")


def provenance(path: str) -> str:
    if LAYER_SITE.is_dir():
        return (
            f"Ours is measured as deployed: imported from the Lambda layer in "
            f"`{LAYER_SITE.relative_to(REPO)}` (built by `scripts/build_layer.py`)."
        )
    return (
        f"**Ours is not measured from the Lambda layer**: `{LAYER_SITE.relative_to(REPO)}` was not "
        f"built, so it is the installed package (`{Path(path).parent}`). Build the layer with "
        "`scripts/build_layer.py` to measure it as deployed."
    )


# --------------------------------------------------------------------------- report

NOTES = """\
- Each repeat runs every measure in fresh processes, offline (`WANDB_MODE=offline`,
  `WANDB_SILENT=true`, a new temporary directory as the working directory and `dir=`): ours,
  then the official SDK, one right after the other, then the next measure.
- Caller's time: `time.perf_counter()` around construction and `run.log()` of one value, e.g.
  `run.log({{"img": wandb.Image(arr)}})`, a fresh value each call; each process's median call
  after the warm-up calls, then the median (min-max) of these over the repeats. The image is
  a fixed random uint8 256x256x3 array; the table a predictions table of {rows:,} rows (id int,
  input str, score float, label str, correct bool); the histogram 1,000,000 float64 from a
  normal distribution, in 64 bins. Ours encodes images and tables on its writer thread, after
  `log()` returns, so their encoding is not in the caller's time; it is in the whole run's.
- Whole run: a process that imports numpy, builds the array, imports the SDK, runs `init()`,
  {images} x `run.log({{"img": wandb.Image(arr)}})` and `finish()`. Its wall time and its CPU
  (user + system, from this benchmark's `getrusage(RUSAGE_CHILDREN)` before and after it: the
  process and every descendant it waited for, which for the official SDK includes its
  wandb-core process) are taken by the benchmark; the process times `init()` to the end of
  `finish()` itself. "Over bare Python + numpy" subtracts, repeat by repeat, a process that
  only imports numpy and builds the array.
- Checks: after every measured run, its directory must hold one PNG per logged image in
  `files/media/images/`, one `.table.json` per logged table in `files/media/table/` (the last
  one holding all {rows:,} rows), and its transaction log one history row per `log()` call with
  the value's type (a histogram's counts summing to 1,000,000); otherwise the benchmark stops.
- Targets (the issue's): the caller's time of an image and of a table at least 20x below the
  official SDK's (ratio ≤ 0.05), of a histogram at least 2x (ratio ≤ 0.5).
"""


def section(rows: list[Row], repeats: int, path: str, changed: bool) -> str:
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    warning = (
        "\n**The native module changed while this ran** (it was being rebuilt): the figures "
        "may mix two builds.\n"
        if changed
        else ""
    )
    return f"""## Rich data types

Caller's cost of logging an Image, a Table and a Histogram, and a whole run logging images,
measured by `bench/media.py` (this section only; `--repeats N` to change the runs):

```bash
pipenv run python bench/media.py          # about 2 minutes with the default 5 repeats
```

- Date: {date}
- Machine: {machine()}
- Each figure: median (min-max) over {repeats} repeats; ratio = ours / official (below 1 is
  better for us).
- {provenance(path)} The official SDK is imported from the development environment.
{NOTES.format(rows=TABLE_ROWS, images=RUN_IMAGES)}{warning}
{render(rows)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="processes per figure")
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    started = time.perf_counter()
    path, digest = our_module()
    print(provenance(path), flush=True)
    rows = measure(args.repeats)
    changed = our_module(attempts=1)[1] != digest
    if changed:
        print("warning: the native module changed while this ran; figures may mix builds")
    table = render(rows)
    print(table)
    write_section(args.output, "media", section(rows, args.repeats, path, changed))
    print(f"wrote {args.output} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
