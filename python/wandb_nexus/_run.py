"""The Python face of a run: thin wrappers that hand everything to the native core."""

from __future__ import annotations

from . import _active, _core
from ._console import ConsoleCapture
from .errors import UsageError

# Typing-only imports: `typing` costs milliseconds at import, and annotations are lazy.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    import datetime
    import os
    from collections.abc import Iterator, Mapping, Sequence
    from types import TracebackType
    from typing import Any, Protocol

    from ._alert import AlertLevel
    from ._artifact import Artifact

    class _Log(Protocol):
        def __call__(
            self, data: dict[str, Any], step: int | None = None, commit: bool | None = None
        ) -> None: ...


__all__ = ["Config", "Run", "Summary", "config_mapping", "tag_list"]


def config_mapping(config: Mapping[str, Any] | argparse.Namespace | None) -> dict[str, Any]:
    """A config given as a mapping or an ``argparse.Namespace``, as a dict."""
    if config is None:
        return {}
    if type(config).__module__ == "argparse":  # argparse.Namespace, without importing argparse
        return dict(vars(config))
    if hasattr(config, "keys"):  # a mapping; collections.abc costs milliseconds to import
        return dict(config)
    from .errors import UnsupportedValueError

    raise UnsupportedValueError(
        f"config must be a dict or an argparse.Namespace, not {type(config).__name__}"
    )


def tag_list(tags: Sequence[str] | None) -> list[str] | None:
    if tags is None:
        return None
    if isinstance(tags, str):
        raise UsageError("tags must be a list of strings, not a single string")
    try:
        tags = list(tags)
    except TypeError:
        raise UsageError(f"tags must be a list of strings, not {type(tags).__name__}") from None
    bad = [tag for tag in tags if not isinstance(tag, str)]
    if bad:
        raise UsageError(f"tags must be strings; got {bad[0]!r}")
    return tags


def _strings(argument: str, items: Sequence[str] | None) -> list[str]:
    """A list of strings given as ``argument`` (a single string is one item, as in wandb)."""
    if items is None:
        return []
    if isinstance(items, str):
        return [items]
    try:
        found = list(items)
    except TypeError:
        raise UsageError(
            f"{argument} must be a list of strings, not {type(items).__name__}"
        ) from None
    bad = [item for item in found if not isinstance(item, str)]
    if bad:
        raise UsageError(f"{argument} must be strings; got {bad[0]!r}")
    return found


def _changes_a_value(current: Any, new: Any) -> bool:
    """Whether merging ``new`` into ``current`` changes a value already set: dicts merge, so
    adding keys to one changes nothing."""
    if isinstance(current, dict) and isinstance(new, dict):
        return any(k in current and _changes_a_value(current[k], v) for k, v in new.items())
    return bool(current != new)


def _text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise UsageError(f"run.{field} must be a string, not {type(value).__name__}")
    return value


def _warn_if(message: str | None) -> None:
    if message is not None:
        import warnings

        warnings.warn(message, stacklevel=3)


def _merge_into(target: dict[str, Any], changes: Mapping[str, Any]) -> None:
    """Dicts merge key by key into dicts already there, as the stored config does."""
    for key, value in changes.items():
        current = target.get(key)
        if isinstance(value, dict) and value and isinstance(current, dict):
            merged = dict(current)
            _merge_into(merged, value)
            target[key] = merged
        else:
            target[key] = value


class Config:
    """The run's configuration: a dict with attribute access. Updates are recorded at once."""

    __slots__ = ("_core", "_items")

    def __init__(self, core: _core.RunCore, items: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_core", core)
        object.__setattr__(self, "_items", dict(items))

    def update(
        self,
        data: Mapping[str, Any] | argparse.Namespace | None = None,
        allow_val_change: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """Adds or changes keys; nested dicts merge into what is there. ``data`` may also be
        an ``argparse.Namespace``. Changing the value of a key already set needs
        ``allow_val_change=True``, as in wandb."""
        changes = {**config_mapping(data), **kwargs}
        if not allow_val_change:
            self._refuse_changed_values(changes)
        if changes:
            self._core.config_update(changes)
            _merge_into(self._items, changes)

    def setdefaults(self, data: Mapping[str, Any] | argparse.Namespace) -> None:
        """Sets the keys of ``data`` that are not set yet; the others keep their values."""
        missing = {k: v for k, v in config_mapping(data).items() if k not in self._items}
        self.update(missing)

    def _refuse_changed_values(self, changes: Mapping[str, Any]) -> None:
        for key, value in changes.items():
            if key in self._items and _changes_a_value(self._items[key], value):
                raise UsageError(
                    f"Attempted to change value of key {key!r} from {self._items[key]!r} to "
                    f"{value!r}; pass allow_val_change=True to config.update() to do it"
                )

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value}, allow_val_change=True)

    def __setattr__(self, key: str, value: Any) -> None:
        self.update({key: value}, allow_val_change=True)

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self._items[key]
        except KeyError:
            raise AttributeError(f"config has no key {key!r}") from None

    def get(self, key: str, default: Any = None) -> Any:
        return self._items.get(key, default)

    def keys(self) -> Any:
        return self._items.keys()

    def items(self) -> Any:
        return self._items.items()

    def values(self) -> Any:
        return self._items.values()

    def as_dict(self) -> dict[str, Any]:
        return dict(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Config({self._items!r})"


class Summary:
    """The run's summary: the latest value of each logged metric, plus what you set here."""

    __slots__ = ("_core",)

    def __init__(self, core: _core.RunCore) -> None:
        object.__setattr__(self, "_core", core)

    def update(self, data: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """Sets keys; each value replaces what was there."""
        changes = {**(data or {}), **kwargs}
        if changes:
            self._core.summary_update(changes)

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __setattr__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __getitem__(self, key: str) -> Any:
        return self._core.summary_get(key)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._core.summary_get(key)
        except KeyError:
            raise AttributeError(f"summary has no key {key!r}") from None

    def __delitem__(self, key: str) -> None:
        self._core.summary_remove(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self._core.summary_get(key)
        except KeyError:
            return default

    def keys(self) -> list[str]:
        return self._core.summary_keys()

    def items(self) -> list[tuple[str, Any]]:
        return [(key, self._core.summary_get(key)) for key in self._core.summary_keys()]

    def __contains__(self, key: object) -> bool:
        return key in self._core.summary_keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self._core.summary_keys())

    def __len__(self) -> int:
        return len(self._core.summary_keys())

    def __repr__(self) -> str:
        return f"Summary({dict(self.items())!r})"


class Run:
    """A W&B run, as returned by :func:`wandb_nexus.init`."""

    log: _Log
    """``log(data, step=None, commit=None)`` logs a row of metrics, with wandb's step
    semantics. The native method itself: a Python wrapper around it cost a tenth of the call."""

    def __init__(
        self, core: _core.RunCore, config: Mapping[str, Any], capture_console: bool = True
    ) -> None:
        self._core = core
        self.log = core.log
        self.config = Config(core, config)
        self.summary = Summary(core)
        self._console = ConsoleCapture(core.output)
        if core.mode != "disabled" and capture_console:
            self._console.start()

    @property
    def id(self) -> str:
        return self._core.id

    @property
    def name(self) -> str | None:
        return self._core.name

    @name.setter
    def name(self, value: str) -> None:
        self._core.set_fields(name=_text("name", value))

    @property
    def notes(self) -> str | None:
        return self._core.notes

    @notes.setter
    def notes(self, value: str) -> None:
        self._core.set_fields(notes=_text("notes", value))

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self._core.tags)

    @tags.setter
    def tags(self, value: Sequence[str]) -> None:
        self._core.set_fields(tags=tag_list(value) or [])

    @property
    def group(self) -> str | None:
        return self._core.group

    @group.setter
    def group(self, value: str) -> None:
        self._core.set_fields(group=_text("group", value))

    @property
    def job_type(self) -> str | None:
        return self._core.job_type

    @job_type.setter
    def job_type(self, value: str) -> None:
        self._core.set_fields(job_type=_text("job_type", value))

    @property
    def entity(self) -> str | None:
        return self._core.entity

    @property
    def project(self) -> str | None:
        return self._core.project

    @property
    def mode(self) -> str:
        return self._core.mode

    @property
    def offline(self) -> bool:
        return self._core.mode != "online"

    @property
    def path(self) -> str:
        return "/".join(part or "" for part in (self.entity, self.project, self.id))

    @property
    def url(self) -> str | None:
        """The run's page in the W&B UI; None for a run kept offline."""
        return self._core.url

    @property
    def stopped(self) -> bool:
        """True once the run was stopped from the W&B UI."""
        return self._core.stopped

    @property
    def dir(self) -> str | None:
        """The run's files directory (config.yaml, output.log, ...), as in wandb."""
        sync_dir = self._core.sync_dir
        return None if sync_dir is None else f"{sync_dir}/files"

    @property
    def sync_dir(self) -> str | None:
        """The run directory that ``wandb sync`` uploads."""
        return self._core.sync_dir

    @property
    def step(self) -> int:
        return self._core.step

    @property
    def finished(self) -> bool:
        return self._core.finished

    def define_metric(
        self,
        name: str,
        step_metric: str | None = None,
        summary: str | None = None,
        goal: str | None = None,
    ) -> None:
        """Sets how a metric is summarised (min, max, mean, first, last, best, none) and
        which metric is its x axis."""
        self._core.define_metric(name, step_metric, summary, goal)

    def alert(
        self,
        title: str,
        text: str,
        level: str | AlertLevel | None = None,
        wait_duration: float | datetime.timedelta | None = None,
    ) -> None:
        """Sends an alert (Slack or email, as set up in W&B): ``level`` INFO (default), WARN
        or ERROR; no repeat of the same title within ``wait_duration`` (seconds or a
        timedelta; default one minute). On Lambda it goes with the run, after the response."""
        from ._alert import alert_arguments

        self._core.alert(*alert_arguments(title, text, level, wait_duration))

    def save(
        self,
        glob_str: str | os.PathLike[str],
        base_path: str | os.PathLike[str] | None = None,
        policy: str = "live",
    ) -> list[str]:
        """Copies matching files into the run's files, to be uploaded: ``now`` at once,
        ``live`` as they change and at finish, ``end`` at finish. Returns the paths saved."""
        from ._save import save_files

        return save_files(self, glob_str, base_path, policy)

    def log_artifact(
        self,
        artifact_or_path: Artifact | str | os.PathLike[str],
        name: str | None = None,
        type: str | None = None,
        aliases: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
    ) -> Artifact:
        """Logs an artifact (or one made of a file, directory or URI, named
        ``run-<run id>-<basename>`` of type ``unspecified`` unless ``name``/``type`` say
        otherwise) as a new version, with ``aliases`` (``latest`` is always one) and
        ``tags``. It is uploaded with the run's data (on Lambda, after the response); from
        now on it no longer changes. Returns the artifact."""
        from ._artifact import artifact_of

        artifact = artifact_of(self.id, artifact_or_path, name, type)
        tag_list = _strings("tags", tags)
        artifact.aliases, client_id = self._core.log_artifact(
            artifact._core, _strings("aliases", aliases), tag_list
        )
        artifact.tags = list(dict.fromkeys(tag_list))
        artifact._logged_by = (self._core, client_id)
        return artifact

    def use_artifact(self, artifact_or_name: Artifact | str, type: str | None = None) -> Artifact:
        """The logged artifact version ``artifact_or_name`` names (``name``, ``name:alias``,
        ``name:v<N>``, with ``project/`` or ``entity/project/`` before it), of ``type`` if
        given, recorded as used by this run (its lineage on W&B). Reads W&B now; the run
        must be online (on Lambda a deferred run is)."""
        from ._artifact import Artifact

        if isinstance(artifact_or_name, Artifact):
            artifact_or_name = artifact_or_name.qualified_name
        if not isinstance(artifact_or_name, str):
            raise UsageError(
                f"use_artifact takes an artifact name, not {artifact_or_name.__class__.__name__}"
            )
        logged = self._core.use_artifact(artifact_or_name, type)
        return Artifact._used(logged, artifact_or_name)

    def flush(self) -> None:
        """Stores everything logged so far and, for a live run, sends it to W&B now (the
        row of the current step stays open, as in wandb). Warns if W&B could not be reached;
        the data then stays queued."""
        _warn_if(self._core.flush())

    async def flush_async(self) -> None:
        """:meth:`flush` for asyncio code: the event loop keeps running meanwhile."""
        _warn_if(await self._core.flush_async())

    def finish(self, exit_code: int | None = None) -> None:
        """Writes the rest of the run and closes it; exit_code 0 means success. Warns (and
        says how to sync it later) if a live run could not be fully delivered."""
        self._console.stop()
        try:
            undelivered = self._core.finish(0 if exit_code is None else exit_code)
        finally:
            _active.forget(self)
        _warn_if(undelivered)

    async def finish_async(self, exit_code: int | None = None) -> None:
        """:meth:`finish` for asyncio code: the event loop keeps running meanwhile."""
        self._console.stop()
        try:
            undelivered = await self._core.finish_async(0 if exit_code is None else exit_code)
        finally:
            _active.forget(self)
        _warn_if(undelivered)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)

    def __repr__(self) -> str:
        return f"<Run {self.path} mode={self.mode}>"
