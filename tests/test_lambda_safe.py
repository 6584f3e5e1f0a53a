"""Lambda-safe from the start: nothing written outside the run's directory, the temporary
directory (/tmp on Lambda) as the root on Lambda or where the working directory is read-only,
HOME never touched, no child processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import wandb_nexus as wandb

import wandb_log

RUN_SCRIPT = (
    "import os, wandb_nexus as wandb\n"
    "run = wandb.init(config={'a': 1})\n"
    "run.log({'x': 1}); run.summary['y'] = 2\n"
    "run.finish()\n"
    "print(run.sync_dir)\n"
)


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_only_the_run_directory_is_written(clean_env: Path, tmp_path: Path) -> None:
    before = files_under(tmp_path)
    run = wandb.init()
    run.log({"x": 1})
    run.finish()
    created = files_under(tmp_path) - before
    sync_dir = Path(run.sync_dir)
    assert clean_env / "wandb" in created
    assert all(p == clean_env / "wandb" or sync_dir in (p, *p.parents) for p in created), created


def test_lambda_environment_uses_tmp(tmp_path: Path) -> None:
    code_dir = tmp_path / "task"
    code_dir.mkdir()
    tmp_root = tmp_path / "lambda-tmp"
    tmp_root.mkdir()
    env = {
        **os.environ,
        "AWS_LAMBDA_FUNCTION_NAME": "hello",
        "TMPDIR": str(tmp_root),
    }
    out = subprocess.run(
        [sys.executable, "-c", RUN_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        cwd=code_dir,
        env=env,
    )
    sync_dir = Path(out.stdout.strip())
    assert sync_dir.parent == tmp_root / "wandb"
    assert list(code_dir.iterdir()) == []


def test_read_only_working_directory_falls_back_to_tmp(tmp_path: Path) -> None:
    # A read-only bind mount, as Lambda's /var/task is: even root gets EROFS there.
    code_dir = tmp_path / "task"
    code_dir.mkdir()
    tmp_root = tmp_path / "tmp"
    tmp_root.mkdir()
    mount_read_only = (
        'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && cd "$0" && '
        'touch probe 2>/dev/null && exit 3; exec "$@"'
    )
    python_run = [sys.executable, "-c", RUN_SCRIPT]
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c", mount_read_only, str(code_dir), *python_run],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_root)},
    )
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).parent == tmp_root / "wandb"
    assert list(code_dir.iterdir()) == []


def test_unwritable_explicit_dir_is_a_clear_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")
    with pytest.raises(wandb.RunIOError, match=r"cannot create .*file\.txt/wandb"):
        wandb.init(dir=str(not_a_dir))
    with pytest.raises(OSError):
        wandb.init(dir="/proc/no-such-place")
    assert wandb.run is None


def test_home_is_never_written(clean_env: Path) -> None:
    home = Path(os.environ["HOME"])
    run = wandb.init()
    run.log({"x": 1})
    run.finish()
    assert list(home.iterdir()) == []


def test_no_child_processes_or_multiprocessing(tmp_path: Path) -> None:
    script = (
        "import os, sys, wandb_nexus as wandb\n"
        "run = wandb.init(); run.log({'x': 1})\n"
        "children = open(f'/proc/{os.getpid()}/task/{os.getpid()}/children').read().split()\n"
        "run.finish()\n"
        "print(len(children), 'multiprocessing' in sys.modules, 'subprocess' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.split() == ["0", "False", "False"]


def run_forking(script: str, cwd: Path) -> dict[str, list[str]]:
    """Runs a script that forks; its last lines each name a process and what it found."""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "Exception" not in out.stderr, out.stderr
    return {name: rest for name, *rest in map(str.split, out.stdout.strip().splitlines())}


def logged(run_dir: str, key: str) -> list[object]:
    records = wandb_log.read_records(next(Path(run_dir).glob("*.wandb")))
    assert "exit" in wandb_log.kinds(records)
    return [row[key] for row in wandb_log.history_rows(records)]


def test_forked_child_that_exits_normally_leaves_the_parents_run_alone(tmp_path: Path) -> None:
    """A child's exit handlers finish nothing of the parent's (once, its finish waited forever
    for a writer thread the child does not have), and an explicit finish there is refused."""
    script = (
        "import os, signal, sys, wandb_nexus as wandb\n"
        "parent = wandb.init(); parent.log({'p': 1})\n"
        "def child(body):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        signal.alarm(20)  # a hang fails the test instead of blocking it\n"
        "        body()\n"
        "    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])\n"
        "def exit_normally():\n"
        "    print('printed in the child')\n"
        "    sys.exit(0)\n"
        "def finish_the_parents_run():\n"
        "    try:\n"
        "        parent.finish()\n"
        "    except wandb.UsageError as e:\n"
        "        os._exit(0 if 'forked' in str(e) else 4)\n"
        "    os._exit(3)\n"
        "statuses = child(exit_normally), child(finish_the_parents_run)\n"
        "parent.log({'p': 2}); parent.finish()\n"
        "print('parent', parent.sync_dir, *statuses)\n"
    )
    parent_dir, *statuses = run_forking(script, tmp_path)["parent"]
    assert statuses == ["0", "0"]
    assert logged(parent_dir, "p") == [1, 2]


def test_forked_child_gets_its_own_writer_and_refuses_the_parents_run(tmp_path: Path) -> None:
    script = (
        "import os, signal, sys, wandb_nexus as wandb\n"
        "parent = wandb.init(); parent.log({'p': 1})\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    signal.alarm(20)  # a hang fails the test instead of blocking it\n"
        "    try:\n"
        "        parent.log({'p': 2})\n"
        "        os._exit(3)\n"
        "    except wandb.UsageError as e:\n"
        "        assert 'forked' in str(e), e\n"
        "    child = wandb.init(reinit='create_new'); child.log({'c': 1}); child.finish()\n"
        "    print('child', child.sync_dir, flush=True)\n"
        "    os._exit(0)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "parent.log({'p': 3}); parent.finish()\n"
        "print('parent', parent.sync_dir, os.waitstatus_to_exitcode(status))\n"
    )
    found = run_forking(script, tmp_path)
    parent_dir, child_status = found["parent"]
    assert child_status == "0"
    assert logged(parent_dir, "p") == [1, 3]
    assert logged(found["child"][0], "c") == [1]
