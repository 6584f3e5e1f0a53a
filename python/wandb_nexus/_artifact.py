"""W&B artifacts: versioned sets of files and references, logged by a run."""

from __future__ import annotations

from . import _core

TYPE_CHECKING = False
if TYPE_CHECKING:
    import os
    from collections.abc import Mapping
    from typing import IO, Any

__all__ = ["Artifact", "ArtifactManifestEntry"]


class ArtifactManifestEntry:
    """One file of an artifact: its path inside it, digest and size, and for a reference
    the URI it refers to (``ref``) with what else was recorded of it (``extra``)."""

    __slots__ = ("digest", "extra", "local_path", "path", "ref", "size")

    def __init__(
        self,
        path: str,
        digest: str,
        size: int | None,
        ref: str | None,
        local_path: str | None,
        extra: str | None,
    ) -> None:
        self.path = path
        self.digest = digest
        self.size = size
        self.ref = ref
        self.local_path = local_path
        if extra is None:
            self.extra: dict[str, Any] = {}
        else:
            import json

            self.extra = json.loads(extra)

    def __repr__(self) -> str:
        target = f", ref={self.ref!r}" if self.ref else ""
        return f"ArtifactManifestEntry(path={self.path!r}, digest={self.digest!r}{target})"


class Artifact:
    """A set of files and references to log as a new version of the artifact ``name``, of
    ``type``, as ``wandb.Artifact``: add files with :meth:`add_file`, :meth:`add_dir` or
    :meth:`new_file`, references with :meth:`add_reference`, then ``run.log_artifact(...)``.

    A file added with ``policy="mutable"`` (the default) is copied when added, so what is
    uploaded is the file as it was then; ``"immutable"`` promises it will not change and
    reads it where it is.

    ``run.use_artifact(...)`` returns a logged version instead: its ``version``, ``aliases``,
    ``metadata`` and so on as W&B has them, and :meth:`download` to get its files."""

    _logged: _core.LoggedArtifactCore | None = None
    # The name a logged version was asked for by.
    _name: str = ""
    # Once logged by a run: that run, and the client id it knows the artifact by.
    _logged_by: tuple[_core.RunCore, str] | None = None

    def __init__(
        self,
        name: str,
        type: str,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not isinstance(type, str):
            from .errors import UsageError

            raise UsageError("an artifact's name and type must be strings")
        self._core = _core.ArtifactCore(name, type, description, metadata)
        self.type = type
        self.description = description
        self.metadata: dict[str, Any] = dict(metadata or {})
        #: The aliases it was logged with (``latest`` among them); empty until logged.
        self.aliases: list[str] = []
        self.tags: list[str] = []

    @classmethod
    def _used(cls, logged: _core.LoggedArtifactCore, name: str) -> Artifact:
        """A logged version, as ``use_artifact(name)`` found it."""
        artifact = cls.__new__(cls)
        artifact._take(logged)
        asked = name.rsplit("/", 1)[-1]
        if ":" in asked:
            artifact._name = asked
        return artifact

    def _take(self, logged: _core.LoggedArtifactCore) -> None:
        """Becomes the logged version `logged`, named ``name:v<N>``."""
        import json

        self._logged = logged
        self._name = f"{logged.name}:{logged.version}"
        self.type = logged.type
        self.description = logged.description
        self.metadata = json.loads(logged.metadata) if logged.metadata else {}
        self.aliases = logged.aliases
        self.tags = logged.tags

    def wait(self, timeout: float | None = None) -> Artifact:
        """Once logged, waits until W&B holds this artifact (sending what the run logged
        now, within ``timeout`` seconds if given, if it was not sent yet) and returns it,
        now a logged version: its ``version``, ``id`` and ``aliases`` are W&B's. Raises
        if it could not be saved; an offline run's is saved when the run is synced."""
        if self._logged is not None:
            return self
        if self._logged_by is None:
            from .errors import UsageError

            raise UsageError(
                f"artifact {self.name!r} is not logged: wait() follows run.log_artifact()"
            )
        run, client_id = self._logged_by
        self._take(run.wait_artifact(client_id, self.name, timeout))
        return self

    @property
    def name(self) -> str:
        """Its name (for a logged version, as it was asked for: ``name:alias``)."""
        return self._name if self._logged is not None else self._draft.name

    @property
    def version(self) -> str | None:
        """``v<N>`` of a logged version; None for one not logged."""
        return None if self._logged is None else self._logged.version

    @property
    def id(self) -> str | None:
        return None if self._logged is None else self._logged.id

    @property
    def entity(self) -> str | None:
        return None if self._logged is None else self._logged.entity

    @property
    def project(self) -> str | None:
        return None if self._logged is None else self._logged.project

    @property
    def source_name(self) -> str:
        """``name:v<N>`` of a logged version."""
        if self._logged is None:
            return self.name
        return f"{self._logged.name}:{self._logged.version}"

    @property
    def qualified_name(self) -> str:
        """``entity/project/name`` of a logged version, its name as it was asked for."""
        return f"{self.entity}/{self.project}/{self.name}"

    @property
    def digest(self) -> str:
        """The digest W&B identifies this content by (hex MD5 over the entries)."""
        return self._draft.digest if self._logged is None else self._logged.digest

    @property
    def size(self) -> int:
        """The total size of its entries whose size is known, in bytes."""
        if self._logged is not None:
            return self._logged.size
        return sum(entry[2] or 0 for entry in self._draft.entries)

    @property
    def _draft(self) -> _core.ArtifactCore:
        """The artifact being put together; a logged version is not."""
        if self._logged is not None:
            from .errors import UsageError

            raise UsageError(f"artifact {self.name!r} is logged; it can no longer change")
        return self._core

    def download(self, root: str | os.PathLike[str] | None = None) -> str:
        """Downloads every file of this logged version into ``root`` (default:
        ``$WANDB_ARTIFACT_DIR``, else ``artifacts/`` where runs go, then ``<name>:v<N>``) and
        returns the directory. Files come once into a cache (``$WANDB_CACHE_DIR``, under
        ``/tmp`` on Lambda) checked against their digests; a second download, or one after a
        cold start in the same sandbox, fetches nothing and links them from there."""
        logged = self._require_logged("download")
        directory, _ = logged.download(None if root is None else _path(root))
        return directory

    def file(self, root: str | os.PathLike[str] | None = None) -> str:
        """Downloads a logged version of exactly one file; returns the file's path."""
        import os

        logged = self._require_logged("file")
        entries = logged.manifest()
        if len(entries) != 1:
            from .errors import UsageError

            raise UsageError(
                f"artifact {self.name!r} holds {len(entries)} files; file() is for one: "
                "use download()"
            )
        # As wandb: by default under the name it was used by (``name:alias``).
        directory, _ = logged.download(None if root is None else _path(root), self.name)
        return os.path.join(directory, entries[0][0])

    def _require_logged(self, action: str) -> _core.LoggedArtifactCore:
        if self._logged is None:
            from .errors import UsageError

            raise UsageError(
                f"artifact {self.name!r} is not a logged version: {action}() is for one "
                "from use_artifact()"
            )
        return self._logged

    def add_file(
        self,
        local_path: str | os.PathLike[str],
        name: str | None = None,
        is_tmp: bool = False,
        skip_cache: bool = False,
        policy: str = "mutable",
        overwrite: bool = False,
    ) -> ArtifactManifestEntry:
        """Adds one file, as ``name`` (default: its file name). ``is_tmp`` names it by its
        digest instead, so that temporary names never clash. ``skip_cache`` is accepted for
        compatibility: files are never cached when logged."""
        added = self._draft.add_file(_path(local_path), name, is_tmp, policy, overwrite)
        return ArtifactManifestEntry(*added)

    def add_dir(
        self,
        local_path: str | os.PathLike[str],
        name: str | None = None,
        skip_cache: bool = False,
        policy: str = "mutable",
    ) -> None:
        """Adds every file under a directory, by its path relative to it (under ``name``)."""
        self._draft.add_dir(_path(local_path), name, policy)

    def add_reference(
        self,
        uri: str,
        name: str | None = None,
        checksum: bool = True,
        max_objects: int | None = None,
    ) -> list[ArtifactManifestEntry]:
        """Adds what ``uri`` refers to without uploading it: ``s3://bucket/key`` (a prefix
        adds every object under it, up to ``max_objects``), ``http(s)://``, ``file://``, or
        any other URI given a ``name``. With ``checksum`` the object's ETag, size and version
        (or a local file's MD5) are recorded, read with the function's AWS credentials for
        S3; without it nothing is read."""
        if not isinstance(uri, str):
            from .errors import UsageError

            raise UsageError(f"add_reference takes a URI string, not {type(uri).__name__}")
        added = self._draft.add_reference(uri, name, checksum, max_objects)
        return [ArtifactManifestEntry(*entry) for entry in added]

    def new_file(self, name: str, mode: str = "x", encoding: str | None = None) -> _NewFile:
        """A file to write, added to the artifact as ``name`` when the ``with`` block ends."""
        return _NewFile(self, name, mode, encoding)

    def get_entry(self, name: str) -> ArtifactManifestEntry:
        """The entry at path ``name``; KeyError if there is none."""
        if self._logged is not None:
            found = next((e for e in self._logged.manifest() if e[0] == name.strip("/")), None)
        else:
            found = self._core.get_entry(name)
        if found is None:
            raise KeyError(f"artifact {self.name!r} has no entry {name!r}")
        return ArtifactManifestEntry(*found)

    @property
    def entries(self) -> dict[str, ArtifactManifestEntry]:
        """Every entry, by path."""
        listed = self._core.entries if self._logged is None else self._logged.manifest()
        return {entry[0]: ArtifactManifestEntry(*entry) for entry in listed}

    def __repr__(self) -> str:
        if self._logged is not None:
            return f"<Artifact {self.qualified_name} type={self.type}>"
        return f"<Artifact {self.name} type={self.type} entries={len(self._core.entries)}>"


class _NewFile:
    """The context manager of :meth:`Artifact.new_file`: a file in a private temporary
    directory, added (and the directory removed) when the block ends without an error."""

    def __init__(self, artifact: Artifact, name: str, mode: str, encoding: str | None) -> None:
        self._artifact = artifact
        self._name = name
        self._mode = mode
        self._encoding = encoding

    def __enter__(self) -> IO[Any]:
        import os
        import tempfile

        self._dir = tempfile.mkdtemp(prefix="wandb-nexus-")
        self._path = os.path.join(self._dir, os.path.basename(self._name) or "file")
        self._file: IO[Any] = open(self._path, self._mode, encoding=self._encoding)
        return self._file

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        import shutil

        self._file.close()
        try:
            if kind is None:
                self._artifact.add_file(self._path, self._name)
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


def _path(local_path: str | os.PathLike[str]) -> str:
    import os

    return os.fspath(local_path)


def artifact_of(
    run_id: str,
    artifact_or_path: Artifact | str | os.PathLike[str],
    name: str | None,
    type: str | None,
) -> Artifact:
    """What ``run.log_artifact`` logs: the artifact given, or one made of a path (a file, a
    directory, or a URI with a scheme) named ``run-<run id>-<basename>``."""
    if isinstance(artifact_or_path, Artifact):
        return artifact_or_path
    import os

    path = os.fspath(artifact_or_path)
    base = os.path.basename(path.rstrip("/")) or "artifact"
    artifact = Artifact(name or f"run-{run_id}-{base}", type or "unspecified")
    if "://" in path:
        artifact.add_reference(path)
    elif os.path.isdir(path):
        artifact.add_dir(path)
    else:
        artifact.add_file(path)
    return artifact
