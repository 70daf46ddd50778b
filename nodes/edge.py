"""The client plane's connection-level defences, used by nodes.web.create_http_server:
HTTPS (a server certificate, e.g. one made by `python -m nodes.certs`) and read timeouts;
and, since every request passes here, a cheaper reading of its headers (read_headers).

Every connection is one greenlet. Without bounds, a client that opens a connection and says
nothing, or sends its headers one byte every few seconds, holds that greenlet (and a slot of
--max-connections) for ever. With Timeouts:

- handshake: the TLS handshake must finish within `header` seconds;
- idle: a kept-alive connection may wait `idle` seconds for its next request's first byte;
- header: from that first byte, the request line and headers must arrive within `header`
  seconds (else 408 and the connection is closed);
- body: nodes.auth.Guard reads a request's body within `body` seconds (else 408);
- write: every send of an answer (a whole response, or one event of a stream) must be
  taken by the client within `write` seconds, else the connection is dropped: a client that
  stops reading a large response or a stream gives back its greenlet (and its --max-held
  slot).
"""
from __future__ import annotations

import email.parser
import re
import socket
import ssl
from dataclasses import dataclass
from http import client as http_client
from pathlib import Path

import gevent
from gevent import pywsgi

_TIMEOUT_408 = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: "
                b"application/json\r\nContent-Length: 52\r\n\r\n"
                b'{"error": "request headers were not sent in time"} ')


@dataclass(frozen=True)
class Timeouts:
    header: float = 10.0     # request line + headers, and the TLS handshake (0: none)
    body: float = 30.0       # the whole body (enforced by nodes.auth.Guard; 0: none)
    idle: float = 60.0       # between requests on a kept-alive connection (0: none)
    write: float = 60.0      # one send of an answer, until the client has taken it (0: none)


COALESCE = 65_536   # bodies up to this size go out in the same send as the headers
DISCARD_MAX = 16 << 20   # an unread body (refused, or over --max-body) up to this size is read
                         # and dropped within the body deadline, so the client can read the
                         # answer and keep the connection; a larger one closes it


_NOOP_LOG = getattr(pywsgi, "_NoopLog", ())   # what gevent logs to with log=None
MAX_LINE, MAX_HEADERS = 65_536, 100       # per header line, per request: http.client's
# One header line as the stdlib's email parser reads it when nothing is unusual: a name of
# the characters its headerRE allows (printable ASCII but ":"), then ":", then the value,
# with no other CR in the line. Anything else goes to the email parser (see read_headers).
_PLAIN_HEADER = re.compile(r"([!-9;-~]+):([^\r]*)\r?\n\Z")


def read_headers(fp) -> "pywsgi.OldMessage":
    """The request's headers, as gevent's pywsgi.headers_factory reads them (http.client's
    line and count limits, then the stdlib's email parser), with a fast path: when every
    line is a plain `Name: value` line, the message is built directly, with the same names
    and values the email parser would store (checked line by line against it in
    tests/unit/test_edge_headers.py). Measured with timeit: 12 us for the benchmark's
    three headers (19 us for a browser-like eight) through the email parser, 2.6 (5) us
    here; py-spy put the email parser at ~10% of the master's CPU per append."""
    lines = []
    try:
        while True:
            line = fp.readline(MAX_LINE + 1)
            if len(line) > MAX_LINE:
                raise http_client.LineTooLong("header line")
            lines.append(line)
            if len(lines) > MAX_HEADERS:
                raise http_client.HTTPException(f"got more than {MAX_HEADERS} headers")
            if line in (b"\r\n", b"\n", b""):
                break
    except http_client.LineTooLong:
        message = pywsgi.OldMessage()
        message.status = "Line too long"
        return message
    text = [line.decode("iso-8859-1") for line in lines]
    if text[-1] in ("\r\n", "\n"):           # (not an end of input before the blank line)
        message = pywsgi.OldMessage()
        match = _PLAIN_HEADER.match
        for line in text[:-1]:
            m = match(line)
            if m is None:
                break
            message.set_raw(m.group(1), m.group(2).lstrip(" \t"))
        else:
            return message
    return email.parser.Parser(_class=pywsgi.OldMessage).parsestr("".join(text))


class _SlowHeaders(Exception):
    pass


class Deadline(gevent.Timeout):
    """A gevent Timeout that a connection starts and cancels again for each of its requests
    (a `with` block cancels it instead of closing it; close() it when the connection ends).
    A new Timeout per request and phase cost a native timer, an exception object and their
    Python set-up each time: about 1.5 us, three times per request."""

    def __exit__(self, typ, value, tb):
        self.cancel()
        if value is self and self.exception is False:
            return True
        return None


def server_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """A TLS server context for the HTTP port: TLS 1.2+, no client certificate asked."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def https_files(args) -> tuple[str, str] | None:
    """(cert, key) from --https-cert/--https-key or --https-dir DIR (DIR/node.crt and
    DIR/node.key, the layout of `python -m nodes.certs`); None: no HTTPS."""
    if getattr(args, "https_dir", ""):
        d = Path(args.https_dir)
        return str(d / "node.crt"), str(d / "node.key")
    cert, key = getattr(args, "https_cert", ""), getattr(args, "https_key", "")
    if cert or key:
        if not (cert and key):
            raise ValueError("--https-cert and --https-key go together")
        return cert, key
    return None


class Handler(pywsgi.WSGIHandler):
    """gevent's WSGI handler with the idle and header deadlines above; puts itself in the
    environ (replog.handler) so that the Guard can drop a body it will not read."""

    timeouts = Timeouts()
    # this connection's deadlines, made at its first request and reused (see Deadline)
    _idle: Deadline | None = None
    _header: Deadline | None = None
    _body: Deadline | None = None
    _send: Deadline | None = None

    def handle(self):
        try:
            return super().handle()
        finally:
            for timer in (self._idle, self._header, self._body, self._send):
                if timer is not None:
                    timer.close()

    def MessageClass(self, fp, *args):     # gevent's: pywsgi.headers_factory(fp)
        return read_headers(fp)

    def read_requestline(self):
        idle = self._idle
        if idle is None:
            t = self.timeouts
            # socket.error: a quiet close
            idle = self._idle = Deadline(t.idle or None, socket.timeout("idle"))
            self._header = Deadline(t.header or None, _SlowHeaders())
            # socket.timeout is an OSError: gevent ends the connection as for a lost client
            self._send = Deadline(t.write or None, socket.timeout("client not reading"))
        # wait for the first byte as long as an idle connection may; then the clock runs
        with idle:
            if not self.rfile.peek(1):
                return ""
        self._header.start()
        return super().read_requestline()

    def read_request(self, raw_requestline):
        try:
            return super().read_request(raw_requestline)
        finally:
            if self._header is not None:
                self._header.cancel()

    def handle_one_request(self):
        try:
            return super().handle_one_request()
        except _SlowHeaders:
            return ("408", _TIMEOUT_408)
        finally:
            if self._header is not None:
                self._header.cancel()

    def body_deadline(self, seconds: float) -> Deadline:
        """The deadline for reading this request's body (nodes.auth.Guard), as a reusable
        `with` block that raises itself (a gevent.Timeout) when `seconds` pass."""
        body = self._body
        if body is None or body.seconds != seconds:
            if body is not None:
                body.close()
            body = self._body = Deadline(seconds or None)
        return body

    def log_request(self):
        """Nothing when the server has no access log (nodes.web passes log=None): gevent
        formats the line (a datetime, a %-format of eight fields) and then drops it."""
        if not isinstance(self.server.log, _NOOP_LOG):
            super().log_request()

    def _handle_client_error(self, ex):
        if isinstance(ex, _SlowHeaders):
            return ("408", _TIMEOUT_408)
        return super()._handle_client_error(ex)

    def run_application(self):
        try:
            super().run_application()
        finally:
            self._discard_within_deadline()

    def _discard_within_deadline(self) -> None:
        """What the app left of the body, read and dropped within the body deadline (gevent
        would read it after the answer for as long as the client takes): a client that sent
        a body the node refused still reads the answer (it would get a broken pipe if the
        node closed on its unread data); one that trickles is cut off."""
        body = getattr(self, "wsgi_input", None)
        if body is None or self.close_connection:
            return
        length = body.content_length or 0
        if not body.chunked_input and body.position >= length:
            return
        if not body.chunked_input and length - body.position > DISCARD_MAX:
            self.abandon_body()
            return
        try:
            with gevent.Timeout(self.timeouts.body or None, _SlowHeaders()):
                body._discard()
        except (_SlowHeaders, OSError, ValueError):
            self.abandon_body()

    def finalize_headers(self):
        """Say `Connection: close` when this response ends the connection (abandon_body):
        a keep-alive client would otherwise send its next request into a closed socket."""
        super().finalize_headers()
        if (self.close_connection and self.request_version != "HTTP/1.0"
                and not any(h.lower() == b"connection" for h, _ in self.response_headers)):
            self.response_headers.append((b"Connection", b"close"))

    def _write_with_headers(self, data):
        """The status line, headers and a small body in ONE send (gevent sends the headers
        and then the body): with HTTPS every send is a TLS record of its own, encrypted and
        sent by nodes/tlsconn.py (with gevent's SSL socket, two sends had made sending half
        the cost of a request)."""
        self.headers_sent = True
        self.finalize_headers()
        towrite = bytearray(b"HTTP/1.1 ")
        towrite += self.status
        towrite += b"\r\n"
        for header, value in self.response_headers:
            towrite += header
            towrite += b": "
            towrite += value
            towrite += b"\r\n"
        towrite += b"\r\n"
        if data and not self.response_use_chunked and len(data) <= COALESCE:
            towrite += data
            self._sendall(towrite)
            return
        self._sendall(towrite)
        self._write(data)

    def _sendall(self, data):
        """gevent's send, within the write deadline: the socket has no timeout (see
        nodes/web.py's _Server.handle), so without it a client that stops reading holds
        this greenlet until it reads or closes."""
        send = self._send
        if send is None:                          # (an answer before any request line)
            return super()._sendall(data)
        with send:
            super()._sendall(data)
        return None

    def get_environ(self):
        env = super().get_environ()
        env["replog.handler"] = self
        return env

    def abandon_body(self) -> None:
        """Close the connection after this response without reading the rest of the body
        (gevent would otherwise read it to the end, for as long as the client trickles)."""
        self.close_connection = True
        body = getattr(self, "wsgi_input", None)
        if body is not None:
            try:
                body._chunked_input_error = True     # gevent's "do not discard" state
            except AttributeError:
                pass
