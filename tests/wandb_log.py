"""An independent reader of `.wandb` transaction logs for the tests: it checks the header,
the block framing and every chunk's CRC itself, and decodes records with the official
`wandb` package's protobuf classes, so field numbers are judged by wandb's own schema."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
HEADER = b":W&B" + struct.pack("<H", 0xBEE1) + b"\x00"
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class CorruptLog(Exception):
    pass


def read_payloads(data: bytes, strict: bool = True) -> list[bytes]:
    """Every record's bytes. With strict, any framing or CRC error raises."""
    if data[:7] != HEADER:
        raise CorruptLog(f"bad header {data[:7]!r}")
    pos, records, partial = 7, [], None
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:
            if strict and data[pos : pos + left] != b"\x00" * left:
                raise CorruptLog(f"non-zero block padding at {pos}")
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if pos % BLOCK + 7 + length > BLOCK:
            raise CorruptLog(f"chunk at {pos} crosses a block boundary")
        payload = data[pos + 7 : pos + 7 + length]
        if len(payload) < length:
            if strict:
                raise CorruptLog(f"truncated chunk at {pos}")
            break
        if zlib.crc32(payload, zlib.crc32(bytes([kind]))) != crc:
            raise CorruptLog(f"CRC mismatch at {pos}")
        pos += 7 + length
        if kind == FULL and partial is None:
            records.append(payload)
        elif kind == FIRST and partial is None:
            partial = bytearray(payload)
        elif kind == MIDDLE and partial is not None:
            partial += payload
        elif kind == LAST and partial is not None:
            records.append(bytes(partial + payload))
            partial = None
        else:
            raise CorruptLog(f"chunk type {kind} out of sequence at {pos}")
    if strict and (pos != len(data) or partial is not None):
        raise CorruptLog("log ends inside a record")
    return records


def read_records(path: str | Path, strict: bool = True) -> list[pb.Record]:
    """The log's records; without strict, those before a truncated tail."""
    records = []
    for payload in read_payloads(Path(path).read_bytes(), strict):
        record = pb.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def kinds(records: list[pb.Record]) -> list[str]:
    return [r.WhichOneof("record_type") for r in records]


def item_path(item: Any) -> tuple[str, ...]:
    return tuple(item.nested_key) if item.nested_key else (item.key,)


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def history_rows(records: list[pb.Record]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        if r.WhichOneof("record_type") == "history":
            row: dict[str, Any] = {}
            for item in r.history.item:
                _set(row, item_path(item), json.loads(item.value_json))
            rows.append(row)
    return rows


def summary(records: list[pb.Record]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for r in records:
        if r.WhichOneof("record_type") != "summary":
            continue
        for item in r.summary.update:
            _set(result, item_path(item), json.loads(item.value_json))
        for item in r.summary.remove:
            path = item_path(item)
            parent = result
            for key in path[:-1]:
                parent = parent.get(key, {})
            parent.pop(path[-1], None)
    return result


def _merge(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """wandb-core merges a config value that is an object leaf by leaf into the tree."""
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            _merge(tree, (*path, key), inner)
        return
    for key in path[:-1]:
        if not isinstance(tree.get(key), dict):
            tree[key] = {}
        tree = tree[key]
    tree[path[-1]] = value


def config(records: list[pb.Record]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for r in records:
        kind = r.WhichOneof("record_type")
        items = (
            r.run.config.update if kind == "run" else r.config.update if kind == "config" else []
        )
        for item in items:
            _merge(result, item_path(item), json.loads(item.value_json))
    return result


def console(records: list[pb.Record]) -> list[tuple[str, str]]:
    """(stream, text) of each captured chunk."""
    out = []
    for r in records:
        if r.WhichOneof("record_type") == "output_raw":
            stream = "stdout" if r.output_raw.output_type == pb.OutputRawRecord.STDOUT else "stderr"
            out.append((stream, r.output_raw.line))
    return out
