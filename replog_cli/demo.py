"""`replog demo`: the assignment's scenarios, narrated and checked.

Every step prints what we do, what should happen and what happened; the command exits 1
when any expectation failed. Without --master the demo starts its own cluster (local
processes, free ports, short health timings); with --master it uses a running one, and
--control compose lets it stop, kill, pause and start the Docker cluster's secondaries.
"""
from __future__ import annotations

import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import click
from rich.console import Console
from rich.markup import escape

from nodes.launcher import wait_until
from replog_client import Client, ReplogError

from . import format as fmt
from .client import ClientError, Http
from .controller import (ComposeController, Controller, LocalController, RemoteController,
                         SECONDARIES)
from .narrator import Failed, Narrator, Result, Skipped, check

S1, S2 = SECONDARIES
SCENARIOS = ("iteration1", "iteration2", "iteration3", "faults", "failover")


class Demo:
    def __init__(self, narrator: Narrator, ctl: Controller, delay: float = 1.0) -> None:
        self.n = narrator
        self.ctl = ctl
        self.delay = delay
        # on a shared cluster our messages carry a run tag, so that old ones do not confuse
        self.tag = "" if ctl.own else f" ({uuid.uuid4().hex[:6]})"

    # -- helpers ----------------------------------------------------------------------------
    def require_control(self) -> None:
        if not self.ctl.can_control:
            raise Skipped("needs process control of the secondaries (--control compose)")

    @property
    def master(self) -> Http:
        return Http(self.ctl.master_url, timeout=30)

    def msg(self, text: str) -> str:
        return text + self.tag

    def log_of(self, name: str) -> list[str]:
        url = self.ctl.master_url if name == "master" else self.ctl.url(name)
        return Http(url, timeout=10).messages()["messages"]

    def health(self) -> dict:
        return self.master.health()

    def status(self, name: str) -> str:
        return self.health()["secondaries"][name]["status"]

    def wait(self, predicate, what: str, timeout: float | None = None):
        try:
            return wait_until(predicate, timeout or self.ctl.patience, interval=0.05, what=what)
        except TimeoutError as e:
            raise Failed(str(e)) from None

    def post(self, text: str, w: int, timeout: float = 30.0, key: str | None = None):
        """POST and time it: (reply body, seconds); Failed with the server's message."""
        try:
            reply = self.master.append(text, w, timeout, key, http_timeout=timeout + 10)
        except ClientError as e:
            raise Failed(f"refused: {e.message}") from None
        return reply.body, reply.seconds

    def lists(self, *names: str) -> str:
        return "; ".join(f"{n}: {fmt.short_list(self.log_of(n))}" for n in names)

    # -- iteration 1 ------------------------------------------------------------------------
    def iteration1(self) -> None:
        d = self.delay
        self.n.scenario("iteration 1", "blocking replication: the master answers a POST only "
                                       "after every secondary has ACKed it")
        self.n.note(self.ctl.timing_note)
        if self.ctl.own:
            self.ctl.fresh(delays={S2: d})
            self.n.note(f"{S2} started with --delay {d:g}: it sleeps {d:g} s in every "
                        "replicate call")
        else:
            self.ctl.fresh()
            try:
                self.n.step(f"POST /faults {{\"delay\": {d:g}}} to {S2}",
                            f"{S2} sleeps {d:g} s in every replicate call",
                            lambda: str(Http(self.ctl.url(S2)).set_faults(delay=d)))
                self._iteration1(d)
            finally:
                try:
                    self.ctl.set_delay(S2, 0)
                except ClientError:
                    pass
            return
        self._iteration1(d)

    def _iteration1(self, d: float) -> None:
        text = self.msg("iteration 1: hello")

        def blocking() -> str:
            body, took = self.post(text, w=3)
            at_return = self.log_of(S2)
            check(body["acks"] == 3, f"201 with acks={body['acks']}, not 3")
            check(took >= d * 0.9, f"201 after only {took:.2f} s, less than the {d:g} s delay: "
                                   "not blocking")
            check(text in at_return, f"201 after {took:.2f} s but {S2} does not hold it")
            return f"201 seq={body['seq']} acks=3 after {took:.2f} s; {S2} holds it already"
        self.n.step(f'POST "{text}" (default w: all 3 nodes)',
                    f"the answer comes only after {S2} stored it: after about {d:g} s, acks=3",
                    blocking)

        def same() -> str:
            logs = {name: self.log_of(name) for name in ("master", S1, S2)}
            check(len({tuple(v) for v in logs.values()}) == 1,
                  "the lists differ: " + self.lists("master", S1, S2))
            return f"all three hold {fmt.short_list(logs['master'])}"
        self.n.step("GET /messages on the master, secondary1 and secondary2",
                    "every node returns the same list", same)

    # -- iteration 2 ------------------------------------------------------------------------
    def iteration2(self) -> None:
        d = max(self.delay, 1.5)
        self.n.scenario("iteration 2", "write concern w, eventual consistency, exactly-once "
                                       "and total order under errors")
        self.n.note(self.ctl.timing_note)
        self.ctl.fresh()
        try:
            self._iteration2(d)
        finally:
            for name in SECONDARIES:    # leave a running cluster as we found it
                try:
                    Http(self.ctl.url(name), timeout=5).set_faults(delay=0, error_rate=0)
                except ClientError:
                    pass

    def _iteration2(self, d: float) -> None:
        def slow() -> str:
            return str(Http(self.ctl.url(S2)).set_faults(delay=d))
        self.n.step(f"POST /faults {{\"delay\": {d:g}}} to {S2}",
                    f"{S2} sleeps {d:g} s before storing each batch", slow)

        w1 = self.msg("w=1: eventually everywhere")

        def at_once() -> str:
            body, took = self.post(w1, w=1)
            master, s2 = self.log_of("master"), self.log_of(S2)
            check(w1 in master, "the master does not list it")
            check(w1 not in s2, f"{S2} holds it already after {took:.2f} s: nothing to see")
            return (f"201 seq={body['seq']} acks={body['acks']} after {took * 1000:.0f} ms; "
                    f"master: {fmt.short_list(master)}; {S2}: {fmt.short_list(s2)} (they differ)")
        self.n.step(f'POST "{w1}" with w=1',
                    f"201 at once (only the master must hold it); {S2} does not hold it yet",
                    at_once)

        def agree() -> str:
            master = self.log_of("master")
            self.wait(lambda: self.log_of(S2) == master, f"{S2} to catch up")
            return f"master: {fmt.short_list(master)}; {S2}: {fmt.short_list(self.log_of(S2))}"
        self.n.step(f"GET /messages on the master and on {S2} until they agree",
                    f"after about {d:g} s {S2} holds the same list: eventual consistency", agree)

        w2 = self.msg("w=2: master and one secondary")

        def two() -> str:
            body, took = self.post(w2, w=2)
            check(body["acks"] >= 2, f"201 with acks={body['acks']}")
            check(w2 in self.log_of(S1), f"201 but {S1} does not hold it")
            return (f"201 acks={body['acks']} after {took:.2f} s, {S1} holds it; "
                    f"{S2} holds it: {w2 in self.log_of(S2)}")
        self.n.step(f'POST "{w2}" with w=2',
                    f"waits for one secondary ({S1}, the fast one), not for {S2}", two)

        w3 = self.msg("w=3: every node")

        def three() -> str:
            body, took = self.post(w3, w=3)
            check(body["acks"] == 3, f"201 with acks={body['acks']}")
            check(took >= d * 0.9, f"201 after only {took:.2f} s: did not wait for {S2}")
            check(w3 in self.log_of(S2), f"201 but {S2} does not hold it")
            return f"201 acks=3 after {took:.2f} s; {S2} holds it"
        self.n.step(f'POST "{w3}" with w=3', f"waits for slow {S2}: {d:g} s or more", three)

        key = "demo-" + uuid.uuid4().hex[:8]
        dup = self.msg("sent twice with one id")

        def dedup() -> str:
            Http(self.ctl.url(S2)).set_faults(delay=0)
            first, _ = self.post(dup, w=3, key=key)
            second, _ = self.post(dup, w=3, key=key)
            count = self.log_of("master").count(dup)
            check(first["seq"] == second["seq"], f"two seqs: {first['seq']}, {second['seq']}")
            check(count == 1, f"the log holds it {count} times")
            return f"both 201 with seq={first['seq']}; the log holds it once"
        self.n.step(f'POST "{dup}" twice with id={key} (a client retrying)',
                    "the second POST appends nothing and answers the first one's seq", dedup)

        def errors() -> str:
            for name in SECONDARIES:
                Http(self.ctl.url(name)).set_faults(error_rate=0.3)
            return "both secondaries now fail 30% of replicate calls after storing"
        self.n.step("POST /faults {\"error_rate\": 0.3} to both secondaries",
                    "a replicate call may store the batch and still answer an error: the "
                    "master retries it", errors)

        texts = [self.msg(f"burst {i:02d}") for i in range(40)]

        def burst() -> str:
            t0 = time.monotonic()
            with ThreadPoolExecutor(4) as pool:
                replies = list(pool.map(lambda t: self.post(t, w=3)[0], texts))
            seqs = [r["seq"] for r in replies]
            check(len(set(seqs)) == len(seqs), "two messages got one seq")
            return (f"40 of 40 answered 201 with 40 distinct seqs in "
                    f"{time.monotonic() - t0:.2f} s")
        self.n.step("POST 40 messages with w=3 from 4 concurrent clients",
                    "all 40 answer 201 in spite of the errors (retries are invisible)", burst)

        def order() -> str:
            master = self.log_of("master")
            self.wait(lambda: all(self.log_of(n) == master for n in SECONDARIES),
                      "the secondaries to hold the master's list")
            for name in ("master",) + SECONDARIES:
                log = self.log_of(name)
                check(len(log) == len(set(log)), f"{name} holds a duplicate")
                check(all(log.count(t) == 1 for t in texts), f"{name} lacks one of the 40")
            return (f"{len(master)} messages, each once, in the same order on all three "
                    f"(retries stored nothing twice)")
        self.n.step("GET /messages on every node",
                    "each message exactly once, in one order on every node (total order)", order)

    # -- iteration 3 ------------------------------------------------------------------------
    def iteration3(self) -> None:
        self.n.scenario("iteration 3", "the acceptance test as written, then heartbeats and "
                                       "quorum")
        self.n.note(self.ctl.timing_note)
        self.require_control()
        self.ctl.fresh(up=(S1,))
        if self.ctl.own:
            self.n.note(f"M and {S1} started; {S2} is configured but not started. No waiting "
                        "step: the master answers HTTP only after it probed its secondaries.")
        else:
            self.n.note(f"{S2} stopped; M and {S1} keep running (the master is not restarted "
                        "here: the demo's own cluster shows the start itself)")
        msgs = [self.msg(f"Msg{i}") for i in range(1, 5)]

        def ok(text: str, w: int):
            def action() -> str:
                body, took = self.post(text, w=w)
                return f"201 seq={body['seq']} acks={body['acks']} in {fmt.duration(took)}"
            return action
        self.n.step(f"send {msgs[0]} with w=1", "Ok", ok(msgs[0], 1))
        self.n.step(f"send {msgs[1]} with w=2", f"Ok ({S1} ACKs)", ok(msgs[1], 2))

        msg3: dict = {}

        def send3() -> None:
            try:
                msg3["body"] = self.post(msgs[2], w=3, timeout=120)[0]
            except Exception as e:
                msg3["error"] = str(e)
        waiter = threading.Thread(target=send3, daemon=True)

        def waits() -> str:
            waiter.start()
            self.wait(lambda: self.health()["waiting"] >= 1 or not waiter.is_alive(),
                      "the master to report a waiting POST")
            check(waiter.is_alive(), f"it did not wait: {msg3}")
            return "it waits: master /health says waiting=1"
        self.n.step(f"send {msgs[2]} with w=3", f"the request waits: only 2 of 3 nodes are up",
                    waits)

        def while_waiting() -> str:
            body, took = self.post(msgs[3], w=1)
            check(waiter.is_alive(), f"{msgs[2]} stopped waiting: {msg3}")
            return (f"201 seq={body['seq']} in {fmt.duration(took)}; "
                    f"{msgs[2]} still waits")
        self.n.step(f"send {msgs[3]} with w=1", f"Ok at once, while {msgs[2]} waits",
                    while_waiting)

        def start_s2() -> str:
            self.ctl.start(S2)
            waiter.join(self.ctl.patience)
            check("body" in msg3, f"{msgs[2]} answered {msg3 or 'nothing yet'}")
            return f"{S2} is up; {msgs[2]} answered 201 seq={msg3['body']['seq']}"
        self.n.step(f"start {S2}", f"it catches up and {msgs[2]} answers Ok", start_s2)

        def s2_holds() -> str:
            self.wait(lambda: fmt.in_order(self.log_of(S2), msgs), f"{S2} to hold Msg1..Msg4")
            log = self.log_of(S2)
            if self.ctl.own:
                check(log == msgs, f"{S2} holds {log}")
            return f"{S2}: {fmt.short_list(log)}"
        self.n.step(f"GET /messages on {S2}", f"{', '.join(msgs)}, in this order", s2_holds)

        # heartbeats
        def paused() -> str:
            self.ctl.pause(S2)
            t0 = time.monotonic()
            self.wait(lambda: self.status(S2) != "Healthy", f"{S2} to leave Healthy")
            seen = self.status(S2)
            check(seen == "Suspected", f"went straight to {seen}")
            return f"Suspected after {time.monotonic() - t0:.1f} s of silence"
        self.n.step(f"pause {S2} (SIGSTOP: it holds its connections but answers nothing)",
                    "the master's heartbeats go unanswered: Suspected", paused)

        def unhealthy() -> str:
            self.wait(lambda: self.status(S2) == "Unhealthy", f"{S2} Unhealthy")
            h = self.health()
            check(not h["read_only"], f"Unhealthy, but read-only: {h['reason']}")
            return (f"Unhealthy; quorum {h['quorum']['available']} of {h['quorum']['size']}, "
                    f"{'read-only' if h['read_only'] else 'still writable'}")
        self.n.step("keep it paused", "Unhealthy; the master stays writable (2 of 3)",
                    unhealthy)

        def resumed() -> str:
            self.ctl.resume(S2)
            self.wait(lambda: self.status(S2) == "Healthy", f"{S2} Healthy again")
            return "Healthy again"
        self.n.step(f"resume {S2} (SIGCONT)", "it answers the next heartbeat: Healthy",
                    resumed)

        # quorum
        def both_down() -> str:
            for name in SECONDARIES:
                self.ctl.kill(name)
            self.wait(lambda: self.health()["read_only"], "the master to turn read-only")
            return f"read-only: {self.health()['reason']}"
        self.n.step("kill -9 both secondaries",
                    "once both are Unhealthy the master has no quorum (1 of 3): read-only",
                    both_down)

        def refused() -> str:
            try:
                self.master.append(self.msg("refused"), 1, 5.0)
            except ClientError as e:
                check(e.status == 503 and "read-only" in e.message, f"answered {e.message}")
                return f"answered {e.message}"
            raise Failed("answered 201: accepted without quorum")
        self.n.step("POST a message with w=1", "503 read-only, even though w=1", refused)

        def back() -> str:
            for name in SECONDARIES:
                self.ctl.start(name)
            self.wait(lambda: not self.health()["read_only"], "the master to be writable")
            body, took = self.post(self.msg("after quorum came back"), w=2)
            return f"writable again; POST w=2 answered 201 seq={body['seq']}"
        self.n.step("start both secondaries again", "quorum back: writable, a POST succeeds",
                    back)

    # -- faults -----------------------------------------------------------------------------
    def faults(self) -> None:
        self.n.scenario("faults", "kill -9 of a secondary while clients write, restart, "
                                  "catch-up")
        self.n.note(self.ctl.timing_note)
        self.require_control()
        self.ctl.fresh()
        stop, written, errors = threading.Event(), [], []

        def writer() -> None:
            http, i = Http(self.ctl.master_url, timeout=30), 0
            while not stop.is_set():
                text = self.msg(f"stream {i}")
                try:
                    http.append(text, 1, 10.0, None, 20.0)
                    written.append(text)
                except ClientError as e:
                    errors.append(e.message)
                i += 1
        thread = threading.Thread(target=writer, daemon=True)
        try:
            def streaming() -> str:
                thread.start()
                self.wait(lambda: len(written) >= 50, "50 writes")
                return f"{len(written)} written so far"
            self.n.step("a client writes a stream of w=1 messages", "all answer 201", streaming)

            def killed() -> str:
                self.ctl.kill(S2)
                at_kill = len(written)
                self.wait(lambda: len(written) >= at_kill + 50, "50 more writes")
                self.wait(lambda: self.status(S2) == "Unhealthy", f"{S2} Unhealthy")
                body, _ = self.post(self.msg("w=2 with secondary2 dead"), w=2)
                check(not errors, f"writes failed: {errors[:3]}")
                return (f"{len(written) - at_kill} more writes since the kill; {S2} "
                        f"Unhealthy; a w=2 POST answered 201 (acks={body['acks']})")
            self.n.step(f"kill -9 {S2} in the middle of the stream",
                        f"writes go on (2 of 3 is a quorum); {S2} turns Unhealthy", killed)

            def restarted() -> str:
                self.ctl.start(S2)
                lag_before = self.health()["secondaries"][S2]["lag"]
                self.wait(lambda: self.log_of(S2), f"{S2} to receive again")
                return f"{S2} is back (lag {lag_before} when it came up)"
            self.n.step(f"start {S2} again", "it comes back and the master resends what it lacks",
                        restarted)
        finally:
            stop.set()
            thread.join(30)

        def caught_up() -> str:
            master = self.log_of("master")
            self.wait(lambda: self.log_of(S2) == master, f"{S2} to hold the master's list")
            self.wait(lambda: self.health()["secondaries"][S2]["lag"] == 0
                      and self.status(S2) == "Healthy", f"{S2} Healthy with lag 0")
            check(self.log_of(S1) == master, f"{S1} differs")
            return (f"all three hold the same {len(master)} messages; {S2} Healthy, lag 0 "
                    f"({len(written)} stream writes, none refused)")
        self.n.step("stop the stream; compare the lists",
                    f"{S2} caught up: the same list on every node, lag 0", caught_up)

    # -- failover ---------------------------------------------------------------------------
    def view(self, name: str) -> dict | None:
        """A node's /health "failover" object; None when it does not answer."""
        try:
            return Http(self.ctl.url(name), timeout=0.5, retries=0).health().get("failover")
        except ClientError:
            return None

    def elected(self, names: list[str], above: int = -1) -> tuple[str, int] | None:
        """(name, epoch) of the node that says it is master, writable, in an epoch above
        `above`, and that every answering node follows; None while there is none."""
        views = {n: self.view(n) for n in names}
        for n, v in views.items():
            if v and v["role"] == "master" and v["writable"] and v["epoch"] > above and all(
                    o is None or o["master"] == n for o in views.values()):
                return n, v["epoch"]
        return None

    def failover(self) -> None:
        self.n.scenario("failover", "kill -9 of the master while clients write: an election, "
                                    "writes resume on the new master, the old one rejoins as "
                                    "a secondary")
        names = self.ctl.fresh_failover()
        self.n.note("own cluster: master, secondary1 and secondary2, each started with "
                    "--failover --cluster master,secondary1,secondary2 and a data directory; "
                    "default timings: election timeout 0.6-1.2 s, lease 0.5 s")
        state: dict = {}

        def first() -> str:
            t0 = time.monotonic()
            state["master"], state["epoch"] = self.wait(lambda: self.elected(names),
                                                        "a master to be elected")
            return (f"{state['master']} is master of epoch {state['epoch']} "
                    f"({fmt.duration(time.monotonic() - t0)} after the nodes answered); the "
                    "others follow it")
        self.n.step("start the three nodes with --failover",
                    "they elect one of them master (any one: the node named master has no "
                    "privilege) within a few seconds", first)
        m = state["master"]
        others = [n for n in names if n != m]
        urls = [self.ctl.url(n) for n in others] + [self.ctl.url(m)]   # a secondary first
        stop = threading.Event()
        acked: dict[int, list[tuple[float, str, str]]] = {1: [], 2: []}   # w -> (t, text, url)
        errors: list[str] = []

        def writer(w: int) -> None:
            # the Python client, given every node: it follows 307s, waits out 503s and moves
            # on from a node that does not answer (short timeouts: a dead one never will)
            client = Client(urls, timeout=1.0, retries=40, backoff_base=0.02,
                            backoff_cap=0.2, retry_after_cap=0.2)
            i = 0
            try:
                while not stop.is_set():
                    text = self.msg(f"w={w} #{i}")
                    try:
                        client.append(text, w=w)
                        acked[w].append((time.monotonic(), text, client.url))
                    except ReplogError as e:
                        errors.append(f"w={w} {text}: {e.message}")
                    i += 1
            finally:
                client.close()
        threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in (1, 2)]

        def by(url: str) -> str:
            return next((n for n in names if self.ctl.url(n) == url), url)
        try:
            def streaming() -> str:
                for t in threads:
                    t.start()
                self.wait(lambda: len(acked[1]) >= 30 and len(acked[2]) >= 30, "30 writes each")
                check(not errors, f"writes failed: {errors[:3]}")
                where = {by(u) for _, _, u in acked[1] + acked[2]}
                check(where == {m}, f"answered by {where}, not only {m}")
                return (f"{len(acked[1])} w=1 and {len(acked[2])} w=2 written, every one "
                        f"answered by {m} (307 from {others[0]} followed)")
            self.n.step("two clients write: a stream of w=1 messages and one of w=2 (a "
                        f"majority); each is given all three URLs, {others[0]}'s first",
                        f"{others[0]} answers 307 to {m}; the clients follow it; every write "
                        "answers 201", streaming)

            def killed() -> str:
                before = {w: len(a) for w, a in acked.items()}
                t0 = time.monotonic()
                self.ctl.kill(m)
                new, epoch = self.wait(lambda: self.elected(others, state["epoch"]),
                                       "another node to be elected", timeout=15)
                t_el = time.monotonic() - t0
                new_url, old_url = self.ctl.url(new), self.ctl.url(m)
                self.wait(lambda: all(any(u == new_url for _, _, u in acked[w][before[w]:])
                                      for w in (1, 2)), "writes to resume", timeout=15)
                # a write the old master answered just before it died may be timed after t0
                resumed = min(t for w in (1, 2) for t, _, u in acked[w] if u == new_url) - t0
                last_before = max(t for w in (1, 2) for t, _, u in acked[w] if u == old_url)
                state.update(new=new, new_epoch=epoch)
                check(not errors, f"writes failed: {errors[:3]}")
                return (f"{new} is master of epoch {epoch}, seen {t_el:.2f} s after the kill; "
                        f"the first write it acknowledged, {resumed:.2f} s after the kill "
                        f"({resumed + t0 - last_before:.2f} s after the last one {m} "
                        "acknowledged); no write failed")
            self.n.step(f"kill -9 the master ({m}) in the middle of the streams",
                        "another node is elected within about 1-2 s (election timeout 0.6-1.2 "
                        "s, then a majority's answer to its first heartbeats: its lease) and "
                        "the clients' writes resume on it, without an error", killed)
            new = state["new"]

            def resumed() -> str:
                at = len(acked[2])
                self.wait(lambda: len(acked[2]) >= at + 30, "30 more w=2 writes")
                where = {by(u) for _, _, u in acked[2][at:]}
                check(where == {new}, f"answered by {where}")
                return f"30 more w=2 writes, every one answered by {new}"
            self.n.step("keep writing", f"the new master {new} answers the writes", resumed)

            def rejoined() -> str:
                t0 = time.monotonic()
                self.ctl.start(m)
                v = self.wait(lambda: (lambda v: v if v and v["master"] == new else None)(
                    self.view(m)), f"{m} to follow {new}")
                check(v["role"] == "secondary", f"{m} says it is {v['role']}")
                self.wait(lambda: Http(self.ctl.url(new), timeout=5).health()["secondaries"]
                          [m]["status"] == "Healthy", f"{new} to see {m} Healthy")
                return (f"{m} is a secondary of epoch {v['epoch']} following {new}, "
                        f"{fmt.duration(time.monotonic() - t0)} after its start; {new} sees "
                        "it Healthy")
            self.n.step(f"start {m} again with its same command and data directory",
                        f"it rejoins as a secondary of {new} (it does not take the master "
                        "back) and catches up", rejoined)
        finally:
            stop.set()
            for t in threads:
                t.join(30)

        def same() -> str:
            logs: dict[str, list] = {}

            def agree() -> bool:
                logs.update({n: self.log_of_node(n) for n in names})
                return len({tuple(x) for x in logs.values()}) == 1
            self.wait(agree, "the three logs to agree")
            log = logs[new]
            missing2 = [t for _, t, _ in acked[2] if t not in log]
            twice = sorted({t for t in log if log.count(t) > 1})
            check(not missing2, f"acknowledged w=2 writes missing: {missing2[:3]}")
            check(not errors, f"writes failed: {errors[:3]}")
            # a write in flight at the kill is retried by its client with the same key; the
            # keys travel with the entries, so the new master answers it, never appends twice
            check(not twice, f"held twice: {twice}")
            said = (f"all three hold the same {len(log)} messages; all {len(acked[2])} "
                    "acknowledged w=2 writes are in it")
            return said + ", each once"
        self.n.step("stop the clients; GET /messages on every node",
                    "the same list on every node; every acknowledged w=2 write in it, each "
                    "once (a write retried across the kill with its id is not appended again)",
                    same)

        def cut() -> str:
            h = Http(self.ctl.url(m), timeout=5).health()
            metric = self.metric(m, "replog_secondary_cut_messages")
            log = self.log_of_node(new)
            lost = [t for _, t, _ in acked[1] if t not in log]
            check(h.get("cut") == metric, f"/health says cut={h.get('cut')}, "
                                          f"/metrics says {metric}")
            check(len(lost) <= (h.get("cut") or 0),
                  f"{len(lost)} acknowledged w=1 writes are missing but only {h.get('cut')} "
                  f"were cut (recorded): {lost[:3]}")
            if not h.get("cut"):
                return (f"{m} cut nothing (cut=0, replog_secondary_cut_messages_total 0): every "
                        f"write it acknowledged before the kill had reached a secondary, so "
                        f"all {len(acked[1])} acknowledged w=1 writes survived this time")
            return (f"{m} cut {h['cut']} message(s) when it rejoined (replog_secondary_cut_"
                    f"messages_total {metric:g}); {len(lost)} of them were acknowledged w=1 "
                    "writes: "
                    f"{fmt.short_list(lost)}; the other {h['cut'] - len(lost)} were never "
                    "acknowledged (it died before answering)")
        self.n.step(f"look for w=1 writes that {m} acknowledged but never replicated",
                    "any such write was cut from its log when it rejoined, and counted (its "
                    "/health \"cut\", metric replog_secondary_cut_messages); often there is "
                    "none: the master sends a write on at once", cut)

    def log_of_node(self, name: str) -> list[str]:
        return Http(self.ctl.url(name), timeout=10).messages()["messages"]

    def metric(self, name: str, metric: str) -> float | None:
        """One value of a node's GET /metrics (Prometheus text), None if absent."""
        reply = Http(self.ctl.url(name), timeout=5).request("GET", "/metrics")
        text = reply.body if isinstance(reply.body, str) else ""
        for line in text.splitlines():      # a counter is exposed with the suffix _total
            if line.split("{")[0].split(" ")[0] in (metric, metric + "_total"):
                return float(line.rsplit(" ", 1)[1])
        return None


@click.command(context_settings={"help_option_names": ["-h", "--help"],
                                 "max_content_width": 100})
@click.argument("scenario", type=click.Choice(SCENARIOS + ("all",)))
@click.option("--pace", type=click.FloatRange(0), default=0.0, show_default=True,
              envvar="REPLOG_PACE", show_envvar=True,
              help="seconds to pause after each step (for a classroom)")
@click.option("--master", "master", envvar="REPLOG_DEMO_MASTER", show_envvar=True,
              help="use this running cluster instead of starting one")
@click.option("--secondary", "secondaries", multiple=True, metavar="NAME=URL",
              envvar="REPLOG_DEMO_SECONDARIES", show_envvar=True,
              help="a running cluster's secondary URL [default: master's port + 1, + 2]")
@click.option("--control", type=click.Choice(["none", "compose"]), default="none",
              show_default=True, envvar="REPLOG_DEMO_CONTROL", show_envvar=True,
              help="with --master: how to stop/kill/pause/start secondaries; none skips the "
                   "scenarios that need it")
@click.option("--compose-file", envvar="REPLOG_COMPOSE_FILE", show_envvar=True,
              help="docker-compose.yml of the running cluster (--control compose)")
@click.option("--compose-project", envvar="REPLOG_COMPOSE_PROJECT", show_envvar=True,
              help="compose project name (--control compose)")
@click.option("--delay", type=click.FloatRange(0.2, 30), default=1.0, show_default=True,
              envvar="REPLOG_DEMO_DELAY", show_envvar=True,
              help="seconds the slow secondary sleeps per replicate call (iteration 2: "
                   "at least 1.5)")
@click.option("--keep-logs", is_flag=True, envvar="REPLOG_KEEP_LOGS", show_envvar=True,
              help="keep the own cluster's node logs (kept anyway when a step failed)")
def demo(scenario: str, pace: float, master: str | None, secondaries: tuple[str, ...],
         control: str, compose_file: str | None, compose_project: str | None, delay: float,
         keep_logs: bool) -> None:
    """Walk through the assignment's scenarios, printing each step as what we do / what
    should happen / what happened; exit 1 if any expectation failed.

    \b
    iteration1  blocking replication with a delayed secondary; every node the same list
    iteration2  w=1 at once, lists differ then agree; w=2, w=3 wait; dedup, total order
                under injected errors
    iteration3  the acceptance test as written; heartbeats (pause: Suspected, Unhealthy,
                Healthy); quorum (both down: read-only; back: writable)
    faults      kill -9 of a secondary while a client writes; restart; catch-up
    failover    every node --failover: kill -9 of the master while clients write; the
                election; writes resume on the new master; the old one rejoins as a
                secondary; w=1 writes cut, if any
    all         all of the above, each on a fresh cluster
    """
    console = Console(highlight=False, soft_wrap=True)
    narrator = Narrator(console.print, pace)
    started = time.monotonic()
    try:
        if master:
            urls = fmt.secondary_urls(master, list(SECONDARIES), fmt.pairs(secondaries))
            ctl: Controller = (ComposeController(master, urls, compose_file, compose_project)
                               if control == "compose" else RemoteController(master, urls))
        else:
            console.print("[dim]starting a local cluster (name server, master, "
                          "secondary1, secondary2) on free ports ...[/dim]")
            ctl = LocalController()
    except (ValueError, ClientError) as e:
        raise click.UsageError(str(e)) from None
    kept = None
    try:
        d = Demo(narrator, ctl, delay)
        names = SCENARIOS if scenario == "all" else (scenario,)
        if scenario == "all" and not ctl.own:
            # a running cluster is fixed-master or failover for good: `all` runs what it can
            names = tuple(n for n in names if n != "failover")
            console.print("[dim]`all` on a running cluster leaves out failover, which starts "
                          "a cluster of its own: `replog demo failover`[/dim]")
        for name in names:
            narrator.run(name, getattr(d, name))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
        narrator.results.append(Result("interrupted", 0, "Ctrl-C", False, "interrupted"))
    finally:
        kept = ctl.close(keep_logs=keep_logs or bool(narrator.failures))
    code = narrator.exit_code()
    style = "bold green" if code == 0 else "bold red"
    console.print(f"\n[{style}]{escape(narrator.summary())}[/{style}] "
                  f"[dim]in {time.monotonic() - started:.1f} s[/dim]")
    if kept:
        console.print(f"[dim]node logs kept in {kept}[/dim]")
    sys.exit(code)
