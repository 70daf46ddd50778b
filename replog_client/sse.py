"""A pure Server-Sent Events parser (the WHATWG rules replog's stream needs): bytes in,
events out, no I/O, so a stream cut at any byte is parsed the same."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    """One dispatched event: its ``id`` field (None if it had none), its ``data`` lines
    joined by newlines, its ``event`` type (default "message")."""
    id: str | None
    data: str
    event: str = "message"


@dataclass
class Parser:
    """Feed it the stream's bytes as they arrive; ``feed`` returns the events completed by
    them. Comments (``: keep-alive``) and unknown fields are ignored, an ``id`` holds for
    later events until another one comes, and a block without ``data`` dispatches nothing,
    as the spec says."""
    _buffer: bytes = b""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None
    _event: str = ""
    _has_fields: bool = False

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse ``chunk`` (any part of the stream) and return the events it completed."""
        buffer = self._buffer + chunk
        held = b"\r" if buffer.endswith(b"\r") else b""   # may be the first half of CRLF
        if held:
            buffer = buffer[:-1]
        lines = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        self._buffer = lines.pop() + held                # the unfinished last line
        events: list[Event] = []
        for line in lines:
            event = self._line(line.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> Event | None:
        if line == "":                          # a blank line dispatches
            if not self._has_fields:             # no data line: nothing to dispatch
                self._event = ""
                return None
            event = Event(self._id, "\n".join(self._data), self._event or "message")
            self._data, self._event, self._has_fields = [], "", False
            return event
        if line.startswith(":"):                # a comment: keep-alive
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_fields = True
        elif name == "id" and "\0" not in value:
            self._id = value                    # kept for the next events too
        elif name == "event":
            self._event = value
        return None

