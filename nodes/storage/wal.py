"""A node's data directory: an append-only log in segment files, and a small meta file.

    DIR/meta.json                        {"format": 1, "log_id": ..., "history": [[epoch, start], ...]}
    DIR/segments/00000000000000000001.log   records from seq 1 on (see format.py)
    DIR/segments/00000000000000123457.log   the next segment, from seq 123457 on

One writer at a time (the master's flusher, or a secondary under its lock). `append` only
writes (the bytes are in the OS's cache); `sync` makes everything written so far durable
with one fdatasync, which is what makes group commit cheap: many batches, one sync.
"""
from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from loguru import logger

from . import format as fmt

SEGMENT_BYTES = 64 << 20


class DataDirError(Exception):
    """The data directory cannot be used: the node must not start."""


class CorruptLog(DataDirError):
    """Corruption that a crash in mid-write cannot explain."""


class InUse(DataDirError):
    """Another process holds the data directory."""


@dataclass
class Loaded:
    log_id: str | None
    history: list[list[int]]
    messages: list[str]
    keys: dict[str, int] = field(default_factory=dict)   # idempotency key -> seq, newest last
    cut: str | None = None       # what was cut off as a torn tail, if anything


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}.log"


class Wal:
    def __init__(self, path: str | Path, segment_bytes: int = SEGMENT_BYTES,
                 fdatasync: Callable[[int], None] = os.fdatasync) -> None:
        self.path = Path(path)
        self.segments_dir = self.path / "segments"
        self.segment_bytes = segment_bytes
        self._fdatasync = fdatasync
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._size = 0                 # bytes in the open segment
        self._segments: list[tuple[int, Path]] = []   # (first seq, file), oldest first
        self._dir_dirty = False        # a segment was created since the last sync
        self.last_seq = 0              # highest seq written (not necessarily synced)

    # -- start-up ---------------------------------------------------------------------------
    def load(self, max_keys: int = 100_000) -> Loaded:
        """Read meta and every segment; cut a torn tail off the newest segment; raise
        CorruptLog (changing nothing) for anything else that fails its checks."""
        self.segments_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        meta = self._read_meta()
        files = sorted(self.segments_dir.glob("*.log"))
        messages: list[str] = []
        keys: dict[str, int] = {}
        torn: tuple[Path, int, str] | None = None
        for i, file in enumerate(files):
            try:
                first = int(file.stem)
            except ValueError:
                raise CorruptLog(f"{file}: not a segment name") from None
            if first != len(messages) + 1:
                raise CorruptLog(f"{file}: starts at seq {first}, but the segments before it "
                                 f"end at seq {len(messages)}")
            data = file.read_bytes()
            records = fmt.scan(data, first, tail_may_be_torn=i == len(files) - 1)
            try:
                while True:
                    rec = next(records)
                    for index, key in rec.keys.items():
                        keys.pop(key, None)
                        keys[key] = rec.first_seq + index
                    messages.extend(rec.messages)
            except StopIteration as done:
                valid_end, why = done.value
            except fmt.Corrupt as e:
                raise CorruptLog(f"{file}: offset {e.offset}: {e.reason}") from None
            if why is not None:
                torn = (file, valid_end, f"{why} at offset {valid_end}, {len(data) - valid_end} "
                                         f"bytes")
            self._segments.append((first, file))
            self._size = valid_end
        while len(keys) > max_keys:
            del keys[next(iter(keys))]
        cut = None
        if torn is not None:       # only now, after every segment checked out
            file, valid_end, why = torn
            with open(file, "r+b") as f:
                f.truncate(valid_end)
                os.fsync(f.fileno())
            cut = f"{file.name}: {why}"
            logger.warning("torn tail cut off {}: {} (a crash in mid-write); the log ends at "
                           "seq {}", file, why, len(messages))
        if meta is None and messages:
            raise CorruptLog(f"{self.path / 'meta.json'} is missing but segments hold "
                             f"{len(messages)} messages")
        self.last_seq = len(messages)
        self._open_last()
        return Loaded(meta["log_id"] if meta else None, meta["history"] if meta else [],
                      messages, keys, cut)

    def _lock(self) -> None:
        """Hold DIR/LOCK (flock) for the life of the process: two nodes on one directory
        would corrupt it. The kernel drops the lock when the process dies, even by kill -9."""
        fd = os.open(self.path / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InUse(f"{self.path} is in use by another process (it holds "
                        f"{self.path / 'LOCK'}): is this node already running?") from None
        self._lock_fd = fd

    def _read_meta(self) -> dict | None:
        path = self.path / "meta.json"
        if not path.exists():
            return None
        try:
            meta = json.loads(path.read_text())
            if meta.get("format") != 1 or not isinstance(meta.get("log_id"), str) \
                    or not isinstance(meta.get("history"), list):
                raise ValueError("unexpected fields")
        except ValueError as e:
            raise CorruptLog(f"{path}: {e}") from None
        return meta

    def _open_last(self) -> None:
        if not self._segments:
            self._new_segment(self.last_seq + 1)
            return
        self._fd = os.open(self._segments[-1][1], os.O_WRONLY | os.O_APPEND)
        self._size = os.fstat(self._fd).st_size

    def _new_segment(self, first_seq: int) -> None:
        if self._fd is not None:
            self._fdatasync(self._fd)      # the old segment is complete and durable
            os.close(self._fd)
        path = self.segments_dir / _segment_name(first_seq)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
        self._segments.append((first_seq, path))
        self._size = 0
        self._dir_dirty = True

    # -- writing ----------------------------------------------------------------------------
    def append(self, first_seq: int, messages: list[str],
               keys: dict[int, str] | None = None) -> None:
        """Write one record (not yet synced). Seqs must follow on from the last one."""
        if first_seq != self.last_seq + 1:
            raise ValueError(f"append at seq {first_seq}, but the log ends at {self.last_seq}")
        if self._size >= self.segment_bytes:
            self._new_segment(first_seq)
        data = fmt.encode(first_seq, messages, keys)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._size += len(data)
        self.last_seq += len(messages)

    def sync(self) -> None:
        """Make everything written so far durable (one fdatasync for any number of records)."""
        self._fdatasync(self._fd)
        if self._dir_dirty:
            self._dir_dirty = False
            _fsync_dir(self.segments_dir)

    def save_meta(self, log_id: str, history: list[list[int]]) -> None:
        """Replace meta.json atomically and durably (write, fsync, rename, fsync the dir)."""
        path = self.path / "meta.json"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({"format": 1, "log_id": log_id, "history": history}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.path)

    def truncate(self, keep: int) -> None:
        """Cut the log to its first `keep` entries (durably)."""
        if keep >= self.last_seq:
            return
        os.close(self._fd)
        self._fd = None
        while len(self._segments) > 1 and self._segments[-1][0] > keep:
            os.unlink(self._segments.pop()[1])     # holds nothing that is kept
        first, path = self._segments[-1]
        data = path.read_bytes()
        cut_at, partial = len(data), None
        for rec in fmt.scan(data, first, tail_may_be_torn=False):
            last = rec.first_seq + len(rec.messages) - 1
            if last > keep:
                cut_at = rec.offset
                if rec.first_seq <= keep:
                    partial = (rec.first_seq, rec.messages[:keep - rec.first_seq + 1],
                               {i: k for i, k in rec.keys.items() if rec.first_seq + i <= keep})
                break
        with open(path, "r+b") as f:
            f.truncate(cut_at)
            os.fsync(f.fileno())
        _fsync_dir(self.segments_dir)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._size = cut_at
        self.last_seq = (partial[0] - 1) if partial else keep
        if partial:
            self.append(*partial)
        self.last_seq = keep
        self.sync()

    def close(self) -> None:
        if self._fd is not None:
            try:
                self._fdatasync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
