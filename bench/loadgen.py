"""Load generator: C concurrent clients appending to the master for T seconds.

Runs as its own process (``python -m bench.loadgen ...``) so that client CPU is never
charged to the master. Clients are spread over ``--procs`` worker processes (Python
threads share one GIL, so one process would serialise all client work); each worker
runs its share of the clients as threads.

HTTP mode keeps one keep-alive TCP connection per client and speaks HTTP/1.1 over a
raw socket with a preformatted request (no ``requests``, no ``http.client`` parsing),
so a request costs the client one ``sendall`` and a ``recv`` or two.

Pyro mode gives every client thread its own Pyro5 proxy (a proxy belongs to one
thread) and calls ``append(message, w=w)``.

Only requests that *start* after the warm-up and *finish* before the deadline count.
The result is one JSON object on stdout.

With ``--slice S --turn A`` (or ``B``) the window is cut into slices of S seconds, anchored
at its start, that two generators share in ABBA order (A, B, B, A, A, B, ...): each sends
only in its own slices and counts its requests by the slice they started in. Two of them,
started with the same ``--start-at``, load two clusters in turn, finely interleaved, so that
whatever the shared machine does meanwhile weighs on both alike (bench/security.py).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import resource
import socket
import sys
import threading
import time
from array import array
from urllib.parse import urlsplit


def percentile(sorted_values, q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..100)."""
    n = len(sorted_values)
    if n == 0:
        return float("nan")
    k = max(0, min(n - 1, math.ceil(q / 100.0 * n - 1e-9) - 1))
    return sorted_values[k]


ABBA = "ABBA"


def turn_of(t_start: float, slice_s: float, now: float) -> tuple[int, str]:
    """(index of the slice `now` falls in, whose turn it is: "A" or "B")."""
    k = math.floor((now - t_start) / slice_s)
    return k, ABBA[k % 4]


def next_turn_at(t_start: float, slice_s: float, now: float, turn: str) -> float:
    """When the next slice that is `turn`'s begins (after the one `now` falls in)."""
    k = math.floor((now - t_start) / slice_s) + 1
    while ABBA[k % 4] != turn:
        k += 1
    return t_start + k * slice_s


def make_payload(size: int, tag: str = "") -> str:
    """An ASCII message of exactly ``size`` characters."""
    base = (tag + "-" if tag else "") + "m"
    return (base + "x" * size)[:size]


# --------------------------------------------------------------------------- HTTP client


class RawHTTPClient:
    """Minimal keep-alive HTTP/1.1 client for one fixed request."""

    def __init__(self, host: str, port: int, request: bytes, timeout: float, tls=None):
        self.host, self.port, self.request, self.timeout = host, port, request, timeout
        self.tls = tls      # an ssl.SSLContext for https:// (bench/security.py)
        self.sock: socket.socket | None = None
        self.buf = b""

    def connect(self) -> None:
        self.close()
        s = socket.create_connection((self.host, self.port), timeout=self.timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            s = self.tls.wrap_socket(s)
        self.sock = s
        self.buf = b""

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def roundtrip(self) -> tuple[int, bytes]:
        """Send the request, return (status, body). Raises on I/O or protocol errors."""
        if self.sock is None:
            self.connect()
        self.sock.sendall(self.request)
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            self._fill()
        head = self.buf[:end]
        rest = self.buf[end + 4 :]
        status = int(head[9:12])
        length = -1
        chunked = False
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if chunked:
            body = self._read_chunked(rest)
        elif length >= 0:
            self.buf = rest
            while len(self.buf) < length:
                self._fill()
            body, self.buf = self.buf[:length], self.buf[length:]
        else:  # body until close
            self.buf = rest
            try:
                while True:
                    self._fill()
            except ConnectionError:
                pass
            body, close = self.buf, True
        if close:
            self.close()
        return status, body

    def _read_chunked(self, rest: bytes) -> bytes:
        self.buf = rest
        out = []
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            line, _, self.buf = self.buf.partition(b"\r\n")
            size = int(line.split(b";")[0], 16)
            while len(self.buf) < size + 2:
                self._fill()
            out.append(self.buf[:size])
            self.buf = self.buf[size + 2 :]
            if size == 0:
                # no trailers expected
                return b"".join(out)


def build_request(host: str, port: int, path: str, body: bytes, token: str = "") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        + (f"Authorization: Bearer {token}\r\n" if token else "")
        + "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


# --------------------------------------------------------------------------- workers


class Stats:
    def __init__(self):
        self.lat = array("d")  # seconds, of counted requests
        self.ok = 0
        self.errors = 0
        self.kinds: dict[str, int] = {}
        self.slices: dict[int, int] = {}   # with --slice: slice index -> counted requests
        self.lock = threading.Lock()

    def error(self, kind: str) -> None:
        with self.lock:
            self.errors += 1
            self.kinds[kind] = self.kinds.get(kind, 0) + 1


def _http_client_thread(args, idx, t_start, t_end, stats: Stats, ready: threading.Barrier):
    u = urlsplit(args.url)
    host, port = u.hostname, u.port or (443 if u.scheme == "https" else 80)
    tls = None
    if u.scheme == "https":
        import ssl
        tls = ssl.create_default_context(cafile=args.ca or None)
        tls.check_hostname = False
    body = {"message": make_payload(args.size, f"c{os.getpid()}.{idx}")}
    if args.w:
        body["w"] = args.w
    if args.req_timeout:
        body["timeout"] = args.req_timeout
    req = build_request(host, port, args.path, json.dumps(body, separators=(",", ":")).encode(),
                        os.environ.get("REPLOG_BENCH_TOKEN", ""))
    client = RawHTTPClient(host, port, req, timeout=max(30.0, 2 * (args.req_timeout or 0)),
                           tls=tls)
    lat = array("d")
    ok = 0
    slices: dict[int, int] = {}
    k = 0
    try:
        client.connect()
    except OSError as e:
        stats.error(f"connect: {type(e).__name__}")
    ready.wait()
    _sleep_until(t_start - args.warmup)
    clock = time.perf_counter
    wall = time.time
    while True:
        now = wall()
        if now >= t_end:
            break
        if args.slice:
            k, turn = turn_of(t_start, args.slice, now)
            if turn != args.turn:
                time.sleep(max(0.0, next_turn_at(t_start, args.slice, now, args.turn) - wall()))
                continue
        counted = now >= t_start
        t0 = clock()
        try:
            status, _ = client.roundtrip()
        except (OSError, ValueError, ConnectionError) as e:
            client.close()
            if counted:
                stats.error(type(e).__name__)
            time.sleep(0.01)
            continue
        t1 = clock()
        if status not in (200, 201):
            if counted and wall() <= t_end:
                stats.error(f"http {status}")
            continue
        if counted and wall() <= t_end:
            lat.append(t1 - t0)
            ok += 1
            slices[k] = slices.get(k, 0) + 1
    client.close()
    with stats.lock:
        stats.lat.extend(lat)
        stats.ok += ok
        for i, n in slices.items():
            stats.slices[i] = stats.slices.get(i, 0) + n


def _pyro_client_thread(args, idx, t_start, t_end, stats: Stats, ready: threading.Barrier):
    import Pyro5.api
    import Pyro5.errors

    msg = make_payload(args.size, f"c{os.getpid()}.{idx}")
    lat = array("d")
    ok = 0
    proxy = None
    try:
        proxy = Pyro5.api.Proxy(args.pyro_uri)
        proxy._pyroTimeout = max(30.0, 2 * (args.req_timeout or 0))
        proxy._pyroBind()
    except Exception as e:  # noqa: BLE001 - report any failure as an error kind
        stats.error(f"connect: {type(e).__name__}")
    ready.wait()
    _sleep_until(t_start - args.warmup)
    clock = time.perf_counter
    wall = time.time
    kw = {}
    if args.w:
        kw["w"] = args.w
    if args.req_timeout:
        kw["timeout"] = args.req_timeout
    method = args.pyro_method
    while True:
        now = wall()
        if now >= t_end:
            break
        counted = now >= t_start
        t0 = clock()
        try:
            getattr(proxy, method)(msg, **kw)
        except Exception as e:  # noqa: BLE001
            if counted:
                stats.error(type(e).__name__)
            try:
                proxy._pyroRelease()
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.01)
            continue
        t1 = clock()
        if counted and wall() <= t_end:
            lat.append(t1 - t0)
            ok += 1
    try:
        proxy._pyroRelease()
    except Exception:  # noqa: BLE001
        pass
    with stats.lock:
        stats.lat.extend(lat)
        stats.ok += ok


def _sleep_until(t: float) -> None:
    while True:
        d = t - time.time()
        if d <= 0:
            return
        time.sleep(min(d, 0.05))


def _worker(args, n_clients: int, first_idx: int, t_start: float, t_end: float, conn) -> None:
    stats = Stats()
    target = _http_client_thread if args.mode == "http" else _pyro_client_thread
    ready = threading.Barrier(n_clients)
    threads = [
        threading.Thread(
            target=target, args=(args, first_idx + i, t_start, t_end, stats, ready), daemon=True
        )
        for i in range(n_clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    conn.send(
        {
            "ok": stats.ok,
            "errors": stats.errors,
            "kinds": stats.kinds,
            "slices": stats.slices,
            "cpu_s": ru.ru_utime + ru.ru_stime,
            "lat": stats.lat.tobytes(),
        }
    )
    conn.close()


def run(args) -> dict:
    procs = max(1, min(args.procs, args.clients))
    # start far enough ahead that every worker has forked and connected
    t_start = args.start_at or (time.time() + args.startup + args.warmup)
    t_end = t_start + args.seconds
    ctx = mp.get_context("fork")
    workers = []
    idx = 0
    for p in range(procs):
        n = args.clients // procs + (1 if p < args.clients % procs else 0)
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=(args, n, idx, t_start, t_end, child), daemon=True)
        proc.start()
        child.close()
        workers.append((proc, parent))
        idx += n
    lat = array("d")
    ok = errors = 0
    kinds: dict[str, int] = {}
    slices: dict[int, int] = {}
    cpu = 0.0
    for proc, parent in workers:
        res = parent.recv()
        proc.join()
        ok += res["ok"]
        errors += res["errors"]
        cpu += res["cpu_s"]
        for k, v in res["kinds"].items():
            kinds[k] = kinds.get(k, 0) + v
        for k, v in res["slices"].items():
            slices[k] = slices.get(k, 0) + v
        chunk = array("d")
        chunk.frombytes(res["lat"])
        lat.extend(chunk)
    s = sorted(lat)
    ms = 1000.0
    active = args.seconds / 2 if args.slice else args.seconds   # half the slices are ours
    sliced = {}
    if args.slice:
        ours = [k for k in range(round(args.seconds / args.slice))
                if ABBA[k % 4] == args.turn]
        sliced = {"slice_s": args.slice, "turn": args.turn,
                  "per_slice": {str(k): slices.get(k, 0) for k in ours}}
    return {
        "mode": args.mode,
        "w": args.w,
        "clients": args.clients,
        "procs": procs,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "message_bytes": args.size,
        "requests": ok,
        "errors": errors,
        "error_kinds": kinds,
        "appends_per_s": ok / active,
        **sliced,
        "latency_ms": {
            "p50": percentile(s, 50) * ms if s else None,
            "p90": percentile(s, 90) * ms if s else None,
            "p99": percentile(s, 99) * ms if s else None,
            "max": s[-1] * ms if s else None,
            "mean": (sum(s) / len(s)) * ms if s else None,
        },
        "client_cpu_s": cpu,
        "window": [t_start, t_end],
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=["http", "pyro"], default="http")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="HTTP base URL (http mode)")
    p.add_argument("--path", default="/messages")
    p.add_argument("--ca", default="", help="CA file of an https:// --url's certificate "
                                            "(the token, if any, comes in REPLOG_BENCH_TOKEN)")
    p.add_argument("--pyro-uri", default=None, help="PYRO:... or PYRONAME:... (pyro mode)")
    p.add_argument("--pyro-method", default="append")
    p.add_argument("--w", type=int, default=None, help="write concern (omitted when not given)")
    p.add_argument("--req-timeout", type=float, default=None, help="'timeout' field per request")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--procs", type=int, default=2, help="client worker processes")
    p.add_argument("--seconds", type=float, default=10.0, help="measured window")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured load before the window")
    p.add_argument("--startup", type=float, default=0.5, help="time allowed to fork and connect")
    p.add_argument("--size", type=int, default=100, help="message size in bytes")
    p.add_argument("--start-at", type=float, default=None,
                   help="wall-clock (time.time()) start of the measured window; default: now + startup + warmup")
    p.add_argument("--slice", type=float, default=0.0,
                   help="share the window with another generator in slices of this many "
                        "seconds, ABBA order (0: send all the time)")
    p.add_argument("--turn", choices=["A", "B"], default="A", help="this generator's slices")
    args = p.parse_args(argv)
    if args.mode == "pyro" and not args.pyro_uri:
        p.error("--pyro-uri is required in pyro mode")
    if args.slice:
        if args.mode != "http":
            p.error("--slice works in http mode")
        n = args.seconds / args.slice
        if abs(n - round(n)) > 1e-9 or round(n) % 4:
            p.error("--seconds must be a multiple of 4 --slice (whole ABBA groups)")
    return args


def _refuse_if_patched() -> None:
    """The load generator is the client: it must run on real OS threads and sockets, never in
    a gevent-patched process (the servers are; their cost must not leak into the clients)."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("socket"):
        raise SystemExit("bench.loadgen must not run in a gevent-patched process")


def main(argv=None) -> int:
    args = parse_args(argv)
    _refuse_if_patched()
    result = run(args)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
