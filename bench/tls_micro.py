"""CPU per HTTPS request on the server side: gevent's SSLSocket against memory BIOs
(nodes/tlsconn.py), and where the load generator's own TLS cost goes.

    python -m bench.tls_micro [--kind wsgi|echo] [--batches 60] [--batch 400] [--conns 4]

A server process (gevent, monkey-patched like a node) serves three ports: plain, HTTPS with
gevent's SSLSocket (the code before nodes/tlsconn.py), HTTPS over memory BIOs; `wsgi`: each is
nodes.web.create_http_server with edge.Timeouts and a trivial app (201 and a ~100-byte JSON
body; the real handler, deadlines and all), `echo`: a greenlet per connection that reads a
request and sends a fixed answer. This process is the client, in two parts:

1. server cost: `--conns` connections per port whose per-request work is the same for the
   three (the requests are encrypted beforehand, the answers counted in raw bytes, never
   decrypted): a batch sends one request on every connection, then reads every answer, until
   `--batch` requests; the server's CPU time (getrusage, asked on a control port before and
   after the batch) per request. Ports are interleaved in a shuffled order, `--batches`
   times, so that the load of a shared machine falls on all three alike; medians per port and
   of the per-round differences.
2. client cost: bench/loadgen.py's RawHTTPClient (stdlib ssl, one connection, a roundtrip at a
   time) against the plain and the memory-BIO port, and a client over memory BIOs like the
   server's: this process's CPU time per request, interleaved likewise.
"""
from __future__ import annotations

import argparse
import json
import random
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ANSWER_BODY = b'{"seq": 123456, "acks": 3, "w": 3, "took_ms": 0.42, "filler": "' + b"x" * 40 + b'"}\n'
ECHO_ANSWER = (b"HTTP/1.1 201 Created\r\nContent-Type: application/json; charset=utf-8\r\n"
               b"Content-Length: %d\r\n\r\n" % len(ANSWER_BODY)) + ANSWER_BODY
MODES = ("plain", "sslsock", "bio")
TLS13_OVERHEAD = 22      # one TLS 1.3 record with AES-GCM: 5 (header) + 16 (tag) + 1 (type)


# -- the server process -------------------------------------------------------------------

def serve(kind: str, certdir: Path) -> None:
    from gevent import monkey
    monkey.patch_all()
    import resource
    from gevent.server import StreamServer
    from nodes import edge, web
    from nodes.tlsconn import TLSConnection

    ctx = edge.server_context(certdir / "node.crt", certdir / "node.key")

    def control(sock, _addr):
        r = resource.getrusage(resource.RUSAGE_SELF)
        sock.sendall(f"{r.ru_utime} {r.ru_stime}\n".encode())
        sock.close()

    def app(environ, start_response):
        environ["wsgi.input"].read()
        start_response("201 Created", [("Content-Type", "application/json; charset=utf-8"),
                                       ("Content-Length", str(len(ANSWER_BODY)))])
        return [ANSWER_BODY]

    def echo_server(mode):
        def echo(sock, _addr):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if mode == "sslsock":
                sock = ctx.wrap_socket(sock, server_side=True)
            elif mode == "bio":
                sock = TLSConnection(sock, ctx)
                sock.handshake()
            buf = bytearray(65536)
            try:
                while sock.recv_into(buf):
                    sock.sendall(ECHO_ANSWER)
            except OSError:
                pass
            finally:
                sock.close()
        return StreamServer(("127.0.0.1", 0), echo)

    def wsgi_server(mode):
        server = web.create_http_server(app, "127.0.0.1", 0,
                                        ssl_context=None if mode == "plain" else ctx,
                                        timeouts=edge.Timeouts())
        if mode == "sslsock":
            server.wrap_socket_and_handle = _sslsocket_handler(server)   # (start() reads it)
        return server

    ports = {}
    for mode in MODES:
        server = (echo_server if kind == "echo" else wsgi_server)(mode)
        server.start()
        ports[mode] = server.server_port
    ctl = StreamServer(("127.0.0.1", 0), control)
    ctl.start()
    print(json.dumps({"ports": ports, "control": ctl.server_port}), flush=True)
    ctl.serve_forever()


def _sslsocket_handler(server):
    """nodes/web.py's _Server.wrap_socket_and_handle before nodes/tlsconn.py: gevent's
    SSLSocket, the handshake under the header deadline."""
    import gevent

    def wrap_socket_and_handle(client_socket, address):
        client_socket.settimeout(server.timeouts.idle or None)
        try:
            with gevent.Timeout(server.timeouts.header or None, socket.timeout("TLS handshake")):
                ssl_socket = server.wrap_socket(client_socket, **server.ssl_args)
        except (OSError, ValueError):
            client_socket.close()
            return None
        ssl_socket.settimeout(None)
        try:
            return server.handle(ssl_socket, address)
        finally:
            ssl_socket.close()
    return wrap_socket_and_handle


# -- part 1: the server's CPU per request -------------------------------------------------

def _request(port: int, size: int) -> bytes:
    body = json.dumps({"message": "m" * size, "w": 3}).encode()
    return (f"POST /messages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {'t' * 43}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class RawConn:
    """A connection whose requests are ready to send (encrypted beforehand with TLS) and
    whose answers are counted in bytes: the same client work for every server."""

    def __init__(self, port: int, tls: ssl.SSLContext | None, n: int, size: int) -> None:
        req = _request(port, size)
        s = self.sock = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is None:
            s.sendall(req)
            first = b""
            while not first.endswith(ANSWER_BODY):
                first += s.recv(65536)
            self.answer_len = len(first)
            self.requests = [req] * n
        else:
            inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
            c = tls.wrap_bio(inc, out)
            while True:
                try:
                    c.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    if out.pending:
                        s.sendall(out.read())
                    inc.write(s.recv(65536))
            c.write(req)
            s.sendall(out.read())
            first = b""             # (the session tickets come first, then the answer)
            while not first.endswith(ANSWER_BODY):
                try:
                    first += c.read(65536)
                except ssl.SSLWantReadError:
                    inc.write(s.recv(65536))
            assert c.version() == "TLSv1.3"
            self.answer_len = len(first) + TLS13_OVERHEAD
            self.requests = []
            for _ in range(n):
                c.write(req)
                self.requests.append(out.read())
        self.next = 0

    def send(self) -> None:
        self.sock.sendall(self.requests[self.next])
        self.next += 1

    def receive(self) -> None:
        got, want = 0, self.answer_len
        while got < want:
            got += len(self.sock.recv(65536))
        if got != want:
            raise RuntimeError(f"answer of {got} bytes, expected {want}")


def _server_cpu(control: int) -> float:
    with socket.create_connection(("127.0.0.1", control)) as s:
        user, system = s.makefile().readline().split()
    return float(user) + float(system)


def _summary(per: dict[str, list[float]], pairs) -> dict:
    out = {}
    for mode, values in per.items():
        q = statistics.quantiles(values, n=4)
        out[mode] = {"median_us": round(statistics.median(values), 1),
                     "quartiles_us": [round(q[0], 1), round(q[2], 1)]}
    for a, b in pairs:
        diffs = [x - y for x, y in zip(per[a], per[b])]
        q = statistics.quantiles(diffs, n=4)
        out[f"{a} - {b}"] = {"median_us": round(statistics.median(diffs), 1),
                             "quartiles_us": [round(q[0], 1), round(q[2], 1)]}
    return out


def server_cost(ports: dict, control: int, ca: Path, args) -> dict:
    tls = ssl.create_default_context(cafile=str(ca))
    tls.check_hostname = False
    rounds = args.batch // args.conns
    conns = {m: [RawConn(ports[m], None if m == "plain" else tls,
                         args.batches * rounds + 10, args.size) for _ in range(args.conns)]
             for m in MODES}
    per: dict[str, list[float]] = {m: [] for m in MODES}
    for mode in MODES:                                 # warm-up
        for _ in range(5):
            for c in conns[mode]:
                c.send()
            for c in conns[mode]:
                c.receive()
    for _ in range(args.batches):
        order = list(MODES)
        random.shuffle(order)
        for mode in order:
            cs = conns[mode]
            cpu0 = _server_cpu(control)
            for _ in range(rounds):
                for c in cs:
                    c.send()
                for c in cs:
                    c.receive()
            per[mode].append((_server_cpu(control) - cpu0) / (rounds * len(cs)) * 1e6)
    for cs in conns.values():
        for c in cs:
            c.sock.close()
    return _summary(per, (("sslsock", "plain"), ("bio", "plain"), ("bio", "sslsock")))


# -- part 2: the client's CPU per request -------------------------------------------------

class BioClient:
    """A client over memory BIOs: one recv feeds OpenSSL, one sendall per request."""

    def __init__(self, port: int, tls: ssl.SSLContext, size: int) -> None:
        self.req = _request(port, size)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = tls.wrap_bio(self.inc, self.out)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if self.out.pending:
                    self.sock.sendall(self.out.read())
                self.inc.write(self.sock.recv(65536))
        self.sock.sendall(self.out.read())

    def roundtrip(self) -> None:
        self.tls.write(self.req)
        self.sock.sendall(self.out.read())
        buf = b""
        while True:          # the answer: headers, then Content-Length bytes of body
            try:
                buf += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self.inc.write(self.sock.recv(65536))
                continue
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                length = int(buf[:end].lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(buf) >= end + 4 + length:
                    return


def client_cost(ports: dict, control: int, ca: Path, args) -> dict:
    from bench.loadgen import RawHTTPClient
    tls = ssl.create_default_context(cafile=str(ca))
    tls.check_hostname = False
    clients = {
        "loadgen-plain": RawHTTPClient("127.0.0.1", ports["plain"], _request(ports["plain"], args.size), 30),
        "loadgen-tls": RawHTTPClient("127.0.0.1", ports["bio"], _request(ports["bio"], args.size), 30, tls=tls),
    }
    for c in clients.values():
        c.connect()
    bio = BioClient(ports["bio"], tls, args.size)
    calls = {"loadgen-plain": clients["loadgen-plain"].roundtrip,
             "loadgen-tls": clients["loadgen-tls"].roundtrip,
             "bio-client-tls": bio.roundtrip}
    per: dict[str, list[float]] = {m: [] for m in calls}
    server: dict[str, list[float]] = {m: [] for m in calls}
    n = max(args.batch // 4, 50)
    for _ in range(args.batches):
        order = list(calls)
        random.shuffle(order)
        for name in order:
            call = calls[name]
            s0, c0 = _server_cpu(control), time.process_time()
            for _ in range(n):
                call()
            per[name].append((time.process_time() - c0) / n * 1e6)
            server[name].append((_server_cpu(control) - s0) / n * 1e6)
    out = _summary(per, (("loadgen-tls", "loadgen-plain"), ("bio-client-tls", "loadgen-plain"),
                         ("bio-client-tls", "loadgen-tls")))
    out["server_us (one connection, lockstep)"] = {k: round(statistics.median(v), 1)
                                                   for k, v in server.items()}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tls_micro")
    p.add_argument("--kind", choices=("wsgi", "echo"), default="wsgi")
    p.add_argument("--batches", type=int, default=60, help="rounds of the interleaved ports")
    p.add_argument("--batch", type=int, default=400, help="requests per port per round")
    p.add_argument("--conns", type=int, default=4, help="connections per port (part 1)")
    p.add_argument("--size", type=int, default=100, help="message size in the request body")
    p.add_argument("--skip-client", action="store_true", help="part 1 only")
    p.add_argument("--out", help="write the figures here as JSON")
    p.add_argument("--serve", help=argparse.SUPPRESS)          # (the server process: CERTDIR)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.kind, Path(args.serve))
        return 0
    from nodes import certs
    with tempfile.TemporaryDirectory() as tmp:
        certdir = certs.ensure(tmp, ["master"]) / "master"
        srv = subprocess.Popen([sys.executable, "-m", "bench.tls_micro", "--kind", args.kind,
                                "--serve", str(certdir)], stdout=subprocess.PIPE, text=True)
        try:
            info = json.loads(srv.stdout.readline())
            result = {"kind": args.kind, "batches": args.batches, "batch": args.batch,
                      "conns": args.conns,
                      "server_cpu_per_request": server_cost(info["ports"], info["control"],
                                                            certdir / "ca.crt", args)}
            if not args.skip_client:
                result["client_cpu_per_request"] = client_cost(info["ports"], info["control"],
                                                               certdir / "ca.crt", args)
        finally:
            srv.terminate()
            srv.wait()
    for part in ("server_cpu_per_request", "client_cpu_per_request"):
        if part in result:
            print(part.replace("_", " ") + ":")
            for name, v in result[part].items():
                if "median_us" in v:
                    print(f"  {name:32s} {v['median_us']:7.1f} us  (quartiles "
                          f"{v['quartiles_us'][0]:.1f} .. {v['quartiles_us'][1]:.1f})")
                else:
                    print(f"  {name}: {v}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
