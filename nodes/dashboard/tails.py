"""The last messages of every secondary the master knows, read over Pyro5 while a page
watches: one loop (thread or greenlet) per secondary, owning its proxy.

Request handlers (watch, view) and the loops share two things, the set of loops and the
latest replies, always under one lock: the node processes run on gevent, but nothing here
relies on where gevent switches, so it is equally right on OS threads.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from loguru import logger

from .. import rpc

TAIL = 20              # messages shown per node
TAIL_INTERVAL = 0.5    # seconds between two tail() calls to one secondary
TAIL_TIMEOUT = 1.0     # timeout of one tail() call
WATCH_FOR = 5.0        # seconds after the last GET /cluster that tails are still fetched


class MasterPeers(Protocol):
    """What Tails reads of the master (nodes.master.Master): where each secondary it knows
    is registered."""

    def secondary_uris(self) -> dict[str, str | None]: ...


class Tails:
    """State and at most one loop for each secondary the master currently knows.

    watch(names) is the master's current list: a new name gets a loop; a name no longer in
    it loses its latest reply at once, and its loop ends within one interval (or one call's
    timeout). A name that leaves and comes back gets a new loop; the old one, should it
    still be in a call, sees that it is no longer the current one and ends without writing.
    Names are pruned when a page polls: with no page open the loops sleep, and what is kept
    is bounded by the names the master knew at the last poll.
    """

    def __init__(self, master: MasterPeers, interval: float = TAIL_INTERVAL,
                 timeout: float = TAIL_TIMEOUT, watch_for: float = WATCH_FOR) -> None:
        self.master = master
        self.interval, self.timeout, self.watch_for = interval, timeout, watch_for
        # guards the three below; loops wait on it for a watcher or for their end
        self._cond = threading.Condition()
        self._latest: dict[str, dict] = {}       # name -> last reply (+ "at", "error")
        self._loops: dict[str, object] = {}      # name -> token of its one current loop
        self._watched_until = 0.0

    @property
    def latest(self) -> dict[str, dict]:
        """A copy: name -> last reply (+ "at", "error"), for the names still known."""
        with self._cond:
            return dict(self._latest)

    def watch(self, names: list[str]) -> None:
        """A page asked, and `names` are the secondaries the master knows now: fetch for
        watch_for seconds more, start loops for new names, end those of names gone."""
        wanted = set(names)
        started = []
        with self._cond:
            self._watched_until = time.monotonic() + self.watch_for
            for name in [n for n in self._loops if n not in wanted]:
                del self._loops[name]             # its loop sees this and ends
                self._latest.pop(name, None)
            for name in wanted - set(self._loops):
                self._loops[name] = token = object()
                started.append((name, token))
            self._cond.notify_all()               # wake idle loops, and those that must end
        for name, token in started:
            threading.Thread(target=self._loop, args=(name, token), name=f"tail-{name}",
                             daemon=True).start()

    def _current(self, name: str, token: object) -> bool:
        return self._loops.get(name) is token     # (caller holds self._cond)

    def _watched(self) -> bool:
        return time.monotonic() <= self._watched_until

    def uri(self, name: str) -> str | None:
        """The Pyro5 URI of secondary `name`, None if the master does not know it."""
        return self.master.secondary_uris().get(name)

    def _loop(self, name: str, token: object) -> None:
        proxy, proxy_uri = None, None
        try:
            while True:
                with self._cond:
                    if not self._current(name, token):
                        return
                    idle = not self._watched()
                if idle:                           # nobody watches: hold no connection
                    proxy = _release(proxy)
                    with self._cond:
                        self._cond.wait_for(lambda: not self._current(name, token)
                                            or self._watched())
                    continue
                started = time.monotonic()
                uri = self.uri(name)
                if uri is not None:
                    if proxy is None or uri != proxy_uri:
                        _release(proxy)
                        proxy, proxy_uri = rpc.proxy(uri, self.timeout), uri
                    try:
                        reply, error = proxy.tail(TAIL), None
                        reply["at"] = time.time()
                    except Exception as e:   # paused, down, an older secondary: shown as stale
                        logger.trace("tail of {} failed: {}", name, e)
                        reply, error = None, f"{type(e).__name__}: {e}"[:200]
                        proxy = _release(proxy)
                    with self._cond:
                        if not self._current(name, token):
                            return                 # gone while we asked: write nothing
                        self._latest[name] = (reply if reply is not None else
                                              {**self._latest.get(name, {}), "error": error})
                rest = self.interval - (time.monotonic() - started)
                with self._cond:                   # sleep, but end at once if removed
                    self._cond.wait_for(lambda: not self._current(name, token),
                                        max(0.0, rest))
        finally:
            _release(proxy)


def _release(proxy: Any) -> None:
    if proxy is not None:
        try:
            proxy._pyroRelease()
        except Exception as e:       # closing a broken connection: nothing left to do
            logger.trace("releasing a tail proxy: {}", e)
    return None
