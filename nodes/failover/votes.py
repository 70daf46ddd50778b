"""What a failover node must not forget across a crash: the highest epoch it has seen and
the vote it gave in it (Raft's currentTerm and votedFor), and how many entries it has ever
cut back to an elected master's log (so that the count in /health survives restarts and
role changes). Written to a temporary file,
synced, renamed over the old one and the directory synced, before any answer that depends
on it is sent; without a data directory it is kept in memory only (docs/failover.md)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..core.election import Stored

FILE = "election.json"


class VoteFile:
    def __init__(self, data_dir: str | Path | None) -> None:
        self.path = Path(data_dir) / FILE if data_dir else None
        self._memory = Stored()
        self.writes = 0
        self.cut = 0

    def load(self) -> Stored:
        if self.path is None or not self.path.exists():
            return self._memory
        try:
            raw = json.loads(self.path.read_text())
            epoch, voted, cut = raw["epoch"], raw["voted_for"], raw.get("cut", 0)
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in (epoch, cut)) \
                    or not (voted is None or isinstance(voted, str)):
                raise ValueError(f"bad values {raw!r}")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{self.path} is damaged ({e}); it holds this node's epoch and "
                             "vote: restore it, or remove it only if this node is then kept "
                             "out of elections for one election timeout") from None
        self._memory, self.cut = Stored(epoch, voted), cut
        return self._memory

    def add_cut(self, count: int) -> None:
        self.cut += count
        self.save(self._memory)

    def save(self, stored: Stored) -> None:
        self._memory = stored
        self.writes += 1
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({"epoch": stored.epoch, "voted_for": stored.voted_for, "cut": self.cut}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
