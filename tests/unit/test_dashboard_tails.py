"""The dashboard's Tails in one process, on OS threads (no gevent here): it keeps state and
one loop per secondary the master currently knows, and forgets the ones that left."""
import random
import threading
import uuid

from nodes import dashboard, rpc
from nodes.launcher import wait_until


class FakeMaster:
    """What Tails reads of the master: the Pyro5 URIs of the secondaries it knows."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.uris: dict[str, str] = {}

    def know(self, names) -> None:
        with self.lock:
            self.uris = {n: f"PYRO:{n}@x:1" for n in names}

    def secondary_uris(self) -> dict[str, str]:
        with self.lock:
            return dict(self.uris)


class FakeProxy:
    """A secondary answering tail(): its one message names it."""

    def __init__(self, uri: str, timeout: float) -> None:
        self.name = uri.split(":")[1].split("@")[0]

    def tail(self, n: int) -> dict:
        return {"ack": 1, "tail": [[1, self.name]], "held": []}

    def _pyroRelease(self) -> None:
        pass


def loops(prefix: str) -> list[str]:
    """Names of the tail loops still running for secondaries named prefix*."""
    return sorted(t.name for t in threading.enumerate()
                  if t.name.startswith(f"tail-{prefix}") and t.is_alive())


def make(monkeypatch):
    monkeypatch.setattr(rpc, "proxy", FakeProxy)
    master = FakeMaster()
    return master, dashboard.Tails(master, interval=0.01, timeout=0.5, watch_for=30)


def test_secondaries_that_come_and_go_leave_no_loop_and_no_state_behind(monkeypatch):
    master, tails = make(monkeypatch)
    prefix = uuid.uuid4().hex[:8]
    for i in range(25):                      # 25 secondaries, one after the other
        name = f"{prefix}-{i}"
        master.know([name])
        tails.watch([name])                  # what GET /cluster does with health's names
        wait_until(lambda: name in tails.latest, 5, what=f"the tail of {name}")
    last = f"{prefix}-24"
    wait_until(lambda: loops(prefix) == [f"tail-{last}"], 5,
               what=f"only {last}'s loop to run (running: {loops(prefix)})")
    assert set(tails.latest) == {last}
    assert tails.latest[last]["tail"] == [[1, last]]
    master.know([])
    tails.watch([])
    wait_until(lambda: not loops(prefix) and not tails.latest, 5, what="nothing left")


def test_a_name_that_leaves_and_comes_back_has_one_loop(monkeypatch):
    master, tails = make(monkeypatch)
    prefix = uuid.uuid4().hex[:8]
    a, b = f"{prefix}-a", f"{prefix}-b"
    master.know([a, b])
    for names in ([a, b], [b], [a, b], [b], [a, b]):
        tails.watch(names)
    wait_until(lambda: loops(prefix) == [f"tail-{a}", f"tail-{b}"], 5,
               what=f"one loop each for a and b (running: {loops(prefix)})")
    wait_until(lambda: set(tails.latest) == {a, b}, 5, what="both tails")


def test_many_threads_watching_at_once_start_at_most_one_loop_per_name(monkeypatch):
    master, tails = make(monkeypatch)
    prefix = uuid.uuid4().hex[:8]
    names = [f"{prefix}-{i}" for i in range(6)]
    master.know(names)
    go = threading.Barrier(8)

    def page(seed: int) -> None:             # 8 request handlers, each on its own OS thread
        rnd = random.Random(seed)
        go.wait()
        for _ in range(300):
            tails.watch(rnd.sample(names, rnd.randint(0, len(names))))

    workers = [threading.Thread(target=page, args=(i,)) for i in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    tails.watch(names[:3])
    wait_until(lambda: loops(prefix) == sorted(f"tail-{n}" for n in names[:3]), 5,
               what=f"one loop per watched name (running: {loops(prefix)})")
    wait_until(lambda: set(tails.latest) == set(names[:3]), 5, what="state of those only")


def test_the_dashboard_imports_neither_the_http_edge_nor_the_master():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", "import sys, nodes.dashboard; print(sorted("
                          "m for m in sys.modules if m in ('nodes.web', 'nodes.master')))"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"
