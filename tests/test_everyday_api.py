"""The everyday wandb API, ours against the official SDK: one script body runs under
``import wandb`` and under ``import wandb_nexus as wandb`` against the same strict fake W&B
server, and what the fake holds from each is compared semantically (see `view`).

Covered: the W&B quickstart (login, Settings, module-level config and summary,
define_metric, alert, save, settable name/tags/notes), the same run kept offline and uploaded
by the official ``wandb sync``, resume across processes (online, and offline with our sync),
bad input to the new API, and runs that start at the same moment."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import wandb_nexus

import wandb_log
from conftest import run_records, sync_command
from fake_wandb import FakeWandb, RunState, run_isolated, wandb_env, wandb_sync

needs_sdk = pytest.mark.skipif(
    importlib.util.find_spec("wandb") is None, reason="the official wandb SDK is not installed"
)

SDKS = {"official": "wandb", "nexus": "wandb_nexus"}

# The W&B quickstart as a new user writes it. argv: API key, project.
QUICKSTART = """
import argparse
import sys

key, project = sys.argv[1], sys.argv[2]
wandb.login(key=key)
run = wandb.init(
    project=project,
    config={"lr": 0.1, "layers": [64, 32]},
    settings=wandb.Settings(run_tags=("a",), run_group="g", run_job_type="train"),
)
wandb.config.update({"b": 2})
try:
    wandb.config.update({"b": 5})  # a changed value needs allow_val_change
except Exception:
    print("changing b was refused")
wandb.config.update({"b": 3}, allow_val_change=True)
wandb.config.setdefaults({"lr": 0.5, "c": 3})
wandb.config.update(argparse.Namespace(d=4))
wandb.define_metric("epoch")
wandb.define_metric("val/loss", step_metric="epoch", summary="min")
wandb.define_metric("acc", summary="max,mean")
print("training starts")
for epoch in range(5):
    wandb.log({"acc": epoch / 10, "train/loss": 1 / (epoch + 1)})
    wandb.log({"val/loss": 2 / (epoch + 1), "epoch": epoch})
print("at step", run.step)
wandb.summary["best"] = 1
run.name = "renamed"
run.tags = ("x", "y")
run.notes = "n"
wandb.alert(title="Hi", text="t", level=wandb.AlertLevel.WARN, wait_duration=300)
with open("a.txt", "w") as f:
    f.write("now")
with open("b.txt", "w") as f:
    f.write("end")
wandb.save("a.txt", policy="now")
wandb.save("b.txt", policy="end")
wandb.finish()
"""

# A run in two processes. argv: project, "first" (3 rows, config, tags, notes, a summary
# value) or "second" (resume="allow", 2 rows, more config).
RESUMED = """
import sys

project, part = sys.argv[1], sys.argv[2]
if part == "first":
    run = wandb.init(project=project, id="resume-x", config={"a": 1}, tags=["t1"], notes="first")
    rows = [{"i": i, "first": True} for i in range(3)]
    run.summary["best"] = 7
else:
    run = wandb.init(project=project, id="resume-x", resume="allow", config={"b": 2})
    rows = [{"i": 10 + i} for i in range(2)]
for row in rows:
    run.log(row)
print(part, "process at step", run.step)
run.finish()
"""

# Two of ours at once in one directory. argv: run id.
CONCURRENT = """
import sys

import wandb_nexus as wandb

run = wandb.init(project="concurrent", id=sys.argv[1], mode="offline")
for i in range(2000):
    run.log({"i": i, "who": sys.argv[1]})
    if i % 500 == 0:
        print(sys.argv[1], "at", i)
run.finish()
"""

# Files only the official SDK uploads: requirements.txt (its pip freeze). Both upload
# config.yaml, wandb-summary.json, wandb-metadata.json and output.log, so nothing else is
# ignored; the contents of the run files are not compared (metadata differs by nature).
IGNORED_FILES = {"requirements.txt"}
USER_FILES = ("a.txt", "b.txt")

# Console lines as streamed: "[ERROR ]<UTC timestamp with microseconds> <text>".
CONSOLE_LINE = re.compile(r"(ERROR )?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6} (.*)", re.DOTALL)


# --------------------------------------------------------------------------- helpers


def run_script(
    fake: FakeWandb,
    home: Path,
    sdk: str,
    body: str,
    *args: str,
    env: dict[str, str] | None = None,
    with_key: bool = True,
) -> subprocess.CompletedProcess[str]:
    """`body` under the official SDK or ours (``import ... as wandb``), in a subprocess with
    HOME, WANDB_DIR and working directory `home`, talking to `fake`; it must succeed."""
    home.mkdir(parents=True, exist_ok=True)
    script = home / "script.py"
    script.write_text(f"import {SDKS[sdk]} as wandb\n{body}")
    environment = wandb_env(fake, home, env)
    if not with_key:  # so that wandb.login(key=...) is what counts
        del environment["WANDB_API_KEY"]
    result = run_isolated([sys.executable, str(script), *args], environment, 120, cwd=home)
    assert result.returncode == 0, f"{sdk}:\n{result.stdout}\n{result.stderr}"
    return result


def user_keys(data: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (data or {}).items() if not k.startswith("_")}


def metric_definitions(config: dict[str, Any]) -> set[str]:
    """`_wandb.m` (MetricRecords by field number) as a set, each entry's step_metric_index
    ("5", 1-based as wandb-core writes it: index + 1) replaced by the referenced metric's name
    and its flag lists sorted: the official SDK writes the entries in random order."""
    entries = config.get("_wandb", {}).get("m", [])
    names = [entry.get("1", entry.get("2")) for entry in entries]
    resolved = set()
    for entry in entries:
        entry = {k: sorted(v) if isinstance(v, list) else v for k, v in entry.items()}
        if "5" in entry:
            entry["5"] = names[entry["5"] - 1]
        resolved.add(json.dumps(entry, sort_keys=True))
    return resolved


def console_texts(state: RunState) -> list[str]:
    """Console lines without their timestamps (an "ERROR " prefix, for stderr, is kept)."""
    texts = []
    for line in state.console:
        match = CONSOLE_LINE.fullmatch(line)
        assert match, f"console line without a timestamp: {line!r}"
        texts.append((match[1] or "") + match[2])
    return texts


def view(state: RunState) -> dict[str, Any]:
    """What a user sees of a run, comparable across SDKs: history rows' user keys and
    `_step`s, the summary's user keys and `_step`, the config's user keys, the metric
    definitions, console texts, the files (names; contents of the user's own), alerts, the
    run's fields and how it ended. Timestamps, runtimes and telemetry are left out."""
    history = [{**user_keys(row), "_step": row.get("_step")} for row in state.history]
    summary = state.summary or {}
    return {
        "history": history,
        "summary": {**user_keys(summary), "_step": summary.get("_step")},
        "config": user_keys(state.config_values),
        "metrics": metric_definitions(state.config_values),
        "console": console_texts(state),
        "files": sorted(set(state.files) - IGNORED_FILES),
        "uploaded": sorted(set(state.uploaded) - IGNORED_FILES),
        "user_files": {name: state.files.get(name) for name in USER_FILES if name in state.files},
        "alerts": state.alerts,
        "fields": {
            "name": state.display_name,
            "tags": state.tags,
            "notes": state.notes,
            "group": state.group,
            "job_type": state.job_type,
        },
        "end": (state.complete, state.exitcode),
    }


def only_run(fake: FakeWandb, project: str) -> RunState:
    (state,) = [r for r in fake.runs() if r.project == project]
    return state


def snapshot(state: RunState) -> tuple[Any, ...]:
    return copy.deepcopy(
        (
            state.lines,
            len(state.upserts),
            state.config,
            state.tags,
            state.notes,
            state.display_name,
            state.files,
            state.uploaded,
            state.alerts,
        )
    )


# --------------------------------------------------------------------------- quickstart


@pytest.fixture(scope="module")
def quickstart_fake(tmp_path_factory: pytest.TempPathFactory):
    """One fake for the quickstart tests, already holding the official SDK's online run
    (project "quick-official")."""
    with FakeWandb() as fake:
        if importlib.util.find_spec("wandb") is not None:
            home = tmp_path_factory.mktemp("quick-official")
            run_script(
                fake, home, "official", QUICKSTART, fake.api_key, "quick-official", with_key=False
            )
        yield fake
    assert fake.internal_errors == []


def assert_quickstart_view(official: dict[str, Any]) -> None:
    """The official run holds what the script did, so that comparing with it means something."""
    assert [row["_step"] for row in official["history"]] == list(range(10))
    assert official["config"] == {"lr": 0.1, "layers": [64, 32], "b": 3, "c": 3, "d": 4}
    assert official["summary"]["best"] == 1
    assert official["summary"]["val/loss"] == {"min": 0.4}
    assert official["console"] == ["changing b was refused", "training starts", "at step 10"]
    assert official["fields"] == {
        "name": "renamed",
        "tags": ["x", "y"],
        "notes": "n",
        "group": "g",
        "job_type": "train",
    }
    assert official["alerts"] == [
        {"title": "Hi", "text": "t", "severity": "WARN", "wait_duration": 300000}
    ]
    assert official["user_files"] == {"a.txt": b"now", "b.txt": b"end"}
    # MetricRecord fields: 1 name, 5 step metric, 6 options (3: defined, 1: step_sync),
    # 7 summary (1: min, 2: max, 3: mean).
    assert official["metrics"] == {
        '{"1": "epoch", "6": [3], "7": []}',
        '{"1": "val/loss", "5": "epoch", "6": [1, 3], "7": [1]}',
        '{"1": "acc", "6": [3], "7": [2, 3]}',
    }
    assert official["end"] == (True, 0)


@needs_sdk
def test_quickstart_online_matches_the_official_sdk(
    quickstart_fake: FakeWandb, tmp_path: Path
) -> None:
    fake = quickstart_fake
    run_script(
        fake, tmp_path / "home", "nexus", QUICKSTART, fake.api_key, "quick-nexus", with_key=False
    )

    official = view(only_run(fake, "quick-official"))
    ours = view(only_run(fake, "quick-nexus"))
    assert_quickstart_view(official)
    assert ours == official


@needs_sdk
def test_quickstart_offline_then_official_sync_matches_the_official_online_run(
    quickstart_fake: FakeWandb, tmp_path: Path
) -> None:
    fake = quickstart_fake
    home = tmp_path / "home"
    requests_before = len(fake.requests)
    run_script(
        fake,
        home,
        "nexus",
        QUICKSTART,
        fake.api_key,
        "quick-offline",
        env={"WANDB_MODE": "offline"},
        with_key=False,
    )
    assert len(fake.requests) == requests_before  # offline: nothing was sent

    (run_dir,) = (home / "wandb").glob("offline-run-*")
    wandb_sync(run_dir, fake)

    official = view(only_run(fake, "quick-official"))
    ours = view(only_run(fake, "quick-offline"))
    assert_quickstart_view(official)
    assert ours == official


# --------------------------------------------------------------------------- resume


@needs_sdk
def test_resume_across_processes_matches_the_official_sdk(fake: FakeWandb, tmp_path: Path) -> None:
    for sdk in SDKS:
        home = tmp_path / sdk
        for part in ("first", "second"):
            run_script(fake, home, sdk, RESUMED, f"resume-{sdk}", part)

    official = view(only_run(fake, "resume-official"))
    ours = view(only_run(fake, "resume-nexus"))
    assert [(row["_step"], row["i"]) for row in official["history"]] == [
        (0, 0),
        (1, 1),
        (2, 2),
        (3, 10),
        (4, 11),
    ]
    assert official["console"] == ["first process at step 3", "second process at step 5"]
    assert official["config"] == {"a": 1, "b": 2}
    assert (official["fields"]["tags"], official["fields"]["notes"]) == (["t1"], "first")
    assert official["summary"] == {"best": 7, "first": True, "i": 11, "_step": 4}
    assert ours == official
    state = only_run(fake, "resume-nexus")
    assert state.name == "resume-x"

    # resume="must" on a run that does not exist: refused, and no run is created.
    with pytest.raises(wandb_nexus.UsageError, match="does not exist"):
        wandb_nexus.init(project="resume-nexus", id="missing-id", resume="must")
    assert wandb_nexus.run is None
    assert [r.name for r in fake.runs() if r.project == "resume-nexus"] == ["resume-x"]

    # resume="never" on the existing run: refused, and the run is left as it was.
    before = snapshot(state)
    with pytest.raises(wandb_nexus.UsageError, match="already exists"):
        wandb_nexus.init(project="resume-nexus", id="resume-x", resume="never")
    assert wandb_nexus.run is None
    assert snapshot(state) == before


@needs_sdk
def test_resume_offline_then_our_sync(fake: FakeWandb, tmp_path: Path) -> None:
    """Ours: two offline processes of one id, uploaded in order with our sync, make one run of
    5 rows, as the official SDK's two offline processes uploaded with `wandb sync` do."""
    offline = {"WANDB_MODE": "offline"}
    run_dirs: dict[str, list[Path]] = {}
    for sdk in SDKS:
        home = tmp_path / sdk
        run_dirs[sdk] = []
        for part in ("first", "second"):
            before = set((home / "wandb").glob("offline-run-*"))
            run_script(fake, home, sdk, RESUMED, f"offline-{sdk}", part, env=offline)
            (new,) = set((home / "wandb").glob("offline-run-*")) - before
            run_dirs[sdk].append(new)
    assert fake.runs() == []

    first, second = run_dirs["nexus"]
    assert first != second
    out = sync_command(str(first), str(second))
    assert out.stdout.count("synced to") == 2, out.stdout
    state = only_run(fake, "offline-nexus")
    assert [row["_step"] for row in state.history] == [0, 1, 2, 3, 4]
    assert [row["i"] for row in state.history] == [0, 1, 2, 10, 11]
    assert state.config_values["a"] == 1 and state.config_values["b"] == 2
    assert state.complete and state.exitcode == 0

    # Uploading again changes nothing.
    before = snapshot(state)
    again = sync_command(str(first), str(second))
    assert again.stdout.count("already synced") == 2, again.stdout
    assert snapshot(state) == before

    for run_dir in run_dirs["official"]:
        wandb_sync(run_dir, fake)
    official = view(only_run(fake, "offline-official"))
    assert [row["_step"] for row in official["history"]] == [0, 1, 2, 3, 4]
    assert view(state) == official


# --------------------------------------------------------------------------- bad input


def test_bad_input_to_the_everyday_api(
    fake: FakeWandb, monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    # A login that succeeded by mistake must not leak its key into later tests.
    monkeypatch.setattr(wandb_nexus._settings, "_login_key", None)
    monkeypatch.setattr(wandb_nexus._settings, "_login_host", None)

    with pytest.raises(wandb_nexus.UsageError):
        wandb_nexus.config["x"] = 1
    with pytest.raises(wandb_nexus.UsageError):
        wandb_nexus.summary["x"] = 1
    with pytest.raises(wandb_nexus.UsageError, match="bogus"):
        wandb_nexus.Settings(bogus=1)
    with pytest.raises(wandb_nexus.UsageError):
        wandb_nexus.init(settings=42)  # type: ignore[arg-type]
    with pytest.raises(wandb_nexus.UsageError):
        wandb_nexus.login(key=3)  # type: ignore[arg-type]
    assert wandb_nexus.run is None and not (clean_env / "wandb").exists()

    run = wandb_nexus.init(project="bad-input", mode="offline", name="kept", tags=["t"])
    run.log({"row": 1})
    run.config.update({"a": 1})

    with pytest.raises(wandb_nexus.UsageError):
        run.name = 3  # type: ignore[assignment]
    with pytest.raises(wandb_nexus.UsageError):
        run.tags = "abc"  # type: ignore[assignment]
    assert (run.name, run.tags) == ("kept", ("t",))
    with pytest.raises(wandb_nexus.UsageError, match="allow_val_change"):
        run.config.update({"a": 2})
    assert run.config["a"] == 1

    with pytest.raises(wandb_nexus.UsageError) as bad_level:
        wandb_nexus.alert(title="a", text="b", level="bogus")
    assert isinstance(bad_level.value, ValueError)
    with pytest.raises(TypeError):
        wandb_nexus.alert(title="a", text="b", wait_duration="5")  # type: ignore[arg-type]

    (clean_env / "in.txt").write_text("x")
    (clean_env / "sub").mkdir()
    (clean_env.parent / "outside.txt").write_text("x")
    with pytest.raises(wandb_nexus.UsageError):
        wandb_nexus.save("in.txt", base_path="sub")
    with pytest.raises(wandb_nexus.UsageError):
        wandb_nexus.save(str(clean_env.parent / "outside.txt"), base_path=".")
    with pytest.raises(wandb_nexus.UsageError):
        wandb_nexus.save("in.txt", policy="bogus")
    with pytest.warns(UserWarning, match="matched no files"):
        assert wandb_nexus.save("nothing-*.txt") == []

    # A key the server refuses: AuthenticationError, and the open run is untouched.
    with pytest.raises(wandb_nexus.AuthenticationError):
        wandb_nexus.login(key="bad" + "0" * 37, verify=True)
    assert [r.operation for r in fake.requests] == ["Viewer"]
    assert wandb_nexus.run is run
    run.log({"row": 2})
    run.finish()

    records = run_records(run)
    assert [row["row"] for row in wandb_log.history_rows(records)] == [1, 2]
    assert wandb_log.config(records)["a"] == 1
    assert "alert" not in wandb_log.kinds(records)
    assert not (Path(run.dir) / "in.txt").exists()


# --------------------------------------------------------------------------- same moment


def assert_complete_log(sync_dir: str | Path, run_id: str, rows: list[dict[str, Any]]) -> None:
    records = wandb_log.read_records(Path(sync_dir) / f"run-{run_id}.wandb")  # strict
    history = wandb_log.history_rows(records)
    assert [{k: v for k, v in row.items() if not k.startswith("_")} for row in history] == rows
    assert [row["_step"] for row in history] == list(range(len(rows)))
    assert records[-1].WhichOneof("record_type") == "exit"
    assert records[-1].exit.exit_code == 0


def test_runs_started_at_the_same_moment(clean_env: Path) -> None:
    # Two inits of one id within one second, in one process.
    time.sleep(1 - time.time() % 1)  # at the start of a second, so both fall in it
    first = wandb_nexus.init(project="same", id="same-id", mode="offline")
    second = wandb_nexus.init(project="same", id="same-id", mode="offline", reinit="create_new")
    assert first is not second and wandb_nexus.run is second
    first.log({"r": 1})
    second.log({"r": 2})
    second.finish()
    first.finish()
    assert first.sync_dir != second.sync_dir
    assert sorted(p.name for p in (clean_env / "wandb").iterdir()) == sorted(
        Path(d).name for d in (first.sync_dir, second.sync_dir)
    )
    assert_complete_log(first.sync_dir, "same-id", [{"r": 1}])
    assert_complete_log(second.sync_dir, "same-id", [{"r": 2}])

    # Two processes with different ids in one directory, at once.
    script = clean_env / "concurrent.py"
    script.write_text(CONCURRENT)
    env = {**os.environ, "WANDB_MODE": "offline"}
    procs = {
        run_id: subprocess.Popen(
            [sys.executable, str(script), run_id],
            cwd=clean_env,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for run_id in ("proc-a", "proc-b")
    }
    for proc in procs.values():
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
    for run_id in procs:
        (run_dir,) = (clean_env / "wandb").glob(f"offline-run-*-{run_id}")
        rows = [{"i": i, "who": run_id} for i in range(2000)]
        assert_complete_log(run_dir, run_id, rows)
        records = wandb_log.read_records(run_dir / f"run-{run_id}.wandb")
        printed = "".join(text for _, text in wandb_log.console(records))
        assert printed.splitlines() == [f"{run_id} at {i}" for i in range(0, 2000, 500)]
