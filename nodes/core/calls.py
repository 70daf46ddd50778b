"""What the master's state machine hands the shell: an append's outcome, and the calls to
make to a secondary (a Batch of entries or a Sync), with the pipelining rule."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Appended:
    seq: int
    created: bool     # False when an idempotency key matched an earlier append
    acks: int         # nodes holding it right now
    wait_id: int | None  # set when the caller must wait for its write concern


@dataclass(frozen=True)
class Batch:
    first_seq: int
    messages: list[str]
    call: int         # the id the answer (or failure) is reported with


@dataclass(frozen=True)
class Sync:
    """The secondary follows another log or epoch: it must sync before it is sent entries."""
    log_id: str
    history: list[list[int]]
    last_seq: int
    call: int


@dataclass(frozen=True)
class Pipeline:
    """Replicate calls out to one secondary at once. A further call goes out only once the
    newest one has been out `after` seconds: a fast secondary answers first, so its batches
    stay large, and a slow one gets a call every `after` at most, each carrying what arrived
    meanwhile. At most `window` calls and `max_messages` entries are out (a secondary holds
    back at most its --max-ahead past its ACK). A restart learned while calls are out (a
    heartbeat met the new process first) does not send their entries again at once: they may
    be landing on the new process (its first call waits for a new connection's handshake);
    only after `grace` with a call still out does it go again (that call may hang on the old
    address until its time-out)."""
    window: int = 16
    after: float = 0.05
    grace: float = 1.0
    max_messages: int = 10_000
