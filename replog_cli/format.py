"""Pure decisions and formatting for the CLI (unit-tested): health rows, ages, rates, what
a --node argument names, the URLs a running cluster's secondaries are assumed to have."""
from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

STATUS_STYLE = {"Healthy": "green", "Suspected": "yellow", "Unhealthy": "red",
                "writable": "green", "read-only": "red"}


def age(seconds: float | None) -> str:
    """How long ago a node last answered: 'never', '0.2 s ago', '3 min ago'."""
    if seconds is None:
        return "never"
    if seconds < 60:
        return f"{seconds:.1f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def rate(count: int, seconds: float) -> str:
    if seconds <= 0:
        return f"{count} messages"
    return f"{count} messages in {duration(seconds)} ({count / seconds:,.0f}/s)"


@dataclass(frozen=True)
class Row:
    node: str
    status: str
    acked_seq: int | None
    lag: int | None
    last_answer: str


def health_rows(h: dict) -> list[Row]:
    """One row for the master (its last seq, writable or read-only), one per secondary."""
    last = h.get("last_seq")
    rows = [Row("master", "read-only" if h.get("read_only") else "writable", last, 0, "-")]
    for name, s in sorted((h.get("secondaries") or {}).items()):
        rows.append(Row(name, str(s.get("status", "?")), s.get("acked_seq"), s.get("lag"),
                        age(s.get("last_answer_age"))))
    return rows


def quorum_line(h: dict) -> str:
    """'quorum 3 of 3 (2 needed) · writable' or '... · READ-ONLY: no quorum: ...'."""
    q = h.get("quorum") or {}
    head = (f"quorum {q.get('available', '?')} of {q.get('size', '?')} "
            f"({q.get('needed', '?')} needed)")
    waiting = h.get("waiting")
    tail = f" · {waiting} POST(s) waiting" if waiting else ""
    if h.get("read_only"):
        return f"{head} · READ-ONLY: {h.get('reason') or 'no reason given'}{tail}"
    return f"{head} · writable{tail}"


def append_line(reply_body: dict, seconds: float) -> str:
    return (f"seq {reply_body.get('seq')} · acks {reply_body.get('acks')} "
            f"(w={reply_body.get('w')}) · {duration(seconds)}")


@dataclass(frozen=True)
class Target:
    """What `--node` names: the master, a URL (HTTP), or a registered secondary (Pyro5)."""
    kind: str      # "master", "url", "name"
    value: str


def parse_node(node: str | None) -> Target:
    if not node or node == "master":
        return Target("master", "master")
    if "://" in node:
        return Target("url", node.rstrip("/"))
    if ":" in node and node.rsplit(":", 1)[1].isdigit():     # host:port
        return Target("url", "http://" + node)
    return Target("name", node)


def secondary_urls(master_url: str, names: list[str],
                   given: dict[str, str] | None = None) -> dict[str, str]:
    """The HTTP URL of each secondary of a running cluster. The launcher and the compose file
    both put secondary i (names sorted) at the master's port + i on the master's host; an
    explicit NAME=URL overrides that."""
    given = given or {}
    parsed = urllib.parse.urlsplit(master_url)
    port = parsed.port or 80
    urls = {}
    for i, name in enumerate(sorted(names), start=1):
        urls[name] = given.get(name) or f"{parsed.scheme}://{parsed.hostname}:{port + i}"
    return urls


def pairs(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """NAME=URL options into a dict; ValueError names the bad one."""
    out = {}
    for item in items:
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise ValueError(f"expected NAME=URL, got {item!r}")
        out[name] = url
    return out


def in_order(log: list[str], wanted: list[str]) -> bool:
    """Does `log` hold every one of `wanted` exactly once, in this order?"""
    positions = []
    for text in wanted:
        if log.count(text) != 1:
            return False
        positions.append(log.index(text))
    return positions == sorted(positions)


def short_list(messages: list[Any], keep: int = 6) -> str:
    """A list as printed in the narration: the last few when it is long."""
    if len(messages) <= keep:
        return "[" + ", ".join(map(str, messages)) + "]"
    return f"[... {len(messages) - keep} more, " + ", ".join(map(str, messages[-keep:])) + "]"


# A batch's messages, JSON-encoded, stay under this many bytes: well under the master's
# default --max-body (1 MiB), so that a batch of long lines is not refused as a whole (413).
BATCH_BYTES = 512 * 1024


def batches(lines: list[str], size: int, max_bytes: int = BATCH_BYTES
            ) -> list[tuple[int, list[str]]]:
    """`append -`'s batches, in order: (index of the first line, lines), each at most
    `size` lines and, unless one line alone is longer, at most `max_bytes` of JSON."""
    out: list[tuple[int, list[str]]] = []
    start, current, current_bytes = 0, [], 0
    for i, line in enumerate(lines):
        cost = len(json.dumps(line, ensure_ascii=False).encode()) + 2   # quotes', ", "
        if current and (len(current) >= size or current_bytes + cost > max_bytes):
            out.append((start, current))
            start, current, current_bytes = i, [], 0
        current.append(line)
        current_bytes += cost
    if current:
        out.append((start, current))
    return out


def lines_label(start: int, count: int, index: int | None = None) -> str:
    """Which input line(s) a refused batch names, 1-based: 'line 7' when the server named
    the message (`index`) or the batch had one line, else 'lines 7-9'."""
    if index is not None and 0 <= index < count:
        return f"line {start + index + 1}"
    if count == 1:
        return f"line {start + 1}"
    return f"lines {start + 1}-{start + count}"
