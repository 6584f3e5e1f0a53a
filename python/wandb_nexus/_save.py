"""``save()``: files linked into the run's ``files/`` directory and recorded for upload, as
``wandb.save`` does; imported on first use."""

from __future__ import annotations

import os

from .errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._run import Run

__all__ = ["save_files"]

_POLICIES = ("live", "now", "end")


def save_files(
    run: Run,
    glob_str: str | os.PathLike[str],
    base_path: str | os.PathLike[str] | None,
    policy: str,
) -> list[str]:
    """Links the files matching ``glob_str`` into ``run.dir`` under their paths relative to
    ``base_path`` (the working directory for a relative glob, the folder above the file's for
    an absolute one, as in wandb) and records each with its policy. Returns the linked
    paths."""
    import glob
    import warnings

    if policy not in _POLICIES:
        raise UsageError(f"save policy must be one of {', '.join(_POLICIES)}, not {policy!r}")
    if not isinstance(glob_str, str | os.PathLike) or not isinstance(
        base_path, str | os.PathLike | None
    ):
        raise UsageError("save() takes a path or glob (str or os.PathLike) and a base_path")
    pattern = os.path.abspath(os.fspath(glob_str))
    if base_path is None and os.path.isabs(os.fspath(glob_str)):
        # As wandb: an absolute path keeps its file's folder, under the run's files.
        base_path = os.path.dirname(os.path.dirname(pattern))
    elif base_path is None:
        base_path = "."
    base = os.path.abspath(os.fspath(base_path))
    relative = os.path.relpath(pattern, base)
    if relative == "." or relative == ".." or relative.startswith(".." + os.sep):
        raise UsageError(
            f"save({os.fspath(glob_str)!r}): the path must be inside base_path {base!r}"
        )
    if relative.startswith("*"):
        raise UsageError(f"save({os.fspath(glob_str)!r}): the glob may not start with '*'")
    files_dir = run.dir
    if files_dir is None:  # a disabled run keeps nothing
        return []
    linked = []
    for source in sorted(glob.glob(pattern)):
        if not os.path.isfile(source):
            continue
        target = os.path.join(files_dir, os.path.relpath(source, base))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target):
            os.unlink(target)
        os.symlink(os.path.abspath(source), target)
        linked.append(target)
    if not linked:
        warnings.warn(
            f"save({os.fspath(glob_str)!r}) matched no files; nothing was saved",
            stacklevel=3,
        )
        return []
    names = [os.path.relpath(target, files_dir).replace(os.sep, "/") for target in linked]
    run._core.save_files([(name, policy) for name in names])
    return linked
