"""Following the log: held GET /messages?wait= requests and /messages/stream wait here.

A node calls `Notifier.advance(seq)` (under its own lock) where what it shows grows: the
master where its durable seq advances (group commit; on append for an in-memory log), a
secondary where its gap-free prefix does. Waiters block on an Event with a timeout: in a
node process (gevent-patched) that is a greenlet parked on the event loop, no thread and no
polling.

Waiters register the seq they need; all waiters of one seq share one Event, set once when
the node reaches it. So an advance costs one comparison when nobody waits for it (nobody at
all, or only for later seqs), and a waiter wakes once per advance that reaches it, never
once per message: appends that land while it sends are picked up by its next look.

Always take the event *before* looking at the node (`wait_for` does): an advance between
the look and the wait then still sets it.
"""
from __future__ import annotations

import heapq
import json
import threading
import time
from typing import Callable, Iterator, Protocol

KEEPALIVE = 15.0      # seconds of silence before a stream sends a comment line
STREAM_CHUNK = 1_000  # events written at once by a stream that is behind
# About what one stream's wake costs the node (snapshot, encode, write), rounded up. After
# each write a stream waits streams x STREAM_COST before it looks again (1,000 streams: 0.1 s),
# so that streams at the tail share the node's CPU with the writers however fast appends
# come. Without it 1,000 streams woke once per append each and w=1 appends fell to 1% of
# their rate; with it they keep about half (bench --only follow), and a stream's delay is
# about this wait (one stream alone: none).
STREAM_COST = 100e-6
STREAM_LINGER_MAX = 0.25
ENCODED_MAX = 20_000  # events kept encoded for every stream to share (the newest)


class Notifier:
    def __init__(self) -> None:
        self.closed = False
        self.streams = 0                       # open streams (see STREAM_COST)
        self._encoded: tuple[list[str] | None, dict[int, str]] = (None, {})
        self._lock = threading.Lock()
        self._wants: dict[int, list] = {}      # seq -> [Event, waiters]
        self._heap: list[int] = []             # the seqs in _wants (and some stale ones)

    def advance(self, seq: int) -> None:
        """The node shows entries up to seq: wake whoever waits for seq or less."""
        heap = self._heap
        if not heap or heap[0] > seq:        # the append path's whole cost, mostly
            return
        woken = []
        with self._lock:
            heap = self._heap
            while heap and heap[0] <= seq:
                entry = self._wants.pop(heapq.heappop(heap), None)
                if entry is not None:
                    woken.append(entry[0])
        for event in woken:
            event.set()

    def event(self, seq: int) -> threading.Event:
        """The event set once the node shows seq (or stops); give it back with done()."""
        with self._lock:
            entry = self._wants.get(seq)
            if entry is None:
                event = threading.Event()
                if self.closed:
                    event.set()
                    return event
                entry = self._wants[seq] = [event, 0]
                heapq.heappush(self._heap, seq)
            entry[1] += 1
            return entry[0]

    def done(self, seq: int, event: threading.Event) -> None:
        """A waiter for seq stopped waiting (answered or timed out): forget a seq nobody
        waits for any more, so that far-off seqs asked once do not pile up."""
        with self._lock:
            entry = self._wants.get(seq)
            if entry is None or entry[0] is not event:
                return                      # set already (and maybe asked for again)
            entry[1] -= 1
            if entry[1] <= 0:
                del self._wants[seq]
                if len(self._heap) > 2 * len(self._wants) + 64:
                    self._heap = list(self._wants)
                    heapq.heapify(self._heap)

    def close(self) -> None:
        """The node stops: wake every waiter, and let no one wait any more."""
        with self._lock:
            self.closed = True
            events = [entry[0] for entry in self._wants.values()]
            self._wants.clear()
            self._heap = []
        for event in events:
            event.set()

    def encoded(self, entries: list[str]) -> dict[int, str]:
        """seq -> its event text, shared by every stream of this entry list: each message is
        encoded once, not once per stream. A new list (a secondary's log cut by a sync, which
        makes one) starts an empty cache, so a cut seq is never sent with its old text."""
        owner, cache = self._encoded
        if owner is not entries:
            cache = {}
            self._encoded = (entries, cache)
        elif len(cache) > ENCODED_MAX:
            newest = max(cache)
            cache = {seq: text for seq, text in cache.items() if seq > newest - ENCODED_MAX // 2}
            self._encoded = (entries, cache)
        return cache

    @property
    def waiting(self) -> int:
        """How many waiters are parked now (for tests and /health-like reports)."""
        with self._lock:
            return sum(entry[1] for entry in self._wants.values())


class Followed(Protocol):
    follow: Notifier

    def snapshot(self) -> tuple[list[str], int]: ...


def wait_for(node: Followed, first: int, timeout: float,
             clock: Callable[[], float] = time.monotonic) -> tuple[list[str], int]:
    """(entries, count) from node.snapshot() once count >= first, or when `timeout` seconds
    passed or the node stops (then count may be less)."""
    follow = node.follow
    deadline = clock() + timeout
    while True:
        event = follow.event(first)
        try:
            entries, count = node.snapshot()
            left = deadline - clock()
            if count >= first or left <= 0 or follow.closed:
                return entries, count
            event.wait(left)
        finally:
            follow.done(first, event)


def events(entries: list[str], first: int, last: int, cache: dict[int, str] | None = None) -> str:
    """Server-Sent Events for seqs first..last: `id: SEQ` and the message as a JSON string
    (one line: JSON escapes every line break). cache: seq -> text, see Notifier.encoded."""
    if cache is None:
        cache = {}
    out = []
    for seq in range(first, last + 1):
        text = cache.get(seq)
        if text is None:
            text = cache[seq] = (f"id: {seq}\ndata: "
                                 f"{json.dumps(entries[seq - 1], ensure_ascii=False)}\n\n")
        out.append(text)
    return "".join(out)


def stream(node: Followed, first: int, keepalive: float = KEEPALIVE,
           chunk: int = STREAM_CHUNK, pause: Callable[[float], None] = lambda s: None,
           cost: float = STREAM_COST) -> Iterator[str]:
    """The text of GET /messages/stream from seq `first` on, until the node stops. A comment
    first (so a client sees the stream open at once), then every message as an event,
    `: keep-alive` after `keepalive` seconds of silence. pause(seconds) runs after each
    write: the web layer yields to the event loop there, for longer the more streams are
    open (see STREAM_COST); messages that land meanwhile go in the next write."""
    follow = node.follow
    follow.streams += 1
    try:
        yield f": from seq {first}\n\n"
        while not follow.closed:
            entries, count = wait_for(node, first, keepalive)
            if count < first:
                if not follow.closed:
                    yield ": keep-alive\n\n"
                continue
            last = min(count, first + chunk - 1)
            yield events(entries, first, last, follow.encoded(entries))
            first = last + 1
            pause(min(STREAM_LINGER_MAX, (follow.streams - 1) * cost))
    finally:
        follow.streams -= 1
