"""The security part of ``python -m bench`` (``--only security``): what the client plane's
defences (HTTPS, tokens, per-client bounds, read deadlines; nodes/auth.py, nodes/edge.py)
cost, and whether hostile clients hurt a well-behaved one.

1. token check: microseconds per Guard.authorize (SHA-256 of the presented token, compared
   in constant time with every entry of a file of TOKEN_FILE_SIZE tokens), in this process;
2. secure vs plain: HTTP w=3 appends/s on a cluster serving HTTPS and checking tokens against
   one serving plain HTTP without tokens, both up for the whole comparison, loaded in turn
   by two load generators that share the time in slices of --security-slice seconds (2; 1
   with --quick) in ABBA order (plain, secure, secure, plain, ...), --security-pairs pairs
   of slices (16; 2 with --quick), compared as the ratio of the sums (target >= 0.85);
3. slow clients: a well-behaved client (a quarter of --clients keep-alive connections,
   w=3) on a plain cluster, without and then with a hostile process holding 1,000 idle
   connections and 1,000 request bodies trickled a byte at a time (--security-idle,
   --security-trickle) open; its p99 with them against without (target <= 2x). The hostile
   process reopens what the node closes (idle and body deadlines) and says how often it had to.
"""
from __future__ import annotations

import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .common import REPO, log

TARGET_SECURE_VS_PLAIN = 0.85
TARGET_P99_RATIO = 2.0
TOKEN_FILE_SIZE = 20
SECONDARIES = ("s1", "s2")
LOADGEN_STARTUP_S = 3.0    # for both load generators to start, fork and connect


def add_args(parser) -> None:
    g = parser.add_argument_group("security part")
    g.add_argument("--security-idle", type=int, default=1000,
                   help="idle connections the hostile client holds open (security part)")
    g.add_argument("--security-trickle", type=int, default=1000,
                   help="request bodies the hostile client trickles, one byte per connection "
                        "per second (security part)")
    g.add_argument("--security-pairs", type=int, default=16,
                   help="plain/secure pairs of slices, in ABBA order; even (security part; "
                        "quick 2)")
    g.add_argument("--security-slice", type=float, default=2.0,
                   help="seconds of one slice of the plain/secure comparison (security part; "
                        "quick 1)")


# -- 1. one token check ----------------------------------------------------------------

def token_check(workdir: Path, n: int = 200_000) -> dict:
    from nodes import auth, tokens
    path = workdir / "security-tokens.json"
    toks = [tokens.add(path, f"t{i}", ["append", "read"]) for i in range(TOKEN_FILE_SIZE)]
    guard = auth.Guard(lambda e, s: [], tokens.TokenStore(path))
    route = auth.route_of("POST", "/messages")
    header = f"Bearer {toks[-1]}"
    open_guard = auth.Guard(lambda e, s: [], None)
    out = {"tokens_in_file": TOKEN_FILE_SIZE}
    for name, g in (("token_us", guard), ("no_tokens_us", open_guard)):
        assert g.authorize(route, header)[0] == 200
        t0 = time.perf_counter()
        for _ in range(n):
            g.authorize(route, header)
        out[name] = round((time.perf_counter() - t0) / n * 1e6, 2)
    return out


# -- load through the load generator (HTTPS and a token when given) --------------------------

def _start_loadgen(args, url: str, w: int, clients: int, ca: Path | None = None,
                   token: str | None = None, seconds: float | None = None,
                   extra: tuple = ()) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bench.loadgen", "--mode", "http", "--url", url,
           "--w", str(w), "--clients", str(clients), "--procs", str(min(args.procs, clients)),
           "--seconds", str(seconds or args.seconds), "--warmup", str(args.warmup),
           "--size", str(args.size), *map(str, extra)]
    if ca:
        cmd += ["--ca", str(ca)]
    env = dict(os.environ)
    if token:
        env["REPLOG_BENCH_TOKEN"] = token     # not on the command line (ps shows that)
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _result(proc: subprocess.Popen, timeout: float) -> dict:
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"load generator still running after {timeout:g} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode}): {stderr[-2000:]}")
    res = json.loads(stdout.strip().splitlines()[-1])
    out = {"appends_per_s": round(res["appends_per_s"], 1), "errors": res["errors"],
           "error_kinds": res["error_kinds"],
           "latency_ms": {k: (round(v, 3) if v is not None else None)
                          for k, v in res["latency_ms"].items()}}
    if "per_slice" in res:
        out["per_slice"] = res["per_slice"]
    return out


def _loadgen(args, url: str, w: int, clients: int) -> dict:
    return _result(_start_loadgen(args, url, w, clients), args.seconds + args.warmup + 120)


class _Cluster:
    """Name server, master, s1, s2; secure: HTTPS on every node and a token file."""

    def __init__(self, workdir: Path, master_flags: dict, secondary_flags: dict,
                 secure: bool) -> None:
        from nodes import tokens
        from nodes.launcher import LocalCluster, http_json, wait_until
        tfile = workdir / "tokens.json" if secure else None
        self.lc = LocalCluster(workdir, https=secure, tokens=tfile)
        self.token = tokens.add(tfile, "bench", ["append", "read"]) if secure else None
        self.lc.start_nameserver()
        for name in SECONDARIES:
            self.lc.start_secondary(name, **secondary_flags)
        self.master = self.lc.start_master(list(SECONDARIES), **master_flags)
        self.ca = self.lc.ca

        def healthy():
            status, h = http_json("GET", self.master.url + "/health", token=self.token,
                                  ca=self.ca, timeout=5)
            return status == 200 and all(h["secondaries"].get(n, {}).get("status") == "Healthy"
                                         for n in SECONDARIES)
        wait_until(healthy, 60, what="a healthy cluster")

    def close(self) -> None:
        self.lc.close()


def secure_vs_plain(args, workdir: Path, master_flags: dict, secondary_flags: dict) -> dict:
    """Both clusters run side by side for the whole comparison, and two load generators,
    one per cluster, take turns in slices of --security-slice seconds in ABBA order (plain,
    secure, secure, plain, plain, secure, ...; bench/loadgen.py --slice): only one cluster is
    loaded at a time, and whatever the shared machine does meanwhile (another tenant, a
    stolen core) weighs on both alike, since they alternate every slice or two. Compared as
    the ratio of the sums (equal time each); each pair of neighbouring slices' ratio is
    reported beside it."""
    pairs = 2 if args.quick else args.security_pairs + args.security_pairs % 2   # whole ABBAs
    slice_s = 1.0 if args.quick else args.security_slice
    seconds = 2 * pairs * slice_s
    clusters, procs = {}, {}
    try:
        for kind in ("plain", "secure"):
            clusters[kind] = _Cluster(workdir / f"sec-{kind}", master_flags, secondary_flags,
                                      kind == "secure")
        log(f"security: HTTP w=3 on the plain and the secure cluster in turn, {pairs} pairs "
            f"of {slice_s:g} s slices")
        start_at = time.time() + LOADGEN_STARTUP_S + args.warmup
        for kind, turn in (("plain", "A"), ("secure", "B")):
            c = clusters[kind]
            procs[kind] = _start_loadgen(
                args, c.master.url, 3, args.clients, c.ca, c.token, seconds,
                ("--slice", slice_s, "--turn", turn, "--start-at", start_at))
        runs = {kind: _result(p, seconds + args.warmup + LOADGEN_STARTUP_S + 120)
                for kind, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
        for c in clusters.values():
            c.close()
    count = {kind: {int(k): n for k, n in r.pop("per_slice").items()} for kind, r in runs.items()}
    pair_ratios = []
    for j in range(pairs):
        plain = sum(count["plain"].get(k, 0) for k in (2 * j, 2 * j + 1))
        secure = sum(count["secure"].get(k, 0) for k in (2 * j, 2 * j + 1))
        pair_ratios.append(round(secure / plain, 3) if plain else None)
    known = [r for r in pair_ratios if r is not None]
    total = {kind: sum(c.values()) for kind, c in count.items()}
    return {"pairs": pairs, "slice_s": slice_s, "runs": {k: [r] for k, r in runs.items()},
            "per_slice": {kind: [c.get(k, 0) for k in sorted(c)] for kind, c in count.items()},
            "pair_ratios": pair_ratios,
            "median_pair_ratio": round(statistics.median(known), 3) if known else None,
            "appends_per_s": {k: r["appends_per_s"] for k, r in runs.items()},
            "ratio": round(total["secure"] / total["plain"], 3) if total["plain"] else None}


# -- 3. hostile clients ----------------------------------------------------------------------

def hostile(host: str, port: int, idle: int, trickle: int) -> None:
    """Run as `python -m bench.security hostile HOST PORT IDLE TRICKLE` until stdin closes:
    hold `idle` silent connections and `trickle` POSTs whose body (Content-Length 100,000)
    gets one byte per connection per second; reopen whatever the node closes. Prints READY
    once all are open, and at the end one JSON line of counts."""
    sel = selectors.DefaultSelector()
    head = (f"POST /messages HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000\r\n\r\n{").encode()
    conns: dict[socket.socket, str] = {}
    trickles: list[socket.socket] = []
    counts = {"opened": 0, "closed_by_node": 0, "answers": {}, "bytes": 0}

    def open_one(kind: str) -> None:
        s = socket.create_connection((host, port), 10)
        s.setblocking(False)
        if kind == "trickle":
            s.send(head)
            trickles.append(s)
        conns[s] = kind
        sel.register(s, selectors.EVENT_READ)
        counts["opened"] += 1

    for _ in range(idle):
        open_one("idle")
    for _ in range(trickle):
        open_one("trickle")
    print("READY", flush=True)
    sel.register(sys.stdin, selectors.EVENT_READ)
    # one byte per trickling connection per second, spread evenly over the second (in 100
    # ticks), as independent slow clients would send them
    tick, ticks = 0.01, 100
    next_tick = time.monotonic()
    cursor = 0
    while True:
        timeout = max(0.0, next_tick - time.monotonic())
        for key, _ in sel.select(timeout):
            if key.fileobj is sys.stdin:
                print(json.dumps(counts), flush=True)
                return
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if data[:9] == b"HTTP/1.1 ":
                code = data[9:12].decode()
                counts["answers"][code] = counts["answers"].get(code, 0) + 1
            kind = conns.pop(s)
            if kind == "trickle":
                trickles.remove(s)
            sel.unregister(s)
            s.close()
            counts["closed_by_node"] += 1
            open_one(kind)
        if time.monotonic() >= next_tick:
            slow = trickles
            share = -(-len(slow) // ticks)
            for c in slow[cursor:cursor + share]:
                try:
                    c.send(b" ")
                    counts["bytes"] = counts.get("bytes", 0) + 1
                except OSError:
                    pass
            cursor = cursor + share if cursor + share < len(slow) else 0
            next_tick += tick


def slow_clients(args, workdir: Path, master_flags: dict, secondary_flags: dict) -> dict:
    """Alone and with the hostile process, alternated for `rounds` (1 with --quick, else 3):
    the machine is shared, so each pair runs close together; compared on the medians."""
    clients = max(1, args.clients // 4)
    rounds = 1 if args.quick else 3
    c = _Cluster(workdir / "sec-slow", master_flags, secondary_flags, secure=False)
    out: dict = {"clients": clients, "idle": args.security_idle,
                 "trickle": args.security_trickle, "rounds": rounds,
                 "alone": [], "hostile": [], "hostile_counts": []}
    try:
        for r in range(rounds):
            log(f"security: {clients} well-behaved clients, w=3, alone (round {r + 1}/{rounds})")
            out["alone"].append(_loadgen(args, c.master.url, 3, clients))
            log(f"security: the same with {args.security_idle} idle and "
                f"{args.security_trickle} trickling connections open")
            h = subprocess.Popen([sys.executable, "-m", "bench.security", "hostile",
                                  "127.0.0.1", str(c.master.http_port),
                                  str(args.security_idle), str(args.security_trickle)],
                                 cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
            try:
                line = h.stdout.readline().strip()
                if line != "READY":
                    raise RuntimeError(f"the hostile client did not start: {line!r}")
                out["hostile"].append(_loadgen(args, c.master.url, 3, clients))
                out["master_answered_after"] = _health(c)[0]
            finally:
                h.stdin.close()
                tail = h.stdout.read().strip().splitlines()
                h.wait(30)
            out["hostile_counts"].append(json.loads(tail[-1]) if tail else None)
    finally:
        c.close()

    def median_p99(kind: str) -> float | None:
        values = sorted(x["latency_ms"]["p99"] for x in out[kind] if x["latency_ms"]["p99"])
        return values[len(values) // 2] if values else None
    a, b = median_p99("alone"), median_p99("hostile")
    out["p99_ms"] = {"alone": a, "hostile": b}
    out["p99_ratio"] = round(b / a, 3) if a and b else None
    return out


def _health(c: _Cluster):
    from nodes.launcher import http_json
    return http_json("GET", c.master.url + "/health", timeout=10)


# -- the part ---------------------------------------------------------------------------------

def run(args, out: dict) -> None:
    workdir = Path(args.workdir)
    res = {}
    log("security: the cost of one token check")
    res["token_check"] = token_check(workdir)
    res["load"] = secure_vs_plain(args, workdir, args.master_flags, args.secondary_flags)
    res["slow"] = slow_clients(args, workdir, args.master_flags, args.secondary_flags)
    ratio, p99 = res["load"]["ratio"], res["slow"]["p99_ratio"]
    res["targets"] = [
        {"target": "HTTP w=3 appends/s, HTTPS + tokens / plain HTTP without", "value": ratio,
         "op": ">=", "limit": TARGET_SECURE_VS_PLAIN,
         "met": ratio is not None and ratio >= TARGET_SECURE_VS_PLAIN},
        {"target": "well-behaved p99 with 1,000 idle + 1,000 trickling / without",
         "value": p99, "op": "<=", "limit": TARGET_P99_RATIO,
         "met": p99 is not None and p99 <= TARGET_P99_RATIO}]
    out["security"] = res


def render(d: dict) -> str:
    tc, load, slow = d["token_check"], d["load"], d["slow"]
    lines = ["", "Client-plane security (HTTPS, tokens, bounds)",
             f"one token check: {tc['token_us']} us with {tc['tokens_in_file']} tokens in the "
             f"file (no token file: {tc['no_tokens_us']} us)",
             f"{'case':<22}{'appends/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"]
    for kind in ("plain", "secure"):
        for r in load["runs"][kind]:
            lat = r["latency_ms"]
            lines.append(f"{kind + ' w=3':<22}{r['appends_per_s']:>12,.0f}{lat['p50']:>9.2f}"
                         f"{lat['p99']:>9.2f}{r['errors']:>8}")
    lines.append(f"HTTPS + tokens / plain appends/s: {load['ratio']} (ratio of the sums over "
                 f"{load['pairs']} pairs of {load['slice_s']:g} s slices, ABBA; median pair "
                 f"{load['median_pair_ratio']})")
    lines.append(f"  each pair: {' '.join(str(r) for r in load['pair_ratios'])}")
    for kind in ("alone", "hostile"):
        label = (f"{slow['clients']} clients alone" if kind == "alone" else
                 f"+{slow['idle']} idle +{slow['trickle']} slow")
        for r in slow[kind]:
            lat = r["latency_ms"]
            lines.append(f"{label:<22}{r['appends_per_s']:>12,.0f}{lat['p50']:>9.2f}"
                         f"{lat['p99']:>9.2f}{r['errors']:>8}")
    lines.append(f"median p99 with hostile connections / without: {slow['p99_ratio']} "
                 f"({slow['p99_ms']}); hostile client: {slow['hostile_counts']}")
    for t in d["targets"]:
        lines.append(f"  [{'met' if t['met'] else 'MISSED':>6}] {t['target']}: {t['value']} "
                     f"{t['op']} {t['limit']}")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "hostile":
        hostile(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        raise SystemExit("usage: python -m bench.security hostile HOST PORT IDLE TRICKLE "
                         "(the part itself runs with python -m bench --only security)")
