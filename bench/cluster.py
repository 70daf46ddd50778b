"""The benchmark's view of a local cluster, and filling it with messages.

Shared by the cases; imports no case module.
"""

from __future__ import annotations

import time
from pathlib import Path

from .common import SECONDARIES, http_json, log, poll
from .procs import proc_pid


class Cluster:
    """A LocalCluster with the benchmark's view of it: URLs, pids, the master's Pyro URI."""

    def __init__(self, workdir: Path, master_flags: dict, secondary_flags: dict, tls_dir=None):
        from nodes.launcher import LocalCluster

        self.lc = LocalCluster(workdir, tls_dir=tls_dir)  # tls_dir: node plane over mutual TLS
        self._master_uri = None
        try:
            self.ns = self.lc.start_nameserver()
            self.secondaries = {name: self.lc.start_secondary(name, **secondary_flags)
                                for name in SECONDARIES}
            self.master = self.lc.start_master(secondaries=list(SECONDARIES), **master_flags)
            self.wait_healthy()
        except BaseException:
            self.lc.close()      # the caller never gets this object: stop what was started
            raise

    # -- addresses ---------------------------------------------------------------------
    def ns_address(self) -> tuple[str, int]:
        for obj in (self.ns, self.lc):
            for h, p in (("host", "port"), ("ns_host", "ns_port")):
                host, port = getattr(obj, h, None), getattr(obj, p, None)
                if isinstance(port, int) and port:
                    return host or "127.0.0.1", port
        url = getattr(self.ns, "url", None) or getattr(self.ns, "uri", None)
        if url:
            tail = str(url).rsplit("@", 1)[-1].split("//")[-1]
            host, _, port = tail.rstrip("/").rpartition(":")
            return host or "127.0.0.1", int(port)
        raise RuntimeError("cannot find the name server's address on the launcher objects")

    def master_uri(self) -> str:
        if self._master_uri is None:
            import Pyro5.api

            host, port = self.ns_address()
            with Pyro5.api.locate_ns(host=host, port=port) as ns:
                self._master_uri = str(ns.lookup("replog.master"))
        return self._master_uri

    def master_proxy(self):
        import Pyro5.api

        p = Pyro5.api.Proxy(self.master_uri())
        p._pyroTimeout = 120
        # marshal, as between the nodes: decoded in C, so filling leaves no parser garbage in the
        # master's heap to be charged to the stored messages (serpent builds an AST per call)
        p._pyroSerializer = "marshal"
        return p

    # -- state -------------------------------------------------------------------------
    def master_health(self) -> dict:
        status, body = http_json(self.master.url + "/health")
        if status != 200:
            raise RuntimeError(f"master /health -> {status}")
        return body

    def wait_healthy(self, timeout: float = 60.0) -> None:
        def ok():
            h = self.master_health()
            secs = h.get("secondaries", {})
            return (
                not h.get("read_only")
                and all(secs.get(n, {}).get("status") == "Healthy" for n in SECONDARIES)
            )

        poll(ok, timeout, 0.1, "a healthy cluster")

    def wait_drained(self, timeout: float = 120.0, names=SECONDARIES) -> dict:
        """Until every (named) secondary acknowledged everything the master holds."""

        def ok():
            h = self.master_health()
            last = h["last_seq"]
            secs = h["secondaries"]
            return h if all(secs[n]["acked_seq"] >= last for n in names) else None

        return poll(ok, timeout, 0.05, "replication to drain")

    def pids(self) -> dict:
        out = {"master": proc_pid(self.master)}
        for n, p in self.secondaries.items():
            out[n] = proc_pid(p)
        out["nameserver"] = proc_pid(self.ns)
        return out

    def close(self) -> None:
        try:
            self.lc.close()
        except Exception as e:  # noqa: BLE001
            log(f"closing the cluster: {e!r}")


def fill(proxy, count: int, size: int, batch: int, w: int, tag: str) -> float:
    """Append `count` distinct messages through append_many; returns the seconds taken."""
    t0 = time.perf_counter()
    done = 0
    pad = "x" * size
    while done < count:
        n = min(batch, count - done)
        msgs = [(f"{tag}{i:09d}" + pad)[:size] for i in range(done, done + n)]
        res = proxy.append_many(msgs, w=w)
        if not isinstance(res, dict) or "seq" not in res:
            raise RuntimeError(f"append_many answered {res!r}")
        done += n
    return time.perf_counter() - t0
