"""Bad input: each case of the README's table "What bad input does", with what it does.

Cases covered elsewhere: NaN/Infinity, integers beyond 64 bits, non-string keys, nesting and
cycles (test_values.py); use after finish, finish twice, init while a run is active, bad
entity/project names (test_api.py); an unwritable directory (test_lambda_safe.py); a 10 MB
string and a million numbers online (test_faults.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import wandb_nexus as wandb

import wandb_log
from conftest import run_records


def logged_rows(run: wandb.Run) -> list[dict[str, Any]]:
    rows = wandb_log.history_rows(run_records(run))
    return [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]


def test_keys_with_slashes_and_dots_are_kept_as_given() -> None:
    run = wandb.init()
    run.log({"train/loss": 0.5, "a.b": 1, "a": {"b": 2}})
    run.finish()
    # "a.b" and {"a": {"b": ...}} are different keys in the log, as in wandb (the W&B UI
    # shows both as a.b); "/" only groups charts into sections.
    assert logged_rows(run) == [{"train/loss": 0.5, "a.b": 1, "a": {"b": 2}}]
    assert run.summary["a.b"] == 1 and run.summary["a"] == {"b": 2}


def test_a_ten_megabyte_string_is_stored_whole() -> None:
    text = "x" * 10_000_000
    run = wandb.init()
    run.log({"before": 1})
    run.log({"text": text})
    run.finish()
    assert logged_rows(run) == [{"before": 1}, {"text": text}]


def test_a_list_of_a_million_numbers_is_stored_whole() -> None:
    numbers = [i * 0.5 for i in range(1_000_000)]
    run = wandb.init()
    run.log({"numbers": numbers})
    run.finish()
    assert logged_rows(run) == [{"numbers": numbers}]


class RaisingRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr failed")


class RaisingFloat:
    def __float__(self) -> float:
        raise RuntimeError("float failed")


class RaisingIter:
    def __iter__(self) -> Any:
        raise RuntimeError("iter failed")


class FakeNumpy:
    """Looks like a numpy value (its module is numpy) but its tolist() raises."""

    __module__ = "numpy"

    def tolist(self) -> Any:
        raise RuntimeError("tolist failed")


@pytest.mark.parametrize(
    ("value", "type_name", "why"),
    [
        (RaisingRepr(), "RaisingRepr", "not a supported value type"),
        (RaisingFloat(), "RaisingFloat", "not a supported value type"),
        (RaisingIter(), "RaisingIter", "not a supported value type"),
        (FakeNumpy(), "", "tolist failed"),
        ("\ud800", "", "not valid text"),
    ],
    ids=["repr", "float", "iter", "tolist", "lone-surrogate"],
)
def test_values_whose_methods_raise_are_refused_and_keep_earlier_data(
    value: object, type_name: str, why: str
) -> None:
    run = wandb.init()
    run.log({"ok": 1})
    with pytest.raises(wandb.UnsupportedValueError, match=why) as refused:
        run.log({"ok": 2, "bad": {"inner": value}})
    assert "bad.inner" in str(refused.value) and type_name in str(refused.value)
    run.log({"ok": 3})
    run.finish()
    assert logged_rows(run) == [{"ok": 1}, {"ok": 3}]


def test_builtin_subclasses_with_raising_methods_are_read_as_their_base_type() -> None:
    class Number(float):
        def __float__(self) -> float:
            raise RuntimeError("float failed")

        def __repr__(self) -> str:
            raise RuntimeError("repr failed")

    class Items(list):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            raise RuntimeError("iter failed")

    class Mapping(dict):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            raise RuntimeError("iter failed")

        def items(self) -> Any:
            raise RuntimeError("items failed")

    run = wandb.init()
    run.log({"n": Number(1.5), "l": Items([1, 2]), "d": Mapping(x=1)})
    run.finish()
    assert logged_rows(run) == [{"n": 1.5, "l": [1, 2], "d": {"x": 1}}]


def test_key_whose_repr_raises_is_refused_clearly() -> None:
    class Key:
        def __repr__(self) -> str:
            raise RuntimeError("repr failed")

    run = wandb.init()
    with pytest.raises(wandb.UnsupportedValueError, match="keys must be strings, got Key"):
        run.log({Key(): 1})
    with pytest.raises(wandb.UnsupportedValueError, match="not valid text"):
        run.log({"\udfff": 1})
    run.finish()
    assert logged_rows(run) == []


@pytest.mark.parametrize(
    "base_url", ["not a url", "ftp://example.com", "http://", "https://exa mple.com", "mailto:x"]
)
def test_malformed_base_url_is_a_clear_error(
    base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", base_url)
    with pytest.raises(wandb.UsageError, match="WANDB_BASE_URL") as refused:
        wandb.init(project="p")
    assert "k" * 40 not in str(refused.value)
    assert wandb.run is None


# Runs in its own mount namespace with a 1 MiB tmpfs as the run's directory.
FULL_DISK_SCRIPT = textwrap.dedent(
    """
    import json, shutil, sys
    import wandb_nexus as wandb

    disk, kept = sys.argv[1], sys.argv[2]
    run = wandb.init(project="p", dir=disk)
    run.log({"row": 0})
    run.flush()  # this row is on disk before the disk fills
    errors = []
    for i in range(1, 400):
        run.log({"row": i, "padding": "x" * 8000})
    try:
        run.finish()
    except wandb.RunIOError as e:
        errors.append(str(e))
    shutil.copy(run.sync_dir + f"/run-{run.id}.wandb", kept)
    print(json.dumps({"errors": errors}))
    """
)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_a_full_disk_is_reported_and_keeps_what_was_written(tmp_path: Path) -> None:
    disk, kept = tmp_path / "disk", tmp_path / "kept.wandb"
    disk.mkdir()
    script = tmp_path / "fill.py"
    script.write_text(FULL_DISK_SCRIPT)
    shell = (
        f"mount -t tmpfs -o size=1m tmpfs {disk} && exec {sys.executable} {script} {disk} {kept}"
    )
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", shell],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    errors = json.loads(out.stdout)["errors"]
    assert len(errors) == 1 and "No space left on device" in errors[0], errors
    # What reached the disk reads back as whole records: rows 0, 1, 2, ... with no gap.
    rows = wandb_log.history_rows(wandb_log.read_records(kept, strict=False))
    assert [row["row"] for row in rows] == list(range(len(rows))) and len(rows) >= 1
