"""How a starting master finds its log (nodes/core/recovery.py decides): it loads its own
disk, asks every known secondary what it holds, and serves the most recent copy, fetching
what it lacks, or starts a new log, or keeps waiting (read-only) for more answers."""
from __future__ import annotations

import threading
import time
import uuid
from typing import Callable

from loguru import logger

from ..core import history as hist
from ..core import recovery
from ..events import add_event
from ..storage.store import Store
from .shell import Shell

FETCH_CHUNK = 50_000    # entries per read() call while fetching a secondary's log


class Recovery:
    def __init__(self, shell: Shell, store: Store | None, new_log: bool,
                 discover_once: Callable[[], None]) -> None:
        self.shell, self.store, self.new_log = shell, store, new_log
        self._discover_once = discover_once
        self.report: dict | None = None       # how the log was recovered, for /health

    def load_own(self) -> recovery.Copy:
        state = self.shell.state
        if self.store is None:
            return recovery.Copy("master", None, [], 0)
        loaded = self.store.load(state.log.max_keys)
        with self.shell.lock:
            state.log.load(loaded.messages, loaded.keys)
        logger.info("loaded {} messages of log {} from {}{}", len(loaded.messages),
                    loaded.log_id, self.store.path,
                    f" (cut a torn tail: {loaded.cut})" if loaded.cut else "")
        return recovery.Copy("master", loaded.log_id, loaded.history, len(loaded.messages))

    def run(self, own: recovery.Copy, wait: float) -> str | None:
        """Ask every known secondary what it holds until all answered or `wait` seconds
        passed; then serve, start anew, or (None) keep waiting."""
        shell = self.shell
        deadline = shell.clock() + wait
        answers: dict[str, recovery.Copy] = {}
        incarnations: dict[str, str] = {}
        while True:
            self._discover_once()
            with shell.lock:
                known = {n: s.uri for n, s in shell.state.secondaries.items()}
            asked = {n: u for n, u in known.items() if u and n not in answers}
            for name, (copy, incarnation) in self._ask_all(asked).items():
                answers[name], incarnations[name] = copy, incarnation
            if len(answers) == len(known) or shell.clock() >= deadline \
                    or shell.stopping.is_set():
                break
            shell.stopping.wait(0.05)
        waited = shell.clock() >= deadline
        plan = recovery.plan(own, list(answers.values()), len(known), waited, self.new_log)
        for copy in answers.values():
            if copy.log_id not in (None, own.log_id, plan.source and plan.source.log_id) \
                    and not copy.empty and plan.action == "serve":
                logger.error("{} holds another log ({}, {} messages): it will be refused until "
                             "it is emptied or the master starts with --new-log", copy.name,
                             copy.log_id, copy.length)
        if plan.action == "wait":
            with shell.lock:
                changed = shell.state.recovering != plan.reason
                shell.state.recovering = plan.reason
            if changed:
                logger.warning("{}", plan.reason)
            return None
        try:
            return self._carry_out(plan, own, answers, incarnations)
        except Exception as e:   # the source went away mid-fetch: ask again
            logger.warning("recovery from {} failed ({}: {}); asking again",
                           plan.source.name if plan.source else "?", type(e).__name__, e)
            return None

    def _carry_out(self, plan: recovery.Plan, own: recovery.Copy,
                   answers: dict[str, recovery.Copy], incarnations: dict[str, str]) -> str:
        shell, store = self.shell, self.store
        log = shell.state.log
        started = shell.clock()
        fetched = 0
        if plan.action == "new":
            log_id, history = uuid.uuid4().hex, [[1, 1]]
            if own.length:
                log.truncate(0)
                store.truncate(0)
        else:
            src = plan.source
            log_id = src.log_id
            if plan.keep < own.length:
                logger.warning("dropping seq={}..{} of the master's own log: {} holds a more "
                               "recent log", plan.keep + 1, own.length, src.name)
                log.truncate(plan.keep)
                if store is not None:
                    store.truncate(plan.keep)
            if src.name != "master" and src.length > plan.keep:
                if store is not None:   # a crash mid-fetch leaves a valid prefix
                    store.save_meta(log_id, hist.cut(src.history, src.length))
                fetched = self._fetch(src, plan.keep)
            history = hist.begin_epoch(hist.cut(src.history, src.length), log.last_seq,
                                       plan.epoch)
        if store is not None:
            store.save_meta(log_id, history)
        with shell.lock:
            shell.state.begin(log_id, history, durable=log.last_seq)
            for name, copy in answers.items():
                shell.state.on_answer(name, incarnations[name], copy.length, shell.clock(),
                                      copy.log_id, hist.epoch_at(copy.history, copy.length))
            ready = shell.take()
        shell.carry_out(ready)
        took = shell.clock() - started
        epoch = shell.state.epoch
        if plan.action == "new":
            logger.info("{}: log {}", plan.reason, log_id)
        elif fetched:
            logger.warning("recovered {} messages from {} in {:.2f} s: serving log {} with {} "
                           "messages, epoch {}", fetched, plan.source.name, took, log_id,
                           log.last_seq, epoch)
        else:
            logger.info("serving log {} with {} messages, epoch {}", log_id, log.last_seq, epoch)
        add_event("recovery", f"{plan.action}: log {log_id[:8]} with {log.last_seq} messages, "
                              f"epoch {epoch}" + (f", fetched {fetched} from "
                              f"{plan.source.name}" if fetched else ""))
        self.report = {"action": plan.action, "source": plan.source.name if plan.source
                       else None, "fetched": fetched, "seconds": round(took, 3),
                       "answered": sorted(answers), "at": time.time()}
        return log_id

    def _fetch(self, src: recovery.Copy, keep: int) -> int:
        """Copy src's entries keep+1..src.length into the master's log (and disk)."""
        shell, store = self.shell, self.store
        log = shell.state.log
        with shell.lock:
            uri = shell.state.secondaries[src.name].uri
        p = shell.transport.connect(uri, shell.timing.rpc_timeout)
        try:
            while log.last_seq < src.length:
                first = log.last_seq + 1
                batch = p.read(src.log_id, first, min(FETCH_CHUNK, src.length - log.last_seq))
                if not batch:
                    raise RuntimeError(f"{src.name} sent nothing from seq={first}")
                log.extend(batch)
                if store is not None:
                    store.write(first, batch)
            if store is not None:
                store.sync()
        finally:
            shell.transport.release(p)
        return src.length - keep

    def _ask_all(self, uris: dict[str, str]) -> dict[str, tuple[recovery.Copy, str]]:
        """history() of each secondary at once, each call in its own thread with its proxy."""
        shell = self.shell
        out: dict[str, tuple[recovery.Copy, str]] = {}
        lock = threading.Lock()

        def ask(name: str, uri: str) -> None:
            p = shell.transport.connect(uri, shell.timing.heartbeat_timeout)
            try:
                r = p.history()
                with lock:
                    out[name] = (recovery.Copy(name, r["log_id"], r["history"], r["ack"]),
                                 r["incarnation"])
            except Exception as e:
                logger.debug("{} did not answer yet: {}", name, e)
            finally:
                shell.transport.release(p)

        threads = [threading.Thread(target=ask, args=item, daemon=True) for item in uris.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(shell.timing.heartbeat_timeout + 1)
        with lock:
            return dict(out)
