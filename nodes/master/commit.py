"""Group commit: with a data directory, the master counts as a holder of an entry only once
its own disk has it. One loop writes everything appended since its last round as one
record and syncs it (per the fsync mode); while one round syncs, the next round's appends
gather, so one sync serves them all."""
from __future__ import annotations

import threading
from typing import Callable

from loguru import logger

from ..storage.store import Store
from .shell import Shell


class GroupCommit:
    def __init__(self, shell: Shell, store: Store,
                 advanced: Callable[[int], None] = lambda seq: None) -> None:
        self.shell, self.store = shell, store
        self.advanced = advanced      # under the lock: the durable seq grew (followers)
        self.cond = threading.Condition(shell.lock)   # woken by appends
        self.written = shell.state.durable

    def loop(self) -> None:
        shell, store = self.shell, self.store
        state = shell.state
        log = state.log
        while True:
            with self.cond:
                while log.last_seq <= self.written and not shell.stopping.is_set():
                    self.cond.wait()
                if log.last_seq <= self.written:
                    return                                   # stopping, nothing left
                first, last = self.written + 1, log.last_seq
                batch = log.snapshot()[first - 1:last]
                keys = log.take_keys(first, last)
            try:
                store.write(first, batch, keys)
                store.commit()
            except Exception as e:  # a full or failing disk: nothing more is acknowledged
                logger.opt(exception=not isinstance(e, OSError)).critical(
                    "cannot write seq={}..{} to {}: {}", first, last, store.path, e)
                with shell.lock:
                    state.fail_disk(f"the master's disk failed: {e}")
                    ready = shell.take()
                shell.carry_out(ready)
                return
            with shell.lock:
                self.written = last
                state.on_durable(last)
                self.advanced(last)
                ready = shell.take()
            # No wake-up of the senders: they ship everything appended, synced here or not,
            # so the master's sync changes nothing they wait for.
            shell.carry_out(ready)
