"""A node's durable log: the Wal plus the node's fsync policy, for the shells to drive.

    always    write, then fdatasync before the entries count (group commit: one sync covers
              every record written since the last one)
    interval  write; a timer syncs every interval ms; entries count once written
    never     write; the OS flushes when it likes; entries count once written

offload=True (the master): fdatasync runs in a helper process (syncer.py), so a sync never
stalls the event loop: other requests keep running while the disk works. Should the helper
die, the node logs it and syncs in gevent's thread pool from then on.
offload=False (a secondary): it syncs in place; it has one replicate call at a time to serve,
and a hand-off costs more than the ~0.1 ms it would save.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from .syncer import HelperGone, SyncHelper
from .wal import CorruptLog, DataDirError, InUse, Loaded, Wal

MODES = ("always", "interval", "never")
__all__ = ["MODES", "Store", "CorruptLog", "DataDirError", "InUse", "Loaded"]


def _fdatasync_in_pool(fd: int) -> None:
    try:
        from gevent import monkey
        if monkey.is_module_patched("threading"):
            import gevent
            gevent.get_hub().threadpool.apply(os.fdatasync, (fd,))
            return
    except ImportError:
        pass
    os.fdatasync(fd)


class Store:
    def __init__(self, path: str | Path, mode: str = "always", interval_ms: float = 100.0,
                 segment_bytes: int | None = None, offload: bool = True) -> None:
        if mode not in MODES:
            raise ValueError(f"fsync mode must be one of {MODES}, got {mode!r}")
        kw = {"segment_bytes": segment_bytes} if segment_bytes else {}
        self.helper: SyncHelper | None = None
        self.wal = Wal(path, fdatasync=self._offloaded if offload else os.fdatasync, **kw)
        self.mode = mode
        self.offload = offload
        self.interval = interval_ms / 1000
        self.lock = threading.Lock()
        self._dirty = False
        self._stop = threading.Event()
        self.syncs = 0

    def _offloaded(self, fd: int) -> None:
        if self.helper is None:
            _fdatasync_in_pool(fd)
            return
        try:
            self.helper.sync(fd)
        except HelperGone as e:
            from loguru import logger
            logger.error("{}; syncing in this process from now on", e.strerror)
            self.helper.close()
            self.helper = None
            _fdatasync_in_pool(fd)

    @property
    def path(self) -> Path:
        return self.wal.path

    def load(self, max_keys: int = 100_000) -> Loaded:
        loaded = self.wal.load(max_keys)
        if self.offload and self.mode != "never":
            self.helper = SyncHelper()
        if self.mode == "interval":
            threading.Thread(target=self._sync_loop, name="fsync", daemon=True).start()
        return loaded

    def write(self, first_seq: int, messages: list[str],
              keys: dict[int, str] | None = None) -> None:
        with self.lock:
            self.wal.append(first_seq, messages, keys)
            self._dirty = True

    def commit(self) -> None:
        """Called after write(): returns when the entries count as held, per the mode."""
        if self.mode == "always":
            self.sync()

    def sync(self) -> None:
        with self.lock:
            if self._dirty:
                self._dirty = False
                self.wal.sync()
                self.syncs += 1

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sync()

    def truncate(self, keep: int) -> None:
        with self.lock:
            self.wal.truncate(keep)

    def save_meta(self, log_id: str, history: list[list[int]]) -> None:
        with self.lock:
            self.wal.save_meta(log_id, history)

    def close(self) -> None:
        self._stop.set()
        with self.lock:
            try:
                self.wal.close()
            finally:
                if self.helper is not None:
                    self.helper.close()
                    self.helper = None
