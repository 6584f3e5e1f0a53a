"""The Python face of a run: thin wrappers that hand everything to the native core."""

from __future__ import annotations

from . import _active, _core
from ._console import ConsoleCapture

# Typing-only imports: `typing` costs milliseconds at import, and annotations are lazy.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from types import TracebackType
    from typing import Any, Protocol

    class _Log(Protocol):
        def __call__(
            self, data: dict[str, Any], step: int | None = None, commit: bool | None = None
        ) -> None: ...


__all__ = ["Config", "Run", "Summary"]


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

    def update(self, data: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """Adds or changes keys; nested dicts merge into what is there."""
        changes = {**(data or {}), **kwargs}
        if changes:
            self._core.config_update(changes)
            _merge_into(self._items, changes)

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __setattr__(self, key: str, value: Any) -> None:
        self.update({key: value})

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

    def __init__(self, core: _core.RunCore, config: Mapping[str, Any]) -> None:
        self._core = core
        self.log = core.log
        self.config = Config(core, config)
        self.summary = Summary(core)
        self._console = ConsoleCapture(core.output)
        if core.mode != "disabled":
            self._console.start()

    @property
    def id(self) -> str:
        return self._core.id

    @property
    def name(self) -> str | None:
        return self._core.name

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
