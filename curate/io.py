"""Stage outputs on any fsspec URL: Parquet shards written atomically, manifests, and the funnel.

Stages write their tables through `WriteParquetShards`: records are spread over a fixed number of shards
by key, each shard is sorted by key and written whole to a temporary name, renamed to its final name,
then checked (size and SHA-256) — a shard is never visible half-written, a bundle the runner retries
rewrites identical bytes, and the same inputs give the same files on every runner. (The one exception is
OUT/images, whose rows carry image bytes: decode streams each file through `AtomicFile` as it decodes,
with the same guarantees and no shuffle; pipelines/decode.py.) The stage's
`_MANIFEST.json` lists what was committed, each shard re-read and hashed by a worker before it is listed;
the driver checks every listed shard's presence and size after the run (Beam's own file sinks can swallow a
failed rename) and merges the stage's counts into `OUT/stats.json`.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import itertools
import json
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterable
from typing import Any, NamedTuple

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import InputError, IntegrityError

MANIFEST = "_MANIFEST.json"
VERIFY_BLOCK = 8 << 20  # bytes read at a time when a worker re-hashes a committed shard


class ShardInfo(NamedTuple):
    table: str  # the folder under OUT: refs | rejects | failed ...
    path: str  # relative to OUT
    rows: int
    bytes: int
    sha256: str


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


class AtomicFile:
    """A file written under a temporary name beside `url` and renamed to it by `commit()`, so no reader ever
    sees it half-written. Size and SHA-256 are counted as the bytes pass: committing a large file streamed in
    pieces (a Parquet file written row group by row group) does not read it back. As a context manager, a
    file not committed when the block ends is removed."""

    def __init__(self, url: str):
        self.url = url
        self.fs, self.path = fsspec.core.url_to_fs(url)
        parent, _, name = self.path.rpartition("/")
        if parent:
            self.fs.makedirs(parent, exist_ok=True)
        self.tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{name}" if parent else f".tmp-{uuid.uuid4().hex}-{name}"
        self._fh = self.fs.open(self.tmp, "wb")
        self._sha, self._size, self._committed = hashlib.sha256(), 0, False

    def write(self, data: bytes) -> int:
        self._sha.update(data)
        self._size += len(data)
        return self._fh.write(data)

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        self._fh.flush()

    @property
    def closed(self) -> bool:
        return self._fh.closed

    def commit(self) -> tuple[int, str]:
        """Close, rename to the final name, check the size that landed. Returns (size, sha256)."""
        self._fh.close()
        self.fs.mv(self.tmp, self.path)
        self._committed = True
        if self.fs.size(self.path) != self._size:
            raise IntegrityError(f"{self.url}: wrote {self._size} bytes, found {self.fs.size(self.path)}")
        return self._size, self._sha.hexdigest()

    def discard(self) -> None:
        self._fh.close()
        if self.fs.exists(self.tmp):
            self.fs.rm(self.tmp)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._committed:
            self.discard()


class RowGroupWriter:
    """Rows streamed into one Parquet file, a row group of `group_rows` at a time, so a writer holds one row
    group, not the file; the file appears whole at `commit`."""

    def __init__(self, url: str, schema: pa.Schema, group_rows: int):
        self.url, self.schema, self.group_rows, self.count = url, schema, group_rows, 0
        self.rows: list[dict[str, Any]] = []
        self.file: AtomicFile | None = None
        self.writer: pq.ParquetWriter | None = None

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) == self.group_rows:
            self._flush()

    def _flush(self) -> None:
        if self.writer is None:
            self.file = AtomicFile(self.url)
            self.writer = pq.ParquetWriter(self.file, self.schema, compression="zstd")
        self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
        self.count += len(self.rows)
        self.rows = []

    def commit(self) -> tuple[int, int, str] | None:
        """(rows, bytes, sha256) of the committed file; None, and no file, when no row came."""
        if self.rows:
            self._flush()
        if self.writer is None or self.file is None:
            return None
        self.writer.close()
        return self.count, *self.file.commit()

    def discard(self) -> None:
        if self.file is not None:
            self.file.discard()


def atomic_write(url: str, data: bytes) -> tuple[int, str]:
    """Write bytes under a temporary name, rename to `url`, and check what landed. Returns (size, sha256)."""
    with AtomicFile(url) as fh:
        fh.write(data)
        return fh.commit()


def parquet_bytes(rows: list[dict], schema: pa.Schema) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buf, compression="zstd")
    return buf.getvalue()


def shard_of(key: str, num_shards: int) -> int:
    """Keys are hex digests: their leading bits spread uniformly."""
    return int(key[:8], 16) % num_shards


def shard_name(index: int) -> str:
    """A shard's number as every stage writes it in file names: 00000."""
    return f"{index:05d}"


def table_file(table: str, index: int, num_shards: int) -> str:
    """The file of one shard of a stage table: images-00000-of-00004.parquet."""
    return f"{table}-{shard_name(index)}-of-{shard_name(num_shards)}.parquet"


def _in_key_order(keyed: Iterable[tuple[str, dict]]) -> list[dict]:
    """Rows sorted by key; rows sharing a key (rare: a URL rejected for two reasons) by their content, so the
    order never depends on arrival. Rows carry image bytes, so the costly tie-break runs only on ties."""
    ordered = sorted(keyed, key=lambda kr: kr[0])
    rows: list[dict] = []
    for _, group in itertools.groupby(ordered, key=lambda kr: kr[0]):
        members = [row for _, row in group]
        if len(members) > 1:
            members.sort(key=lambda row: json.dumps(row, sort_keys=True, default=_digest))
        rows += members
    return rows


def _digest(value: Any) -> str:
    return hashlib.sha256(value).hexdigest() if isinstance(value, bytes) else str(value)


def write_table_shard(out: str, folder: str, table: str, index: int, num_shards: int, schema: pa.Schema,
                      keyed: Iterable[tuple[str, dict]]) -> ShardInfo:
    """One shard of a stage table, `OUT/<folder>/<table>-NNNNN-of-MMMMM.parquet`, its (key, row) pairs in key
    order, written atomically; its ShardInfo for the manifest."""
    rows = _in_key_order(keyed)
    rel = join(folder, table_file(table, index, num_shards))
    size, digest = atomic_write(join(out, rel), parquet_bytes(rows, schema))
    return ShardInfo(folder, rel, len(rows), size, digest)


def manifest_tables(shards: Iterable[ShardInfo]) -> dict[str, list[dict]]:
    """Shards grouped by table (folder), each list sorted by path: the `tables` of a manifest."""
    tables: dict[str, list[dict]] = {}
    for shard in sorted(shards, key=lambda s: s.path):
        tables.setdefault(shard.table, []).append(shard._asdict())
    return tables


def parquet_files(out: str, folder: str, missing: str) -> list[str]:
    """The Parquet files of OUT/<folder>, sorted. None at all is InputError(missing) unless the folder's stage
    finished (its manifest is there): then the table is legitimately empty (a crawl without images)."""
    fs, path = fsspec.core.url_to_fs(join(out, folder))
    files = sorted(fs.glob(f"{path}/*.parquet"))
    if not files and not (read_json(join(out, folder, MANIFEST)) or {}).get("complete"):
        raise InputError(missing)
    return [fs.unstrip_protocol(f) for f in files]


def read_json(url: str) -> Any | None:
    """The JSON document at `url`, None when there is none; a damaged one (not JSON, not UTF-8) is an
    InputError naming the file, not a traceback."""
    try:
        with fsspec.open(url, "r", encoding="utf-8") as fh:
            return json.load(fh)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InputError(f"{url} is damaged ({type(e).__name__}: {e}); remove it to rerun its stage") from None


def write_json(url: str, value: Any) -> None:
    atomic_write(url, (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())


def verify_shard(out: str, path: str, size: int, sha256: str) -> None:
    """A committed shard (`path` under OUT) has the size and SHA-256 its writer recorded, or IntegrityError.
    Read in blocks, so a worker holds one block, not the shard (an OUT/images file can be a gigabyte)."""
    url = join(out, path)
    digest, found = hashlib.sha256(), 0
    try:
        with fsspec.open(url, "rb") as fh:
            for block in iter(lambda: fh.read(VERIFY_BLOCK), b""):
                digest.update(block)
                found += len(block)
    except FileNotFoundError:
        raise IntegrityError(f"committed shard is missing: {url}") from None
    if found != size or digest.hexdigest() != sha256:
        raise IntegrityError(f"committed shard does not match its manifest: {url}")


def verify_listed(out: str, shards: list[dict]) -> None:
    """The driver's check after a stage: every shard of the manifest is there with its recorded size, from one
    listing per folder (the workers checked the contents, `verify_shard`), or IntegrityError."""
    folders: dict[str, list[dict]] = {}
    for shard in shards:
        folders.setdefault(shard["path"].rpartition("/")[0], []).append(shard)
    for folder, members in folders.items():
        fs, path = fsspec.core.url_to_fs(join(out, folder))
        sizes = {p.rpartition("/")[2]: info["size"] for p, info in fs.find(path, maxdepth=1, detail=True).items()}
        for shard in members:
            name = shard["path"].rpartition("/")[2]
            if name not in sizes:
                raise IntegrityError(f"committed shard is missing: {join(out, shard['path'])}")
            if sizes[name] != shard["bytes"]:
                raise IntegrityError(f"committed shard does not match its manifest: {join(out, shard['path'])} "
                                     f"has {sizes[name]} bytes, the manifest {shard['bytes']}")


def update_stats(out: str, stage: str, counts: dict[str, Any]) -> dict[str, Any]:
    """Merge one stage's funnel into OUT/stats.json (the driver does this once per stage run)."""
    url = join(out, "stats.json")
    stats = read_json(url) or {}
    stats[stage] = counts
    write_json(url, stats)
    return stats


def remove(url: str) -> None:
    """Delete a file or folder, or everything a glob matches; nothing there is fine."""
    fs, path = fsspec.core.url_to_fs(url)
    for found in fs.glob(path) if any(c in path for c in "*?[") else [path]:
        if fs.exists(found):
            fs.rm(found, recursive=True)


def update_timings(out: str, stage: str, seconds: float) -> dict[str, Any]:
    """Record a stage run's wall time in OUT/timings.json (facts about a run, kept apart from stats.json,
    which depends on the data only): {stage: {"seconds", "finished" (UTC, ISO 8601)}}."""
    url = join(out, "timings.json")
    timings = read_json(url) or {}
    finished = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    timings[stage] = {"seconds": round(seconds, 2), "finished": finished}
    write_json(url, timings)
    return timings


LOCK = "_LOCK.json"


class OutputLock:
    """One writer per output at a time: OUT/_LOCK.json, created exclusively, holds the holder's pid, host and
    command, and goes when the holder ends. A second run into the same output stops with one line naming the
    holder; a lock whose process is gone (same host, pid not running: a kill -9) is stale and taken over.
    Exclusive creation is atomic on local disks; on object stores it is a check-then-write, which narrows the
    race to milliseconds but cannot close it (their APIs offer no create-if-absent that fsspec exposes)."""

    def __init__(self, out: str, command: str):
        self.url, self.command = join(out, LOCK), command
        self.held = False

    def __enter__(self) -> OutputLock:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        for _ in range(2):
            if self._create(json.dumps(me).encode()):
                self.held = True
                return self
            try:
                holder = read_json(self.url) or {}
            except InputError:  # being written this instant by the run that just took it
                holder = {"pid": "?", "host": "?", "command": "a run that is starting", "started": "now"}
            if not _stale(holder):
                raise InputError(f"{self.url} is held by pid {holder.get('pid')} on {holder.get('host')} "
                                 f"({holder.get('command')}, since {holder.get('started')}): one run per output "
                                 "at a time; remove the file if that run is gone")
            remove(self.url)  # the holder was killed: its lock is stale
        raise InputError(f"could not take {self.url}: another run keeps taking it")

    def _create(self, data: bytes) -> bool:
        fs, path = fsspec.core.url_to_fs(self.url)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        if "file" in protocols:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return True
        if fs.exists(path):
            return False
        fs.pipe_file(path, data)
        return True

    def __exit__(self, *exc: object) -> None:
        if self.held:
            remove(self.url)


def _stale(holder: dict[str, Any]) -> bool:
    """A lock left by a process of this host that no longer runs."""
    pid, host = holder.get("pid"), holder.get("host")
    return isinstance(pid, int) and host == socket.gethostname() and not pid_running(pid)


def remove_stale_folders(prefix: str, root: str | None = None) -> list[str]:
    """Remove the local scratch folders named `<prefix><pid>-...` whose process is gone (a kill -9 skips their
    cleanup); returns what it removed. A folder of a process still running on this machine is left alone, and so
    is one without a pid in its name."""
    import shutil
    from pathlib import Path

    removed = []
    for folder in sorted(Path(root or tempfile.gettempdir()).glob(f"{prefix}*")):
        pid = folder.name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or pid_running(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(str(folder))
    return removed


def pid_running(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (one we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
