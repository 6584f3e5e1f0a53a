"""Artifacts: wandb-nexus against the official wandb SDK, side by side.

    pipenv run python bench/artifacts.py [--repeats N]

Measures, for an artifact of 20 files of 5 MiB of random bytes (100 MiB, generated once per
benchmark run): `run.use_artifact(...).download(root)` in a fresh process with an empty cache
(its time, the process's wall time and peak memory), the same in a fresh process that shares
the first one's cache (a warm sandbox's cold start: its time and how many file GETs reached
the server), and `add_dir` + `run.log_artifact` + `finish()` of the same files. Both SDKs talk
to the fake W&B server of the tests (tests/fake_wandb.py), which runs in this benchmark's own
process and serves the stored files from memory. Every figure is the median (min-max) over
repeats; each repeat runs every measure in fresh processes with fresh homes and caches, ours
then the official SDK's, one right after the other (this machine has phases of minutes in
which everything is 2-3x slower). Prints a table and replaces the section between the markers
`<!-- artifacts:start -->` and `<!-- artifacts:end -->` in BENCHMARKS.md (appending it if they
are absent). Nothing here asserts a timing; but a measured run that fails, a download that is
not byte for byte the source, or a logged artifact the fake does not hold COMMITTED with every
file stops the benchmark with an error.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# bench/run.py, beside this script: its figures, rows, table, runner and report helpers.
from run import (
    LAYER_SITE,
    PY,
    REPO,
    Figure,
    Row,
    fresh_dir,
    machine,
    met,
    render,
    run_process,
    write_section,
)

sys.path.insert(0, str(REPO / "tests"))

from fake_wandb import FakeWandb, Request, wandb_env

MODULES = ("wandb_nexus", "wandb")  # ours, the official SDK

FILES = 20
FILE_SIZE = 5 << 20  # 5 MiB each, 100 MiB in all
PROJECT = "bench-artifacts"
DOWNLOADED = "bench-data"  # logged once (by the official SDK, untimed), downloaded by both
LOGGED = "bench-log"  # logged by the measured processes, each on a fresh fake

# An artifact file fetched from the fake: by its signed directUrl or on the API host.
FILE_GET = re.compile(r"/artifacts/\d+/files/.+|/artifactsV2/.+")

# Peak memory, read by the measured process itself once download() returned: the VmHWM (the
# kernel's high-water mark of resident memory) of this process, and of it and every descendant
# (the official SDK's wandb-core process) summed. Not ru_maxrss from the benchmark: at exec the
# kernel folds the parent's peak into the child's, and the parent here holds the fake's files.
PEAK = """
def peaks():
    def status(pid):
        with open(f"/proc/{pid}/status") as f:
            return dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)

    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            parents[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    tree, todo = [], [os.getpid()]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    kib = []
    for pid in tree:
        try:
            kib.append(int(status(pid).get("VmHWM", "0 kB").split()[0]))
        except (OSError, ValueError):
            pass
    return kib[0], sum(kib)
"""

# A process that uses the artifact and downloads it to argv[1]; prints the time of
# use_artifact() and of download(), and its peaks (KiB).
DOWNLOAD = """
import os, sys, time
import {module} as wandb
{peak}
root = sys.argv[1]
run = wandb.init(project="{project}")
started = time.perf_counter()
art = run.use_artifact("{name}:latest")
resolved = time.perf_counter()
art.download(root=root)
done = time.perf_counter()
own, tree = peaks()
run.finish()
print(resolved - started, done - resolved, own, tree)
"""

# A process that logs the files of argv[1] as an artifact; prints the time from the
# artifact's creation to the end of finish(), and of that until add_dir() returned.
LOG = """
import sys, time
import {module} as wandb
source = sys.argv[1]
run = wandb.init(project="{project}")
started = time.perf_counter()
art = wandb.Artifact("{name}", type="dataset")
art.add_dir(source)
added = time.perf_counter()
run.log_artifact(art)
run.finish()
print(time.perf_counter() - started, added - started)
"""


# --------------------------------------------------------------------------- the data


def make_source(root: Path) -> dict[str, str]:
    """FILES files of FILE_SIZE random bytes under `root`; returns their SHA-256 by path."""
    digests = {}
    for i in range(FILES):
        data = os.urandom(FILE_SIZE)
        name = f"shard-{i:02d}.bin"
        (root / name).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    return digests


def check_tree(root: Path, source: dict[str, str], what: str) -> None:
    """`root` holds exactly the source's files, byte for byte."""
    found = {}
    for parent, _, names in os.walk(root):
        for name in names:
            path = Path(parent) / name
            with path.open("rb") as f:
                found[path.relative_to(root).as_posix()] = hashlib.file_digest(
                    f, "sha256"
                ).hexdigest()
    if found != source:
        wrong = sorted(set(found) ^ set(source)) or sorted(
            p for p in source if found.get(p) != source[p]
        )
        raise SystemExit(f"{what}: {root} is not the source, byte for byte: {wrong[:5]}")


def check_logged(fake: FakeWandb, source: dict[str, str], what: str) -> None:
    """The fake holds the artifact COMMITTED, with every source file as uploaded."""
    versions = fake.artifacts(LOGGED)
    if len(versions) != 1 or versions[0].state != "COMMITTED":
        states = [(a.version, a.state) for a in versions]
        raise SystemExit(f"{what}: expected one COMMITTED {LOGGED}, the fake holds {states}")
    stored = {path: hashlib.sha256(data).hexdigest() for path, data in versions[0].files.items()}
    if stored != source:
        raise SystemExit(f"{what}: the committed files are not the source: {sorted(stored)[:5]}")


def quiet(fake: FakeWandb) -> FakeWandb:
    """The fake, without the traceback its HTTP server prints when a client that exits resets
    a kept-alive connection; any other error in a request's handling is still printed."""
    server = fake._server
    report = server.handle_error

    def handle_error(request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            report(request, client_address)

    server.handle_error = handle_error  # type: ignore[method-assign]
    return fake


def file_gets(requests: list[Request]) -> int:
    return sum(1 for r in requests if r.kind == "download" and FILE_GET.fullmatch(r.path))


# --------------------------------------------------------------------------- runs


def sdk_environment(fake: FakeWandb, home: Path, module: str, ours_from: str | None) -> dict:
    """Online against `fake`, everything (cache, staging, config, temporary files) under
    `home`; ours from the Lambda layer when `ours_from` is its directory."""
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    env = wandb_env(
        fake,
        home,
        {
            "WANDB_MODE": "online",
            "WANDB_CACHE_DIR": str(home / "cache"),
            "WANDB_DATA_DIR": str(home / "data"),
            "WANDB_CONFIG_DIR": str(home / "config"),
            "TMPDIR": str(home / "tmp"),
        },
    )
    env = {k: v for k, v in env.items() if not k.startswith("AWS_LAMBDA_")}
    env.pop("PYTHONPATH", None)
    if module == "wandb_nexus" and ours_from:
        env["PYTHONPATH"] = ours_from
    return env


@dataclass
class Download:
    resolve: float  # s, use_artifact() in the process
    download: float  # s, download() in the process
    wall: float  # s, the whole process, from this benchmark
    own_kib: float  # VmHWM of the Python process
    tree_kib: float  # VmHWM of it and its descendants, summed
    gets: int  # artifact file GETs that reached the fake


def download(
    fake: FakeWandb,
    module: str,
    home: Path,
    cache: Path,
    source: dict[str, str],
    ours_from: str | None,
    what: str,
) -> Download:
    env = sdk_environment(fake, home, module, ours_from)
    env["WANDB_CACHE_DIR"] = str(cache)
    root = home / "dl"
    code = DOWNLOAD.format(module=module, project=PROJECT, name=DOWNLOADED, peak=PEAK)
    first = len(fake.requests)
    sample = run_process([PY, "-c", code, str(root)], env, home, False)
    gets = file_gets(fake.requests[first:])
    check_tree(root, source, f"{what} ({module})")
    resolve, took, own, tree = (float(x) for x in sample.stdout.split()[-4:])
    return Download(resolve, took, sample.wall, own, tree, gets)


@dataclass
class Logged:
    inside: float  # s, Artifact() to the end of finish(), in the process
    added: float  # s, of which Artifact() and add_dir()
    wall: float  # s, the whole process
    commit: float  # s, the fake's own time answering CommitArtifact


def log(module: str, source_dir: Path, source: dict[str, str], ours_from: str | None) -> Logged:
    home = fresh_dir()
    with quiet(FakeWandb()) as fake:
        env = sdk_environment(fake, home, module, ours_from)
        code = LOG.format(module=module, project=PROJECT, name=LOGGED)
        sample = run_process([PY, "-c", code, str(source_dir)], env, home, False)
        check_logged(fake, source, f"log_artifact ({module})")
        if fake.internal_errors:
            raise SystemExit(f"the fake failed: {fake.internal_errors[0]}")
        commit = sum(
            (r.answered_at or r.received_at) - r.received_at
            for r in fake.requests
            if r.operation == "CommitArtifact"
        )
    shutil.rmtree(home)
    inside, added = (float(x) for x in sample.stdout.split()[-2:])
    return Logged(inside, added, sample.wall, commit)


def seed(fake: FakeWandb, source_dir: Path) -> None:
    """The downloaded artifact, logged once by the official SDK (untimed)."""
    home = fresh_dir()
    env = sdk_environment(fake, home, "wandb", None)
    code = LOG.format(module="wandb", project=PROJECT, name=DOWNLOADED)
    run_process([PY, "-c", code, str(source_dir)], env, home, False)
    shutil.rmtree(home)
    versions = fake.artifacts(DOWNLOADED)
    if len(versions) != 1 or versions[0].state != "COMMITTED":
        raise SystemExit(f"seeding: {DOWNLOADED} was not committed: {versions}")


@dataclass
class Repeat:
    cold: dict[str, Download]
    warm: dict[str, Download]
    logged: dict[str, Logged]


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def measure(repeats: int, ours_from: str | None) -> list[Repeat]:
    source_dir = fresh_dir()
    print(f"writing {FILES} x {FILE_SIZE >> 20} MiB of random bytes to {source_dir}", flush=True)
    source = make_source(source_dir)
    results = []
    with quiet(FakeWandb()) as fake:
        seed(fake, source_dir)
        for repeat in range(repeats):
            started = time.perf_counter()
            before = load()
            cold, warm, logged = {}, {}, {}
            homes = []
            for module in MODULES:
                home = fresh_dir()
                homes.append(home)
                cold[module] = download(
                    fake, module, home, home / "cache", source, ours_from, "cold download"
                )
            for module, first in zip(MODULES, list(homes), strict=True):
                home = fresh_dir()
                homes.append(home)
                warm[module] = download(
                    fake, module, home, first / "cache", source, ours_from, "warm download"
                )
            for home in homes:
                shutil.rmtree(home)
            for module in MODULES:
                logged[module] = log(module, source_dir, source, ours_from)
            if fake.internal_errors:
                raise SystemExit(f"the fake failed: {fake.internal_errors[0]}")
            del fake.requests[:]  # the next repeat counts its own
            results.append(Repeat(cold, warm, logged))
            ours, official = (cold[m] for m in MODULES)
            print(
                f"repeat {repeat + 1}/{repeats}: {time.perf_counter() - started:.1f} s "
                f"(load {before} -> {load()}); download() {ours.download:.3f} / "
                f"{official.download:.3f} s, peak {ours.tree_kib / 1024:.0f} / "
                f"{official.tree_kib / 1024:.0f} MiB, warm {warm[MODULES[0]].download:.3f} / "
                f"{warm[MODULES[1]].download:.3f} s ({warm[MODULES[0]].gets} / "
                f"{warm[MODULES[1]].gets} GETs), log {logged[MODULES[0]].inside:.3f} / "
                f"{logged[MODULES[1]].inside:.3f} s",
                flush=True,
            )
    shutil.rmtree(source_dir)
    return results


def rows(results: list[Repeat]) -> list[Row]:
    def fig(pick, unit: str, scale: float) -> tuple[Figure, Figure]:
        ours, official = (Figure([pick(r, m) for r in results], unit, scale) for m in MODULES)
        return ours, official

    size = f"{FILES} files x {FILE_SIZE >> 20} MiB"
    cold = f"download(), {size}, fresh process, empty cache"
    warm = f"second download(), fresh process sharing the first's cache, {size}"
    logged = f"log_artifact, {size}"
    table = []
    ours, official = fig(lambda r, m: r.cold[m].download, "ms", 1000)
    table.append(
        Row(
            f"{cold}: download() wall",
            ours,
            official,
            "≥ 3x faster (ratio ≤ 0.333)",
            met(ours.median / official.median <= 1 / 3),
        )
    )
    table.append(
        Row(
            f"{cold}: use_artifact() + download() wall",
            *fig(lambda r, m: r.cold[m].resolve + r.cold[m].download, "ms", 1000),
        )
    )
    table.append(
        Row(
            f"{cold}: process wall (import, init, use_artifact, download, finish)",
            *fig(lambda r, m: r.cold[m].wall, "ms", 1000),
        )
    )
    ours, official = fig(lambda r, m: r.cold[m].tree_kib, "MiB", 1 / 1024)
    table.append(
        Row(
            f"{cold}: peak RSS, the process and its descendants (VmHWM summed)",
            ours,
            official,
            "≤ a third (ratio ≤ 0.333)",
            met(ours.median / official.median <= 1 / 3),
        )
    )
    table.append(
        Row(
            f"{cold}: peak RSS, the Python process alone (VmHWM)",
            *fig(lambda r, m: r.cold[m].own_kib, "MiB", 1 / 1024),
        )
    )
    table.append(
        Row(f"{cold}: file GETs at the server", *fig(lambda r, m: r.cold[m].gets, "GETs", 1))
    )
    table.append(Row(f"{warm}: download() wall", *fig(lambda r, m: r.warm[m].download, "ms", 1000)))
    table.append(Row(f"{warm}: process wall", *fig(lambda r, m: r.warm[m].wall, "ms", 1000)))
    ours, official = fig(lambda r, m: r.warm[m].gets, "GETs", 1)
    table.append(
        Row(f"{warm}: file GETs at the server", ours, official, "0", met(ours.median == 0))
    )
    ours, official = fig(lambda r, m: r.logged[m].inside, "ms", 1000)
    table.append(
        Row(
            f"{logged}: Artifact() + add_dir() + log_artifact() + finish() wall",
            ours,
            official,
            "≥ 2x faster (ratio ≤ 0.5)",
            met(ours.median / official.median <= 0.5),
        )
    )
    table.append(
        Row(
            f"{logged}: of which Artifact() + add_dir() (staged copies, MD5)",
            *fig(lambda r, m: r.logged[m].added, "ms", 1000),
        )
    )
    table.append(
        Row(
            f"{logged}: of which log_artifact() + finish() (uploads, commit, the run's end)",
            *fig(lambda r, m: r.logged[m].inside - r.logged[m].added, "ms", 1000),
        )
    )
    table.append(
        Row(
            f"{logged}: the fake's own time answering CommitArtifact",
            *fig(lambda r, m: r.logged[m].commit, "ms", 1000),
        )
    )
    table.append(
        Row(
            f"{logged}: process wall (import, init, ..., finish)",
            *fig(lambda r, m: r.logged[m].wall, "ms", 1000),
        )
    )
    return table


# --------------------------------------------------------------------------- ours

PROBE = """
import hashlib, pathlib, wandb_nexus
if not hasattr(wandb_nexus, "Artifact"):
    raise SystemExit("wandb_nexus lacks Artifact")
native = pathlib.Path(wandb_nexus._core.__file__)
print(wandb_nexus.__file__)
print(hashlib.sha256(native.read_bytes()).hexdigest())
"""


def probe(pythonpath: str | None) -> tuple[str, str] | None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    home = fresh_dir()
    out = subprocess.run(
        [PY, "-c", PROBE], env=env, cwd=home, capture_output=True, text=True, check=False
    )
    shutil.rmtree(home)
    if out.returncode != 0:
        return None
    path, digest = out.stdout.split()[-2:]
    return path, digest


def our_module(attempts: int = 10, wait: float = 60) -> tuple[str | None, str, str]:
    """Where ours is imported from (the Lambda layer's directory, or None for the development
    install), the module's path and a digest of its native module. The layer is used when it
    has artifacts; while neither can be imported (a rebuild), waits and tries again."""
    for attempt in range(attempts):
        if LAYER_SITE.is_dir() and (found := probe(str(LAYER_SITE))):
            return str(LAYER_SITE), *found
        if found := probe(None):
            return None, *found
        if attempt + 1 < attempts:
            print(f"wandb_nexus with Artifact not importable; again in {wait:g} s", flush=True)
            time.sleep(wait)
    raise SystemExit(f"wandb_nexus with Artifact not importable after {attempts} attempts")


def provenance(ours_from: str | None, path: str) -> str:
    if ours_from:
        return (
            f"Ours is measured as deployed: imported from the Lambda layer in "
            f"`{LAYER_SITE.relative_to(REPO)}` (built by `scripts/build_layer.py`)."
        )
    where = Path(path).parent
    where = where.relative_to(REPO) if where.is_relative_to(REPO) else where
    return (
        f"**Ours is not measured from the Lambda layer**: the layer in "
        f"`{LAYER_SITE.relative_to(REPO)}` predates artifacts (or was not built), so ours is the "
        f"development install (`{where}`, its native module a release build by maturin). "
        "Rebuild the layer with `scripts/build_layer.py` to measure it as deployed."
    )


# --------------------------------------------------------------------------- report

NOTES = """\
- The artifact: {files} files of {mib} MiB of random bytes ({total} MiB), generated once per
  benchmark run. The downloaded version is logged once, untimed, by the official SDK on a fake
  W&B server (`tests/fake_wandb.py`, `latency` 0) that runs in this benchmark's own process
  and serves the stored files from memory over loopback HTTP; its Python server is part of
  every download's time, for both SDKs alike.
- Each repeat runs every measure in fresh processes (online against the fake, `HOME`, the
  working directory, `WANDB_CACHE_DIR`, `WANDB_DATA_DIR` and `TMPDIR` in a new temporary
  directory outside the checkout): ours, then the official SDK, one right after the other.
- Download, empty cache: a process imports the SDK, `init()`s a run, then
  `art = run.use_artifact("bench-data:latest")` and `art.download(root=...)`, and `finish()`.
  `time.perf_counter()` around `download()` alone (the row judged), and around
  `use_artifact()` + `download()`; the process wall time is taken by the benchmark. Peak RSS
  is read by the process itself once `download()` returned: the VmHWM (the kernel's high-water
  mark of resident memory) of the process, and that summed with every descendant's (the
  official SDK's wandb-core process; ours has none), which is at least the tree's peak at any
  one moment. Not the benchmark's `ru_maxrss` of the child: at exec the kernel folds the
  parent's peak into the child's, and the parent holds the fake's files. File GETs are the
  requests for artifact files (not the manifest) that reached the fake during the process.
- Second download: a fresh process with its own home and download directory but the first
  process's `WANDB_CACHE_DIR` (a Lambda sandbox's `/tmp` kept across a cold start), the same
  script.
- Log: a process `init()`s a run, then `Artifact("bench-log", type="dataset")`, `add_dir()` of
  the files, `run.log_artifact(art)` and `finish()`, timed from the `Artifact` to `finish()`
  returned, each time on a fresh fake. Both SDKs stage (copy) the files when added, their
  default policy.
- The fake is not free, and it shares the two cores with the SDK measured: it reads every
  uploaded file and checks its MD5 (uploads in parallel hash in parallel, as storage does), and
  at CommitArtifact checks each file's digest against the MD5 taken at its upload (the fake's
  time answering it is a row of its own, read from its request log). That part is the same for
  both SDKs and bounds from below what ours can gain on `log_artifact` here; the split of the
  time into `add_dir()` and the rest is timed in the process.
- Checks: every download directory must hold exactly the source's files, byte for byte
  (SHA-256), and after every logging process the fake must hold the artifact COMMITTED with
  every file as the source has it; otherwise the benchmark stops.
- Targets (the issue's): `download()` at least 3x faster than the official SDK's (ratio ≤
  0.333), its peak RSS at most a third of the official's, `log_artifact` (to `finish()`) at
  least 2x faster (ratio ≤ 0.5); the second download fetches nothing.
"""


def section(
    table: list[Row], repeats: int, ours_from: str | None, path: str, changed: bool, took: float
) -> str:
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    warning = (
        "\n**The native module changed while this ran** (it was being rebuilt): the figures "
        "may mix two builds.\n"
        if changed
        else ""
    )
    notes = NOTES.format(files=FILES, mib=FILE_SIZE >> 20, total=(FILES * FILE_SIZE) >> 20)
    return f"""## Artifacts

Downloading and logging an artifact of {FILES} files ({(FILES * FILE_SIZE) >> 20} MiB),
measured by `bench/artifacts.py` (this section only; `--repeats N` to change the runs):

```bash
pipenv run python bench/artifacts.py      # about {took:.0f} s with {repeats} repeats
```

- Date: {date}
- Machine: {machine()}
- Each figure: median (min-max) over {repeats} repeats; ratio = ours / official (below 1 is
  better for us).
- {provenance(ours_from, path)} The official SDK is imported from the development environment.
{notes}{warning}
{render(table)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="processes per figure")
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    started = time.perf_counter()
    ours_from, path, digest = our_module()
    print(provenance(ours_from, path), flush=True)
    results = measure(args.repeats, ours_from)
    changed = our_module(attempts=1)[2] != digest
    if changed:
        print("warning: the native module changed while this ran; figures may mix builds")
    table = rows(results)
    print(render(table))
    took = time.perf_counter() - started
    text = section(table, args.repeats, ours_from, path, changed, took)
    write_section(args.output, "artifacts", text)
    print(f"wrote {args.output} ({took:.0f} s)")


if __name__ == "__main__":
    main()
