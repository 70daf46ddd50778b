"""HTTPS on the client plane over memory BIOs, instead of gevent's SSLSocket.

gevent's SSLSocket lets OpenSSL read the socket itself (two read()s per TLS record: header,
then body) and wraps every OpenSSL call in Python that raises and catches an SSLWantReadError
for each read that must wait (~3.5 us: OpenSSL formats an error for it). Here OpenSSL never
touches the socket: one recv of up to 64 KiB on the plain gevent socket feeds an incoming
memory BIO, an ssl.SSLObject decrypts from it, and whatever it writes (records, handshake
flights, session tickets, key updates) leaves from an outgoing BIO in one send. Measured with
`python -m bench.tls_micro`: about 15 us less server CPU per request (docs/security.md).

TLSConnection is what gevent's pywsgi.WSGIHandler and nodes.web._Server use of a socket:
makefile('rb', -1) (the rfile that edge.Handler peeks at), sendall, setsockopt, close. It has
no `_sock`, so pywsgi calls its close() (close_notify) rather than the raw socket's. It has no
deadline of its own: the handshake runs under the caller's gevent.Timeout, and nodes/edge.py's
idle, header, body and write deadlines interrupt the recv or send that waits below them.
"""
from __future__ import annotations

import io
import ssl

RECV = 65_536        # one recv takes whatever the client sent (several records at once)
CHUNK = 262_144      # a larger answer is encrypted and sent this much at a time


class TLSConnection:
    """The server side of a TLS connection over `sock`, a gevent socket that blocks in its
    greenlet. Call handshake() first (under a deadline), then hand it to pywsgi."""

    def __init__(self, sock, context: ssl.SSLContext) -> None:
        self.sock = sock
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._in, self._out, server_side=True)
        self._open = False        # the handshake has completed
        self._closed = False
        self._clean = True        # False while (or once) a send is cut short

    def __repr__(self) -> str:
        return f"<TLSConnection {self.sock!r}>"

    def handshake(self) -> None:
        """Raises ssl.SSLError (a client that does not speak our TLS: it gets OpenSSL's
        alert first), OSError (it went away; a socket timeout), or the caller's deadline."""
        try:
            while True:
                try:
                    self._tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self._flush()             # our flight (ServerHello...), then wait
                    if not self._feed():
                        raise ConnectionAbortedError("closed during the TLS handshake")
        except ssl.SSLError:
            try:
                self._flush()                 # the alert: the client learns why
            except OSError:
                pass
            raise
        self._open = True
        self._flush()                         # our last flight; TLS 1.3: session tickets

    def _feed(self) -> bool:
        """One recv into the incoming BIO; False at the end of the stream."""
        data = self.sock.recv(RECV)
        if not data:
            return False
        self._in.write(data)
        return True

    def _flush(self) -> None:
        """Send what OpenSSL wrote: one send(), which nearly always takes it all (gevent's
        sendall() costs a getsockopt and a few Python calls more); sendall() the rest."""
        data = self._out.read()
        if data:
            self._clean = False
            sent = self.sock.send(data)
            if sent < len(data):
                self.sock.sendall(memoryview(data)[sent:])
            self._clean = True

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        """Decrypted bytes into `buffer`; 0 at the end of the stream (the client closed,
        with or without close_notify)."""
        tls = self._tls
        n = nbytes or len(buffer)
        # Nothing undecrypted in the BIO, nothing decrypted left in OpenSSL: go to the
        # socket first (SSLObject.read would only raise SSLWantReadError).
        if not self._in.pending and not tls.pending() and not self._feed():
            return 0
        while True:
            try:
                got = tls.read(n, buffer)
                break
            except ssl.SSLWantReadError:      # the rest of a record is still on its way
                if not self._feed():
                    return 0
        if self._out.pending:                 # e.g. the answer to a client's key update
            self._flush()
        return got

    def makefile(self, mode: str = "rb", buffering: int = -1) -> io.BufferedReader:
        """A buffered reader, as socket.makefile('rb') gives (pywsgi's rfile)."""
        assert mode == "rb", mode
        return io.BufferedReader(_Reader(self), buffering if buffering > 0
                                 else io.DEFAULT_BUFFER_SIZE)

    def sendall(self, data, flags: int = 0) -> None:
        """Encrypt `data` and send it, a large answer CHUNK bytes at a time (so that what
        waits in memory stays bounded)."""
        if self._closed:
            raise OSError("send on a closed TLS connection")
        if len(data) <= CHUNK:
            self._tls.write(data)
            self._flush()
            return
        view = memoryview(data).cast("B")
        for start in range(0, len(view), CHUNK):
            self._tls.write(view[start:start + CHUNK])
            self._flush()

    def setsockopt(self, *args) -> None:      # (nodes.web._Server.handle: TCP_NODELAY)
        self.sock.setsockopt(*args)

    def close(self) -> None:
        """close_notify (best effort, never waiting), then close the socket. What the
        client sent and nobody read is read out first, as gevent's pywsgi does, so that
        the kernel ends the connection with a FIN and not a reset that could destroy the
        answer just sent (a refused body, a 408)."""
        if self._closed:
            return
        self._closed = True
        sock = self.sock
        try:
            sock.setblocking(False)
            if self._open and self._clean:
                try:
                    self._tls.unwrap()        # writes close_notify...
                except ssl.SSLError:          # ...and wants the client's: not waited for
                    pass
                if self._out.pending:
                    sock.send(self._out.read())
            sock.recv(16_384)
        except OSError:
            pass
        finally:
            sock.close()


class _Reader(io.RawIOBase):
    """The raw stream under makefile()'s BufferedReader."""

    def __init__(self, conn: TLSConnection) -> None:
        self.readinto = conn.recv_into        # (an attribute: one Python call less per read)

    def readable(self) -> bool:
        return True
