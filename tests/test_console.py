"""Console capture: stdout and stderr written during a run become the run's console output
(output_raw records and files/output.log), and still reach the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import wandb_nexus as wandb

import wandb_log
from conftest import run_records


def test_stdout_and_stderr_are_recorded(capsys) -> None:
    run = wandb.init()
    print("to stdout")
    print("to stderr", file=sys.stderr)
    sys.stdout.write("partial")
    sys.stdout.writelines([" line\n"])
    run.finish()
    print("after finish")
    captured = capsys.readouterr()
    assert "to stdout" in captured.out and "after finish" in captured.out
    assert "to stderr" in captured.err
    console = wandb_log.console(run_records(run))
    assert ("stdout", "to stdout") in console and ("stderr", "to stderr") in console
    assert "".join(text for stream, text in console if stream == "stdout") == (
        "to stdout\npartial line\n"
    )
    assert not any("after finish" in text for _, text in console)
    assert (Path(run.dir) / "output.log").read_text() == ("to stdout\nto stderr\npartial line\n")


def test_streams_are_restored_after_finish() -> None:
    before = (sys.stdout, sys.stderr)
    run = wandb.init()
    assert sys.stdout is not before[0]
    run.finish()
    assert (sys.stdout, sys.stderr) == before


def test_output_of_a_real_process(tmp_path: Path) -> None:
    script = (
        "import sys, wandb_nexus as wandb\n"
        "run = wandb.init()\n"
        "print('line one'); print('oops', file=sys.stderr)\n"
        "run.finish()\n"
        "print(run.sync_dir)\n"
    )
    # Offline as asked for: a run offline for want of a key would say so on stderr.
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert out.stdout.startswith("line one\n") and out.stderr == "oops\n"
    sync_dir = Path(out.stdout.strip().splitlines()[-1])
    records = wandb_log.read_records(next(sync_dir.glob("*.wandb")))
    assert wandb_log.console(records) == [
        ("stdout", "line one"),
        ("stdout", "\n"),
        ("stderr", "oops"),
        ("stderr", "\n"),
    ]
