"""wandb-nexus against the official wandb SDK, side by side, in one run on one machine.

    pipenv run python bench/run.py [--repeats N] [--official-log-steps N]

Prints a table and writes BENCHMARKS.md. Every figure is the median (min-max) over whole-process
runs, ours and the official SDK's (the version pinned in the Pipfile) from the same invocation.
Runs compared with each other are interleaved (bare Python, ours, official, then again), since
this machine has phases of minutes in which everything is 2-3x slower. Nothing here asserts a
timing; but a measured run that fails, or whose data does not arrive whole (every history row,
the summary, the exit), stops the benchmark with an error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import log_instructions  # bench/, beside this script

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import wandb_log  # noqa: E402
from fake_wandb import FakeWandb, Request  # noqa: E402

PY = sys.executable
BUILD = REPO / "build" / "bench"
HOST_ARCH = {"x86_64": "x86_64", "aarch64": "arm64"}[platform.machine()]
LAYER_SITE = REPO / "build" / f"layer-{HOST_ARCH}" / "python"
PLATFORM_TAGS = ("manylinux_2_28", "manylinux_2_17", "manylinux2014")
MODULES = ("wandb_nexus", "wandb")  # ours, the official SDK

# The reference run of the issue: init with config, 10 log calls of 3 keys, a summary value.
# It prints when finish() started and how long it took, without importing json: the
# measured process should not pay for the measurement (json costs 1-2 ms to import).
REFERENCE_RUN = """
import time
import {module} as wandb
run = wandb.init(project="bench", config={{"lr": 0.01, "epochs": 10}})
for i in range(10):
    run.log({{"loss": 1 / (i + 1), "accuracy": i / 10, "epoch": i}})
run.summary["best_accuracy"] = 0.9
started = time.monotonic()
run.finish()
print(started, time.monotonic() - started)
"""

# log() cost: per-call time in 100 windows, to see whether it stays flat as the run grows.
# Before the run starts, the identical loop calls a function that does nothing, in the same
# process: what of the figure is Python's own loop, dict building and call. (Not between the
# windows: that would give the run's writer thread time to catch up that a real loop does not
# give it.)
LOG_COST = """
import json, statistics, sys, time
import {module} as wandb
steps = int(sys.argv[1])
window = max(steps // 100, 1)
def noop(data):
    pass
t = time.perf_counter()
for i in range(min(steps, 10_000)):
    noop({{"loss": 0.5, "accuracy": 0.25, "epoch": i}})
noop_time = (time.perf_counter() - t) / min(steps, 10_000)
run = wandb.init(project="bench")
log = run.log
times = []
for start in range(0, steps, window):
    t = time.perf_counter()
    for i in range(start, start + window):
        log({{"loss": 0.5, "accuracy": 0.25, "epoch": i}})
    times.append((time.perf_counter() - t) / window)
run.finish()
tenth = max(len(times) // 10, 1)
print(json.dumps({{
    "first": statistics.median(times[:tenth]),
    "last": statistics.median(times[-tenth:]),
    "mean": sum(times) / len(times),
    "noop": noop_time,
}}))
"""


@dataclass
class Sample:
    wall: float  # s
    peak_rss: float  # MiB, the process and its descendants together; 0 when not sampled
    stdout: str
    stderr: str


def process_tree_rss(root: int) -> tuple[float, float]:
    """Resident memory of `root` and all its descendants together, and the largest peak
    (VmHWM) of any one of them, in MiB. The official SDK runs its core in a separate process,
    so the whole tree counts; a process's own peak covers what happened between samples. (Not
    wait4's ru_maxrss: at exec the kernel folds the parent's peak into the child's, and
    `python -c pass` started from this process reported this process's 62 MiB.)"""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    peaks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(stat[stat.rindex(")") + 2 :].split()[1])
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss[pid] = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peaks[pid] = int(line.split()[1])
    total, peak, seen, todo = 0, 0, set(), [root]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += rss.get(pid, 0)
        peak = max(peak, peaks.get(pid, 0))
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return total / 1024, peak / 1024


def run_process(args: list[str], env: dict[str, str], cwd: Path, sample_rss: bool) -> Sample:
    """One run, timed. With `sample_rss`, a thread here walks /proc every 2 ms for the peak RSS;
    that competes with the run for this machine's 2 cores (it slowed our reference run by a
    median 3-10 ms), so the wall time of such a run is not reported."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        args,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, *process_tree_rss(proc.pid))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    if sample_rss:
        sampler.start()
    stdout, stderr = proc.communicate(timeout=1800)
    wall = time.perf_counter() - started
    done.set()
    if sample_rss:
        sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"benchmark run failed ({args}):\n{stderr}")
    return Sample(wall, peak, stdout, stderr)


def environment(
    home: Path, module: str | None = None, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """A clean environment in `home`. Ours is imported from the Lambda layer built from the
    current sources (what users deploy, bytecode included), not from the development
    install."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "AWS_LAMBDA_"))}
    env.update(HOME=str(home), WANDB_DIR=str(home), WANDB_SILENT="true", WANDB_MODE="offline")
    if module == "wandb_nexus":
        env["PYTHONPATH"] = str(LAYER_SITE)
    env.update(extra or {})
    return env


def fresh_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="wandb-nexus-bench-"))


@dataclass
class Figure:
    values: list[float]
    unit: str
    scale: float = 1.0

    @property
    def median(self) -> float:
        return statistics.median(self.values) * self.scale

    def __str__(self) -> str:
        lo, hi = min(self.values) * self.scale, max(self.values) * self.scale
        if lo == hi:
            return f"{self.median:.4g} {self.unit}"
        dash = " to " if lo < 0 else "-"  # a paired difference can be negative
        return f"{self.median:.4g} {self.unit} ({lo:.4g}{dash}{hi:.4g})"


@dataclass
class Row:
    measure: str
    ours: Figure | str
    official: Figure | str
    target: str = ""
    met: str = ""

    def ratio(self) -> str:
        if isinstance(self.ours, Figure) and isinstance(self.official, Figure):
            if self.official.median:
                return f"{self.ours.median / self.official.median:.3g}"
        return ""


# --------------------------------------------------------------------------- measures


def check_offline_run(root: Path, rows: int = 10) -> None:
    """The run under `root` was stored whole: every row, the summary value, the exit."""
    # The official SDK also links wandb/latest-run to the run directory.
    logs = [log for log in root.glob("wandb/*/run-*.wandb") if not log.parent.is_symlink()]
    if len(logs) != 1:
        raise SystemExit(f"expected one transaction log under {root}, found {logs}")
    records = wandb_log.read_records(logs[0])
    history = wandb_log.history_rows(records)
    if len(history) != rows:
        raise SystemExit(f"{logs[0]}: {len(history)} history rows, expected {rows}")
    if "exit" not in wandb_log.kinds(records):
        raise SystemExit(f"{logs[0]}: no exit record")


@dataclass
class Contender:
    """A program a measure runs: `module` (ours is imported from the layer) or bare Python,
    and the check of the data its run must have stored."""

    name: str
    args: list[str]
    module: str | None = None
    check: Callable[[Path], None] | None = None

    def run(self, sample_rss: bool) -> Sample:
        home = fresh_dir()
        sample = run_process(self.args, environment(home, self.module), home, sample_rss)
        if self.check:
            self.check(home)
        shutil.rmtree(home)
        return sample


Runs = dict[str, list[Sample]]  # by contender name, one sample per repeat


def rivals(
    command: Callable[[str], list[str]], check: Callable[[Path], None] | None = None
) -> list[Contender]:
    """Bare `python -c pass`, then ours and the official SDK each running `command(module)`."""
    bare = Contender("bare", [PY, "-c", "pass"])
    return [bare, *(Contender(module, command(module), module, check) for module in MODULES)]


def interleaved(contenders: list[Contender], repeats: int, rss: bool = False) -> Runs:
    """Each repeat runs every contender once, one right after another, so that a slow phase of
    the machine falls on all of them alike and one repeat's runs can be compared pairwise.
    With `rss`, each repeat then runs them all again with the RSS sampler, for the peak only:
    the wall times are from the runs without it."""
    runs: Runs = {contender.name: [] for contender in contenders}
    for _ in range(repeats):
        timed = [contender.run(sample_rss=False) for contender in contenders]
        sampled = [contender.run(sample_rss=True) for contender in contenders] if rss else timed
        for contender, sample, peak in zip(contenders, timed, sampled, strict=True):
            runs[contender.name].append(replace(sample, peak_rss=peak.peak_rss))
    return runs


UNITS = {"wall": ("ms", 1000), "peak_rss": ("MiB", 1.0)}
LABELS = {"wall": "wall", "peak_rss": "peak RSS"}


def figure(samples: list[Sample], field: str, bare: list[Sample] | None = None) -> Figure:
    """`field` of each run; with `bare`, minus that of the bare run of the same repeat."""
    values = [getattr(sample, field) for sample in samples]
    if bare is not None:
        values = [v - getattr(b, field) for v, b in zip(values, bare, strict=True)]
    unit, scale = UNITS[field]
    return Figure(values, unit, scale)


def absolute(measure: str, runs: Runs, field: str) -> Row:
    return Row(f"{measure}: {LABELS[field]}", *(figure(runs[m], field) for m in MODULES))


def over_bare(measure: str, runs: Runs, field: str, limit: float | None = None) -> Row:
    """Ours and the official SDK minus bare Python, repeat by repeat; `limit` is our target."""
    ours, official = (figure(runs[m], field, runs["bare"]) for m in MODULES)
    row = Row(f"{measure}: {LABELS[field]} over bare Python (paired)", ours, official)
    if limit is not None:
        row.target, row.met = f"≤ bare + {limit:g} {ours.unit}", met(ours.median <= limit)
    return row


def import_time(repeats: int) -> tuple[Runs, list[Figure]]:
    """Processes that only import the package, and -X importtime's cumulative time for it (in
    runs of their own, as it slows the import), ours then official's."""
    importtime = [
        Contender(f"{m} -X importtime", [PY, "-X", "importtime", "-c", f"import {m}"], m)
        for m in MODULES
    ]
    runs = interleaved(rivals(lambda m: [PY, "-c", f"import {m}"]) + importtime, repeats)
    cumulative = [
        Figure([cumulative_import(s, m) for s in runs[f"{m} -X importtime"]], "ms", 1000)
        for m in MODULES
    ]
    return runs, cumulative


def cumulative_import(sample: Sample, module: str) -> float:
    lines = [
        line.split("|") for line in sample.stderr.splitlines() if line.startswith("import time:")
    ]
    return next(int(c) for _, c, name in lines if name.strip() == module) / 1e6


def offline_reference(repeats: int) -> Runs:
    contenders = rivals(lambda m: [PY, "-c", REFERENCE_RUN.format(module=m)], check_offline_run)
    return interleaved(contenders, repeats, rss=True)


def log_cost(module: str, steps: int, repeats: int) -> tuple[Figure, Figure, Figure]:
    """Mean per-call cost, the last tenth of the run against the first (1.0 = flat), and the mean
    per-call cost of the same loop calling a no-op function."""
    contender = Contender(
        module,
        [PY, "-c", LOG_COST.format(module=module), str(steps)],
        module,
        lambda home: check_offline_run(home, rows=steps),
    )
    means, drift, noop = [], [], []
    for _ in range(repeats):
        result = json.loads(contender.run(sample_rss=False).stdout.strip().splitlines()[-1])
        means.append(result["mean"])
        drift.append(result["last"] / result["first"])
        noop.append(result["noop"])
    return Figure(means, "µs", 1e6), Figure(drift, "x"), Figure(noop, "µs", 1e6)


def round_trips(requests: list[Request]) -> int:
    """The longest chain of requests each sent after the previous one was answered."""
    depth: dict[int, int] = {}
    ordered = sorted(requests, key=lambda r: r.received_at)
    for i, request in enumerate(ordered):
        before = [
            depth[j]
            for j, earlier in enumerate(ordered[:i])
            if earlier.answered_at is not None and earlier.answered_at <= request.received_at
        ]
        depth[i] = 1 + max(before, default=0)
    return max(depth.values(), default=0)


def online_reference(module: str, latency: float, repeats: int) -> tuple[Figure, Figure, Figure]:
    """Requests made, sequential round trips during finish(), and finish()'s wall time."""
    counts, rounds, finish = [], [], []
    for _ in range(repeats):
        home = fresh_dir()
        with FakeWandb() as fake:
            fake.latency = latency
            env = environment(
                home,
                module,
                {
                    "WANDB_MODE": "online",
                    "WANDB_BASE_URL": fake.base_url,
                    "WANDB_API_KEY": fake.api_key,
                    "NO_PROXY": "127.0.0.1,localhost",
                },
            )
            code = REFERENCE_RUN.format(module=module)
            sample = run_process([PY, "-c", code], env, home, False)
            finish_started, finish_s = map(float, sample.stdout.split()[-2:])
            run = fake.single_run()
            if len(run.history) != 10 or not run.complete or run.exitcode != 0:
                raise SystemExit(f"{module}: the online run did not arrive whole: {run}")
            if run.summary.get("best_accuracy") != 0.9:
                raise SystemExit(f"{module}: the summary did not arrive: {run.summary}")
            in_finish = [r for r in fake.requests if r.received_at >= finish_started]
            counts.append(len(fake.requests))
            rounds.append(round_trips(in_finish))
            finish.append(finish_s)
        shutil.rmtree(home)
    return Figure(counts, "requests"), Figure(rounds, "rounds"), Figure(finish, "ms", 1000)


def handler_hello(repeats: int) -> Runs:
    # Without an API key ours is offline by itself; the official SDK is told by environment().
    scripts = {"wandb_nexus": REPO / "handler.py", "wandb": REPO / "bench" / "official_handler.py"}
    contenders = rivals(lambda m: [PY, str(scripts[m]), "hello"], check_offline_run)
    return interleaved(contenders, repeats, rss=True)


def instruction_counts(calls: int, official_calls: int) -> list[Row]:
    """log()'s cost in instructions (callgrind), which this machine's phases do not move: each
    the difference between a run of N calls and a run of none, checked like the timed runs.
    The official SDK makes fewer calls: a run of it takes 40-50 s under valgrind, most of it
    the 3.5 billion instructions of its import, which vary by a few million between runs."""
    figures = [
        log_instructions.per_call(kind, n, LAYER_SITE, check)
        for kind, n, check in (
            ("wandb_nexus", calls, check_offline_run),
            ("wandb", official_calls, check_offline_run),
            ("noop", calls, None),
        )
    ]
    (caller, writer), (official, official_others), (loop, _) = (
        [Figure([n], "k", 1e-3) for n in pair] for pair in figures
    )
    return [
        Row(
            f"log() instructions per call, calling thread (callgrind, {calls:,} calls; "
            f"official: {official_calls:,}, its wandb-core process not counted)",
            caller,
            official,
        ),
        Row(
            "log() instructions per row, writer thread (callgrind; official: its other "
            "Python threads)",
            writer,
            official_others,
        ),
        Row("Python loop + dict + no-op call: instructions per call (callgrind)", loop, loop),
    ]


def zip_sizes(zip_path: Path) -> tuple[float, float]:
    with zipfile.ZipFile(zip_path) as archive:
        unzipped = sum(info.file_size for info in archive.infolist())
    return zip_path.stat().st_size / 1e6, unzipped / 1e6


def official_layer(arch: str) -> Path:
    """The official SDK and its dependencies as a Lambda layer (python/ in a zip), for
    Lambda's python3.13 on `arch`, from PyPI wheels."""
    zip_path = BUILD / f"official-layer-{arch}.zip"
    if zip_path.exists():
        return zip_path
    target = BUILD / f"official-layer-{arch}" / "python"
    shutil.rmtree(target.parent, ignore_errors=True)
    machine = {"x86_64": "x86_64", "arm64": "aarch64"}[arch]
    version = next(
        line.split('"')[1].lstrip("=")
        for line in (REPO / "Pipfile").read_text().splitlines()
        if line.startswith("wandb =")
    )
    subprocess.run(
        [
            PY,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--target",
            str(target),
            "--no-compile",
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            "3.13",
            # Lambda's runtimes are manylinux_2_28 (Amazon Linux 2023) and accept older tags.
            *(f"--platform={tag}_{machine}" for tag in PLATFORM_TAGS),
            f"wandb=={version}",
        ],
        check=True,
    )
    shutil.make_archive(str(zip_path.with_suffix("")), "zip", target.parent, "python")
    return zip_path


def build_our_layers() -> None:
    subprocess.run([PY, str(REPO / "scripts" / "build_layer.py")], check=True)
    found = subprocess.run(
        [PY, "-c", "import wandb_nexus; print(wandb_nexus.__file__)"],
        env=environment(fresh_dir(), "wandb_nexus"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not found.startswith(str(LAYER_SITE)):
        raise SystemExit(f"wandb_nexus came from {found}, not from the layer in {LAYER_SITE}")


# --------------------------------------------------------------------------- report


class Rows(list[Row]):
    """The table so far; each row is printed as soon as it is measured."""

    def append(self, row: Row) -> None:
        print(f"{row.measure}: ours {row.ours}, official {row.official}", flush=True)
        super().append(row)


def measure(repeats: int, official_log_steps: int, reuse_layers: bool) -> list[Row]:
    if not reuse_layers:
        build_our_layers()
    rows = Rows()
    imports, (ours_imp, off_imp) = import_time(repeats)
    rows.append(
        Row(
            "import (-X importtime, cumulative)",
            ours_imp,
            off_imp,
            "≤ 5 ms",
            met(ours_imp.median <= 5),
        )
    )
    rows.append(Row("import, whole process", *(figure(imports[m], "wall") for m in MODULES)))
    rows.append(over_bare("import, whole process", imports, "wall"))
    reference = offline_reference(repeats)
    for field in ("wall", "peak_rss"):
        bare = figure(reference["bare"], field)
        rows.append(Row(f"bare `python -c pass`: {LABELS[field]}", bare, bare))
    rows.append(absolute("offline reference run", reference, "wall"))
    rows.append(over_bare("offline reference run", reference, "wall", limit=30))
    rows.append(absolute("offline reference run", reference, "peak_rss"))
    rows.append(over_bare("offline reference run", reference, "peak_rss", limit=15))
    for steps, official_steps in ((10_000, 10_000), (1_000_000, official_log_steps)):
        ours_cost, ours_drift, ours_noop = log_cost(
            "wandb_nexus", steps, repeats if steps <= 10_000 else 3
        )
        off_cost, off_drift, off_noop = log_cost(
            "wandb", official_steps, repeats if official_steps <= 10_000 else 1
        )
        label = f"{steps:,} steps" + (
            "" if official_steps == steps else f" (official: {official_steps:,})"
        )
        rows.append(
            Row(
                f"log() per call, {label}",
                ours_cost,
                off_cost,
                "≤ 2 µs",
                met(ours_cost.median <= 2),
            )
        )
        rows.append(Row(f"Python's own loop (no-op call), per call, {label}", ours_noop, off_noop))
        rows.append(
            Row(
                f"log() last/first tenth of the run, {label}",
                ours_drift,
                off_drift,
                "flat (≈1)",
                met(ours_drift.median <= 1.5),
            )
        )
    for row in instruction_counts(100_000, 1_000):
        rows.append(row)
    for latency in (0.0, 0.05):
        ours = online_reference("wandb_nexus", latency, repeats)
        official = online_reference("wandb", latency, repeats)
        tag = f"online, +{latency * 1000:.0f} ms/request"
        rows.append(
            Row(f"{tag}: HTTP requests", ours[0], official[0], "≤ 5", met(ours[0].median <= 5))
        )
        if latency:  # without latency, parallel requests answered at once look sequential
            rows.append(
                Row(
                    f"{tag}: round trips in finish()",
                    ours[1],
                    official[1],
                    "≤ 3",
                    met(ours[1].median <= 3),
                )
            )
        rows.append(Row(f"{tag}: finish() wall", ours[2], official[2]))
    for arch in ("x86_64", "arm64"):
        ours_zip, ours_unzipped = zip_sizes(REPO / "dist" / f"layer-{arch}.zip")
        off_zip, off_unzipped = zip_sizes(official_layer(arch))
        rows.append(
            Row(
                f"layer {arch}: zipped",
                Figure([ours_zip], "MB"),
                Figure([off_zip], "MB"),
                "≤ 5 MB",
                met(ours_zip <= 5),
            )
        )
        rows.append(
            Row(
                f"layer {arch}: unzipped",
                Figure([ours_unzipped], "MB"),
                Figure([off_unzipped], "MB"),
            )
        )
    hello = handler_hello(repeats)
    rows.append(absolute("`python handler.py hello` offline", hello, "wall"))
    rows.append(over_bare("`python handler.py hello` offline", hello, "wall"))
    rows.append(absolute("`python handler.py hello` offline", hello, "peak_rss"))
    return rows


def met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    import wandb

    return (
        f"{platform.system()} {platform.release()} {platform.machine()}, {cpu}, "
        f"{os.cpu_count()} cores; Python {platform.python_version()}; "
        f"official wandb {wandb.__version__}"
    )


def render(rows: list[Row]) -> str:
    header = ["measure", "wandb-nexus", "official wandb", "ratio", "target", "met"]
    table = [header, ["---"] * len(header)]
    table += [[r.measure, str(r.ours), str(r.official), r.ratio(), r.target, r.met] for r in rows]
    lines = ["| " + " | ".join(row) + " |" for row in table]
    return "\n".join(lines)


# Sections other scripts write into BENCHMARKS.md (bench/media.py, bench/lambda_latency.py,
# bench/artifacts.py), each between its markers; a run of this script keeps them.
SECTIONS = ("media", "lambda", "artifacts")


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def kept_sections(path: Path) -> str:
    """The other scripts' sections of the current file, each with a blank line before it."""
    current = path.read_text() if path.exists() else ""
    kept = ""
    for name in SECTIONS:
        start_marker, end_marker = markers(name)
        start, end = current.find(start_marker), current.find(end_marker)
        if 0 <= start < end:
            kept += "\n" + current[start : end + len(end_marker)] + "\n"
    return kept


def write_section(output: Path, name: str, text: str) -> None:
    """Puts `text` between the markers of section `name`, in place of what was there, or at
    the end; the rest of the file stays as it is."""
    start_marker, end_marker = markers(name)
    text = f"{start_marker}\n{text.strip()}\n{end_marker}"
    current = output.read_text() if output.exists() else ""
    start, end = current.find(start_marker), current.find(end_marker)
    if 0 <= start < end:
        updated = current[:start] + text + current[end + len(end_marker) :]
    else:
        updated = current + ("\n" if current and not current.endswith("\n") else "")
        updated += ("\n" if current else "") + text + "\n"
    output.write_text(updated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="whole-process runs per figure")
    parser.add_argument(
        "--official-log-steps",
        type=int,
        default=100_000,
        help="steps for the official SDK's long log() run (1,000,000 takes minutes)",
    )
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument(
        "--reuse-layers", action="store_true", help="measure the layers built last time"
    )
    args = parser.parse_args()
    BUILD.mkdir(parents=True, exist_ok=True)
    rows = measure(args.repeats, args.official_log_steps, args.reuse_layers)
    table = render(rows)
    print(table)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    template = (REPO / "bench" / "BENCHMARKS.template.md").read_text()
    text = template.format(date=date, machine=machine(), repeats=args.repeats, table=table)
    args.output.write_text(text + kept_sections(args.output))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
