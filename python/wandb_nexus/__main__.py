"""Command line: ``python -m wandb_nexus sync PATH...`` uploads runs that were kept offline or
could not be delivered (ours, and the official SDK's where their records are ones we read)."""

from __future__ import annotations

import argparse
import sys

from . import _core
from .errors import WandbNexusError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wandb_nexus")
    commands = parser.add_subparsers(dest="command", required=True)
    sync = commands.add_parser(
        "sync", help="upload run directories (wandb/offline-run-... or wandb/run-...)"
    )
    sync.add_argument("paths", nargs="+", metavar="PATH", help="a run directory or .wandb file")
    sync.add_argument("-e", "--entity", help="upload under this entity instead")
    sync.add_argument("-p", "--project", help="upload under this project instead")
    args = parser.parse_args(argv)

    failures = 0
    for path in args.paths:
        try:
            url = _core.sync(path, entity=args.entity, project=args.project)
        except (WandbNexusError, OSError) as err:
            failures += 1
            print(f"{path}: not synced: {err}", file=sys.stderr)
            continue
        if url is None:
            print(f"{path}: already synced")
        else:
            print(f"{path}: synced to {url}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
