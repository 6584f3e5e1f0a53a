"""The Lambda Python runtimes the emulator can run a layer on: every Lambda Python version
(3.10 to 3.14) on x86_64 and arm64, each an interpreter of that version and architecture with
the runtime interface client (awslambdaric) built for it, as scripts/lambda_runtimes prepared
them (build/lambda-runtimes/<arch>-python<version>/runtime.json), or why there is none."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PREPARED = REPO / "build" / "lambda-runtimes"
VERSIONS = ("3.10", "3.11", "3.12", "3.13", "3.14")
ARCHES = ("x86_64", "arm64")
PREPARE = "run scripts/lambda_runtimes"


@dataclass(frozen=True)
class Runtime:
    """One Lambda Python runtime: `python` starts its interpreter (through qemu-user for
    arm64), `emulation` is what starts any other executable of `arch` here (the layer's
    external extensions), and `path` holds its awslambdaric. `missing` says why it cannot be
    run, if it cannot."""

    version: str  # "3.12"
    arch: str  # "x86_64" or "arm64"
    python: list[str] = field(default_factory=list)
    emulation: list[str] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    source: str = ""  # where the interpreter comes from: "pyenv 3.12.1", "Debian sid ..."
    missing: str | None = None

    @property
    def name(self) -> str:
        return f"{self.arch}-python{self.version}"

    @property
    def machine(self) -> str:
        """What `platform.machine()` says there."""
        return "aarch64" if self.arch == "arm64" else "x86_64"


def runtime(version: str, arch: str) -> Runtime:
    site = PREPARED / f"{arch}-python{version}"
    manifest_path = site / "runtime.json"
    if not manifest_path.exists():
        return Runtime(version, arch, missing=f"{site.name} is not prepared: {PREPARE}")
    manifest = json.loads(manifest_path.read_text())
    if "missing" in manifest:
        return Runtime(version, arch, missing=f"no {site.name}: {manifest['missing']}")
    python = manifest["python"]
    for executable in (python[0], python[-1]):
        if not Path(executable).exists():
            return Runtime(version, arch, missing=f"{executable} is gone: {PREPARE}")
    return Runtime(
        version,
        arch,
        python=python,
        emulation=manifest["emulation"],
        path=[str(site)],
        source=manifest["source"],
    )


def runtimes() -> list[Runtime]:
    """Every version on every architecture, the missing ones included."""
    return [runtime(version, arch) for arch in ARCHES for version in VERSIONS]
