"""nodes/tlsconn.py's TLSConnection, on a plain blocking socket in a thread (no gevent here:
it only needs recv, send, sendall, setblocking and close of the socket under it), against
the stdlib's ssl client."""
from __future__ import annotations

import socket
import ssl
import threading

import pytest

from nodes import certs, edge
from nodes.tlsconn import TLSConnection


@pytest.fixture(scope="module")
def contexts(tmp_path_factory):
    d = certs.ensure(tmp_path_factory.mktemp("certs"), ["node"]) / "node"
    client = ssl.create_default_context(cafile=str(d / "ca.crt"))
    client.check_hostname = False
    client.set_alpn_protocols(["http/1.1"])
    return edge.server_context(d / "node.crt", d / "node.key"), client


def serve(server_ctx, work):
    """A connected pair: the client's socket, and a thread running work(TLSConnection) on
    the other end (its result or exception in the returned dict)."""
    a, b = socket.socketpair()
    out: dict = {}

    def run():
        conn = TLSConnection(b, server_ctx)
        try:
            conn.handshake()
            out["result"] = work(conn)
        except Exception as e:          # (checked by the test)
            out["error"] = e
        finally:
            conn.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    out["thread"] = t
    return a, out


def test_requests_on_a_kept_connection_then_close_notify(contexts):
    server_ctx, client_ctx = contexts

    def echo_lines(conn):
        rfile = conn.makefile("rb", -1)
        lines = []
        while rfile.peek(1):                         # what edge.Handler does between requests
            line = rfile.readline()
            lines.append(line)
            conn.sendall(b"x" * 1_000_000 + b"got " + line)    # larger than CHUNK: in steps
        return lines

    raw, out = serve(server_ctx, echo_lines)
    inc, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client_ctx.wrap_bio(inc, outgoing)

    def read():
        while True:
            try:
                return c.read(1 << 20)
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    raw.sendall(outgoing.read())
                data = raw.recv(1 << 16)
                if not data:
                    raise EOFError
                inc.write(data)

    while True:
        try:
            c.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(outgoing.read())
            inc.write(raw.recv(1 << 16))
    raw.sendall(outgoing.read())
    assert c.selected_alpn_protocol() == "http/1.1"
    for line in (b"one\n", b"two\n"):
        c.write(line)
        raw.sendall(outgoing.read())
        answer = b""
        while not answer.endswith(line):
            answer += read()
        assert answer == b"x" * 1_000_000 + b"got " + line
    raw.shutdown(socket.SHUT_WR)                     # the client is done: EOF for the server
    assert read() == b""                 # the server's close_notify (a bare EOF: EOFError)
    out["thread"].join(5)
    assert out["result"] == [b"one\n", b"two\n"], out


def test_a_client_with_no_common_cipher_gets_the_alert_and_the_server_an_ssl_error(contexts):
    server_ctx, _ = contexts
    raw, out = serve(server_ctx, lambda conn: None)
    odd = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    odd.check_hostname, odd.verify_mode = False, ssl.CERT_NONE
    odd.maximum_version = ssl.TLSVersion.TLSv1_2
    odd.set_ciphers("aNULL:@SECLEVEL=0")             # anonymous only: the server has none
    with pytest.raises(ssl.SSLError, match="(?i)alert"):   # not a bare EOF: it was told why
        odd.wrap_socket(raw).close()
    out["thread"].join(5)
    assert isinstance(out.get("error"), ssl.SSLError), out


def test_a_client_that_leaves_during_the_handshake(contexts):
    server_ctx, _ = contexts
    raw, out = serve(server_ctx, lambda conn: None)
    raw.close()
    out["thread"].join(5)
    assert isinstance(out.get("error"), OSError) and "result" not in out, out
