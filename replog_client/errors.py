"""The exceptions of replog_client: one base class, one subclass per way a call can fail.

Every one carries the server's own message (``message``), the HTTP status when there was an
answer (``status``), the decoded body (``body``) and the node that answered (``url``).
"""
from __future__ import annotations

from typing import Any


class ReplogError(Exception):
    """Base class: any call that did not do what was asked."""

    def __init__(self, message: str, status: int | None = None, body: Any = None,
                 url: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body
        self.url = url


class Unavailable(ReplogError):
    """No node answered (refused, reset, timed out) on any URL, after every retry."""


class ReadOnly(ReplogError):
    """503: the master refuses appends (no quorum, recovering, or a master being elected),
    and it still did after every retry. Nothing was appended."""


class WriteConcernTimeout(ReplogError):
    """504: the write concern was not met within ``timeout``. The message IS in the log
    (at ``seq``) and keeps replicating; ``acks`` nodes held it when the answer left."""

    def __init__(self, message: str, status: int | None = None, body: Any = None,
                 url: str | None = None) -> None:
        super().__init__(message, status, body, url)
        data = body if isinstance(body, dict) else {}
        self.seq: int | None = data.get("seq")
        self.first_seq: int | None = data.get("first_seq", self.seq)
        self.acks: int | None = data.get("acks")
        self.w: int | None = data.get("w")


class BadRequest(ReplogError):
    """A 4xx answer (400 malformed, 413 too large, 404, 405, ...): the request itself is
    wrong and retrying it cannot help. Nothing was appended. For a batch, ``index`` is the
    0-based position of the refused message when the server named one."""

    def __init__(self, message: str, status: int | None = None, body: Any = None,
                 url: str | None = None) -> None:
        super().__init__(message, status, body, url)
        data = body if isinstance(body, dict) else {}
        index = data.get("index")
        self.index: int | None = index if isinstance(index, int) else None
