"""Shared fixtures: every test gets a clean W&B environment, its own working directory and a
HOME it must not write to."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import wandb_nexus

import wandb_log

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A fresh cwd, no W&B or Lambda variables, and a read-only HOME."""
    for name in list(os.environ):
        if name.startswith(("WANDB_", "AWS_LAMBDA_", "AWS_EXECUTION_ENV", "NETRC")):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(stat.S_IRUSR | stat.S_IXUSR)
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield work
    while wandb_nexus.run is not None:
        wandb_nexus.run.finish()
    home.chmod(stat.S_IRWXU)


def run_records(run: wandb_nexus.Run) -> list:
    """The records of a finished run's transaction log."""
    assert run.sync_dir is not None
    return wandb_log.read_records(Path(run.sync_dir) / f"run-{run.id}.wandb")
