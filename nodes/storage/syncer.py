"""fdatasync in a small helper process, so that the master's event loop never waits on the disk.

Why a process and not a thread: a thread that syncs must take the GIL before and after each
call and hand results back through the event loop, and every hand-off stalls the loop that
serves clients. Measured on the 2-core machine (bench, durable w=1, 16 clients): fdatasync
in gevent's thread pool 6,200 appends/s, in place on the loop 7,000 (but w=3 fell from 6,100
to 5,000: replication stops while the loop waits), in this helper see docs/performance.md.
The loop's whole cost here is one send and one receive on a socket pair.

The helper gets the file itself (the open file description, passed with SCM_RIGHTS) whenever
the log moves to a new segment, so an error the kernel reports for the file reaches it just as
it would reach the node (errors are per file description). A failed fdatasync comes back as
OSError with its errno; if the helper is gone, HelperGone is raised and the caller may sync
in its own process instead.
"""
from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys

_HELPER = r"""
import errno, os, signal, socket, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C stops the node; it closes our socket
sock = socket.socket(fileno=int(sys.argv[1]))
sock.setblocking(True)                         # the node's end may be non-blocking (gevent)
fd = None
while True:
    msg, fds, _, _ = socket.recv_fds(sock, 1, 1)
    if not msg:
        break                                      # the node closed its end or died
    if fds:
        if fd is not None:
            os.close(fd)
        fd = fds[0]
    try:
        os.fdatasync(fd)
        sock.sendall(b"\0\0")
    except OSError as e:
        sock.sendall((e.errno or errno.EIO).to_bytes(2, "big"))
"""


class HelperGone(OSError):
    """The helper process exited: nothing was synced by this call."""


class SyncHelper:
    """One helper process; sync(fd) returns once fd's file data is on disk."""

    def __init__(self) -> None:
        mine, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-S", "-c", _HELPER, str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, close_fds=True)
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        self.sock = mine
        self._file: tuple[int, int] | None = None    # (device, inode) the helper holds

    @property
    def pid(self) -> int:
        return self.proc.pid

    def sync(self, fd: int) -> None:
        st = os.fstat(fd)
        file = (st.st_dev, st.st_ino)
        try:
            if file != self._file:
                socket.send_fds(self.sock, [b"s"], [fd])
                self._file = file
            else:
                self.sock.sendall(b"s")
            reply = b""
            while len(reply) < 2:
                chunk = self.sock.recv(2 - len(reply))
                if not chunk:
                    break
                reply += chunk
        except OSError as e:
            raise HelperGone(errno.EPIPE, f"the fsync helper (pid {self.pid}) is gone: {e}")
        if len(reply) < 2:
            raise HelperGone(errno.EPIPE, f"the fsync helper (pid {self.pid}) exited "
                                          f"({self.proc.poll()})")
        code = int.from_bytes(reply, "big")
        if code:
            raise OSError(code, os.strerror(code))

    def close(self) -> None:
        self.sock.close()                  # the helper reads EOF and exits
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
