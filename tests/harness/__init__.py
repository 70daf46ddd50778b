"""An in-process cluster for the master's shell, as etcd raft's rafttest: the real Master
(nodes/master/) on OS threads, with a fake transport whose secondaries are the real
Secondary class (nodes/secondary_node.py) called directly, and a fake name server.

Faults are set per secondary: down (calls refused), a hook that can raise or change an
answer, and the Secondary's own injected delay. Timings are short, so a test of restarts,
catch-up or pipelining takes milliseconds, not a process start-up.

    with Harness(["s1", "s2"]) as h:
        h.master.append("x", 3)
        h.wait_for(lambda: h.held("s1") == ["x"])
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from nodes.core.calls import Pipeline
from nodes.core.health import HealthPolicy
from nodes.core.progress import Backoff
from nodes.master import Master, Timing
from nodes.secondary_node import Secondary

FAST = Timing(rpc_timeout=2.0, heartbeat_interval=0.02, heartbeat_timeout=0.5,
              discovery_interval=0.05, startup_wait=0.5)
FAST_POLICY = HealthPolicy(suspect_after=0.1, unhealthy_after=0.3)


class Down(ConnectionRefusedError):
    pass


class Endpoint:
    """One registered secondary process: the real Secondary plus the faults around it."""

    def __init__(self, secondary: Secondary) -> None:
        self.secondary = secondary
        self.down = False
        # hook(method name, args) -> None (go on) or raises; after(method, reply) -> reply
        self.before: Callable[[str, tuple], None] | None = None
        self.after: Callable[[str, Any], Any] | None = None
        self.calls: dict[str, int] = {}
        self.active = 0              # replicate calls running at this moment
        self.most_active = 0
        self._lock = threading.Lock()

    def call(self, method: str, args: tuple) -> Any:
        if self.down:
            raise Down(f"{self.secondary.name} is down")
        with self._lock:
            self.calls[method] = self.calls.get(method, 0) + 1
            if method == "replicate":
                self.active += 1
                self.most_active = max(self.most_active, self.active)
        try:
            if self.before is not None:
                self.before(method, args)
            reply = getattr(self.secondary, method)(*args)
        finally:
            if method == "replicate":
                with self._lock:
                    self.active -= 1
        if self.down:        # it went down while the call ran: the answer is lost
            raise Down(f"{self.secondary.name} went down")
        return self.after(method, reply) if self.after is not None else reply


class Proxy:
    """A proxy with a timeout: the call runs in its own thread, as a remote call would."""

    def __init__(self, net: "Net", uri: str, timeout: float) -> None:
        self.net, self.uri, self.timeout = net, uri, timeout

    def __getattr__(self, method: str) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            endpoint = self.net.endpoints.get(self.uri)
            if endpoint is None:
                raise Down(f"nothing listens at {self.uri}")
            box: dict[str, Any] = {}

            def run() -> None:
                try:
                    box["reply"] = endpoint.call(method, args)
                except BaseException as e:     # delivered to the caller as a remote error
                    box["error"] = e
            t = threading.Thread(target=run, daemon=True)
            t.start()
            t.join(self.timeout)
            if t.is_alive():
                raise TimeoutError(f"{method} to {self.uri} timed out after {self.timeout} s")
            if "error" in box:
                raise box["error"]
            return box["reply"]
        return call


class Net:
    """The transport the Master is given: endpoints by URI and a name server."""

    def __init__(self) -> None:
        self.endpoints: dict[str, Endpoint] = {}
        self.names: dict[str, str] = {}      # the name server: secondary name -> uri
        self.ns_down = False

    def connect(self, uri: str, timeout: float) -> Proxy:
        return Proxy(self, uri, timeout)

    def release(self, proxy: Proxy) -> None:
        pass

    def registered(self) -> dict[str, str]:
        if self.ns_down:
            raise Down("the name server is down")
        return dict(self.names)

    def vet(self, name: str, uri: str, timeout: float) -> str:
        return ""


class Harness:
    def __init__(self, names: list[str], *, named: list[str] | None = None,
                 store: Any = None, pipeline: Pipeline | None = None,
                 timing: Timing = FAST, policy: HealthPolicy = FAST_POLICY,
                 delay: float = 0.0) -> None:
        self.net = Net()
        self._ports = iter(range(10_000, 20_000))
        self.endpoints: dict[str, Endpoint] = {}
        for name in names:
            self.start_secondary(name, delay=delay)
        self.master = Master(list(names if named is None else named), policy,
                             Backoff(0.01, 0.1), timing, self.net, store=store,
                             pipeline=pipeline)

    def __enter__(self) -> "Harness":
        self.master.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        for endpoint in self.endpoints.values():
            endpoint.secondary.set_faults(delay=0)   # let sleeping calls end
        self.master.stop()

    def start_secondary(self, name: str, delay: float = 0.0, new_address: bool = True
                        ) -> Endpoint:
        """Start (or restart: a new incarnation with an empty log) secondary `name`."""
        old = self.endpoints.get(name)
        if old is not None:
            old.down = True
        uri = (f"PYRO:replog.secondary.{name}@127.0.0.1:{next(self._ports)}"
               if new_address or old is None else self.net.names[name])
        endpoint = Endpoint(Secondary(name, delay=delay))
        self.endpoints[name] = self.net.endpoints[uri] = endpoint
        self.net.names[name] = uri
        return endpoint

    def held(self, name: str) -> list[str]:
        return self.endpoints[name].secondary.messages()

    @staticmethod
    def wait_for(check: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {what or check}")
            time.sleep(0.005)
