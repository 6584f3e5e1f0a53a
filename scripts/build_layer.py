"""Builds the Lambda layer zips from the current sources, without docker.

    python scripts/build_layer.py                 # both architectures
    python scripts/build_layer.py --arch x86_64   # one (x86_64 or arm64)

For each architecture: an abi3 (cp310) manylinux2014 wheel by `maturin build --zig`
(dist/wheels/<arch>/); the external Lambda extension, a Rust executable linked against glibc
2.17 by `cargo zigbuild`; the layer's contents in build/layer-<arch>/ (`python/` and
`extensions/wandb-nexus`), and dist/layer-<arch>.zip with the same layout (Lambda puts
/opt/python on sys.path and starts each file in /opt/extensions). Run it where maturin,
ziglang and cargo-zigbuild are installed (`pipenv run`, or inside `pipenv shell`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DIST = REPO / "dist"
RUST_TARGETS = {"x86_64": "x86_64-unknown-linux-gnu", "arm64": "aarch64-unknown-linux-gnu"}
WHEEL_PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
# The oldest Lambda runtime the abi3 wheel serves; pip picks wheels for this version.
LAMBDA_PYTHON = "3.10"
# The external extension's executable: Lambda requires its file name to be the name it
# registers with (src/lambda/external.rs).
EXTENSION = "wandb-nexus"
# Lambda's Python runtimes. The layer carries bytecode for each one this machine has: /opt is
# read-only on Lambda, so without it every cold start compiles the package's Python files.
LAMBDA_PYTHONS = ("3.10", "3.11", "3.12", "3.13", "3.14")


class BuildError(Exception):
    pass


def installed_rust_targets() -> set[str]:
    out = subprocess.run(
        ["rustup", "target", "list", "--installed"], capture_output=True, text=True
    )
    if out.returncode != 0:  # no rustup: only the host's own target can be assumed
        return {RUST_TARGETS["x86_64"]}
    return set(out.stdout.split())


def build_wheel(arch: str, out_dir: Path) -> Path:
    target = require_target(arch, "wheel")
    cmd = [
        sys.executable, "-m", "maturin", "build", "--release", "--zig",
        "--compatibility", "manylinux2014", "--target", target,
        "--interpreter", sys.executable, "--out", str(out_dir),
    ]  # fmt: skip
    subprocess.run(cmd, cwd=REPO, check=True, env=zig_environment())
    wheels = sorted(out_dir.glob(f"wandb_nexus-*-cp310-abi3-*{target.split('-')[0]}.whl"))
    if len(wheels) != 1:
        raise BuildError(f"expected one {arch} wheel in {out_dir}, found {wheels}")
    return wheels[0]


def zig_environment() -> dict[str, str]:
    """maturin and cargo-zigbuild find zig as `python3 -m ziglang` on PATH, and cargo finds
    `cargo-zigbuild` there: put this interpreter's scripts first."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def require_target(arch: str, what: str) -> str:
    target = RUST_TARGETS[arch]
    if target not in installed_rust_targets():
        raise BuildError(
            f"cannot build the {arch} {what}: the Rust target {target} is not installed. "
            f"Install it with `rustup target add {target}`, or build only x86_64 with "
            "`--arch x86_64`."
        )
    return target


def build_extension(arch: str) -> Path:
    """The external extension for `arch`: plain Rust (no Python), glibc symbols at most 2.17
    like the module's, in the size-first `extension` profile (Cargo.toml)."""
    target = require_target(arch, "extension")
    cmd = [
        "cargo", "zigbuild", "--profile", "extension", "--no-default-features",
        "--bin", EXTENSION, "--target", f"{target}.2.17",
    ]  # fmt: skip
    subprocess.run(cmd, cwd=REPO, check=True, env=zig_environment())
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    return (REPO / target_dir / target / "extension" / EXTENSION).resolve()


def layer_tree(arch: str, wheel: Path, extension: Path) -> Path:
    """Installs the wheel for Lambda's platform into build/layer-<arch>/python (the layer's
    contents, also what `sls invoke local` puts on PYTHONPATH), and the extension into
    build/layer-<arch>/extensions."""
    root = REPO / "build" / f"layer-{arch}"
    shutil.rmtree(root, ignore_errors=True)
    executable = root / "extensions" / EXTENSION
    executable.parent.mkdir(parents=True)
    shutil.copyfile(extension, executable)
    # Lambda runs it as it is unzipped: the zip carries this mode (see zip_tree).
    executable.chmod(0o755)
    site = root / "python"
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
        "--target", str(site), "--platform", WHEEL_PLATFORMS[arch],
        "--implementation", "cp", "--python-version", LAMBDA_PYTHON,
        "--only-binary=:all:", "--no-compile", str(wheel),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    compiled = compile_bytecode(site)
    print(f"bytecode for Python {', '.join(compiled) or 'none'} in the {arch} layer")
    # Lambda never reads these; direct_url.json would also carry this machine's path.
    for junk in [*site.glob("*.dist-info/RECORD"), *site.glob("*.dist-info/direct_url.json")]:
        junk.unlink()
    shutil.rmtree(site / "bin", ignore_errors=True)
    return root


def compile_bytecode(site: Path) -> list[str]:
    """Compiles the layer's Python files with every Lambda Python version this machine has.
    Unchecked-hash bytecode is used as it is, without comparing it to the source's time
    stamp, which a layer zip does not keep reliably."""
    compiled = []
    for version in LAMBDA_PYTHONS:
        for python in interpreters(version):
            cmd = [*python, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash"]
            # A version manager's shim for a version it does not enable fails: try the next.
            if subprocess.run([*cmd, str(site)], capture_output=True).returncode == 0:
                compiled.append(version)
                break
    return compiled


def interpreters(version: str) -> list[list[str]]:
    """How to start each interpreter of that version found: `pythonX.Y` on PATH, pyenv's
    installs, then the one scripts/lambda_runtimes prepared for this machine's architecture
    (bytecode is the same on every architecture)."""
    found = [shutil.which(f"python{version}")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found += sorted(str(p) for p in pyenv_root.glob(f"versions/{version}.*/bin/python{version}"))
    commands = [[python] for python in found if python]
    arch = "arm64" if platform.machine() == "aarch64" else "x86_64"
    prepared = REPO / "build" / "lambda-runtimes" / f"{arch}-python{version}" / "runtime.json"
    if prepared.exists():
        commands += [json.loads(prepared.read_text()).get("python") or []]
    return [command for command in commands if command]


def zip_tree(root: Path, zip_path: Path) -> None:
    """Zips the tree; `ZipFile.write` records each file's Unix mode (external_attr), which
    keeps the extension executable."""
    zip_path.unlink(missing_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(root).as_posix())


def build(arch: str) -> Path:
    DIST.mkdir(exist_ok=True)
    wheel_dir = DIST / "wheels" / arch
    shutil.rmtree(wheel_dir, ignore_errors=True)
    wheel = build_wheel(arch, wheel_dir)
    extension = build_extension(arch)
    zip_path = DIST / f"layer-{arch}.zip"
    zip_tree(layer_tree(arch, wheel, extension), zip_path)
    print(
        f"built {zip_path.relative_to(REPO)} ({zip_path.stat().st_size:,} bytes) from {wheel.name}"
        f" and extensions/{EXTENSION} ({extension.stat().st_size:,} bytes)"
    )
    return zip_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=[*RUST_TARGETS, "all"], default="all")
    args = parser.parse_args(argv)
    arches = list(RUST_TARGETS) if args.arch == "all" else [args.arch]
    failed = False
    for arch in arches:
        try:
            build(arch)
        except BuildError as err:
            print(f"build_layer: {err}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
