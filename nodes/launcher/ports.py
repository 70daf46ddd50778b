"""What the launcher learns from the host: who listens on a port, a process's state, whether
a port is taken. Linux /proc; elsewhere these answer "cannot tell" (None)."""
from __future__ import annotations

import os
import socket
from pathlib import Path

from .procs import http_json


def listener_of(port: int) -> str | None:
    """Who listens on TCP `port` on this host: 'pid N (command line)' when /proc tells
    (processes of other users hide their sockets), else None."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    return f"pid {pid_dir.name} ({_cmdline(int(pid_dir.name))})"
            except OSError:
                continue
    return None


def listener_pid(port: int) -> int | None:
    owner = listener_of(port)
    return int(owner.split()[1]) if owner else None


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def proc_state(pid: int) -> str | None:
    """The state letter in /proc/PID/stat (R, S, T for stopped, Z, ...), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Would a server (binding with SO_REUSEADDR, as ours do) fail to bind host:port?"""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def check_ports(ports: dict[int, str]) -> list[str]:
    """One line per taken port: which port, for what, held by whom if we can tell."""
    problems = []
    for port, what in ports.items():
        if port_taken(port):
            owner = listener_of(port)
            if owner is None:
                try:
                    status, body = http_json("GET", f"http://127.0.0.1:{port}/health", timeout=1)
                    if isinstance(body, dict) and body.get("role"):
                        owner = f"a replog {body['role']} (it answers /health)"
                except Exception:
                    pass
            problems.append(f"port {port} ({what}) is taken"
                            + (f" by {owner}" if owner else " (by a process this user cannot see)"))
    return problems
