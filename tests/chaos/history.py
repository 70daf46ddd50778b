"""Operation records of a chaos run.

Everything the checker looks at is in one :class:`History`:

* :class:`Op` - one ``POST /messages`` as a client saw it: what was sent, when it was invoked
  and completed (seconds since the start of the run, monotonic clock) and how it ended.
* :class:`ReplicaSample` - right after an acknowledged write, how many gap-free messages each
  secondary reported on ``GET /health`` (used for the write-concern check).
* list samples - ``GET /messages`` of every node taken periodically during the run. They are
  stored as deltas against the previous sample of the same node (``base`` items kept, ``tail``
  appended) so a long run does not keep thousands of copies of a growing list.
* :class:`FaultEvent` - every fault the nemesis applied or removed (to a secondary or to the
  master), with its time.
* :class:`FinalState` - lists and health of every node once the cluster has converged.

Recording is thread-safe; the checker reads the history after all threads have stopped.
A history can be written to and read from JSON, so a failed run can be re-checked offline.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

# Outcomes of an operation.
OK = "ok"  # 201: acknowledged by w nodes
READ_ONLY = "read_only"  # 503: the master refused the write (no quorum)
TIMEOUT = "timeout"  # 504: accepted (seq assigned) but write concern not met in time
ERROR = "error"  # any other HTTP answer (4xx, 500, ...)
INDETERMINATE = "indeterminate"  # no answer after the request may have gone out: a read
#                                  timeout, a connection reset or closed mid-request (the
#                                  master may or may not have appended the message)
UNAVAILABLE = "unavailable"  # no connection (refused, connect timeout): nothing was sent, so
#                              nothing can have been appended (the master is down)
OUTCOMES = (OK, READ_ONLY, TIMEOUT, ERROR, INDETERMINATE, UNAVAILABLE)

MASTER = "master"


@dataclass
class Op:
    id: int
    client: str
    message: str
    w: int
    timeout: float | None  # the "timeout" sent in the body (None: not sent)
    invoke: float
    key: str | None = None  # idempotency key sent as "id" (None: not sent)
    complete: float | None = None
    outcome: str | None = None
    status: int | None = None
    seq: int | None = None
    acks: int | None = None
    resp_w: int | None = None
    error: str | None = None

    def describe(self) -> str:
        parts = [f"op#{self.id} {self.client} {self.message!r} w={self.w}"]
        if self.timeout is not None:
            parts.append(f"timeout={self.timeout:g}")
        if self.key is not None:
            parts.append(f"id={self.key}")
        end = "?" if self.complete is None else f"{self.complete:.3f}"
        parts.append(f"[{self.invoke:.3f} .. {end}]")
        parts.append(f"-> {self.outcome}")
        if self.status is not None:
            parts.append(str(self.status))
        if self.seq is not None:
            parts.append(f"seq={self.seq}")
        if self.acks is not None:
            parts.append(f"acks={self.acks}")
        if self.error:
            parts.append(f"({self.error})")
        return " ".join(parts)


@dataclass
class ReplicaSample:
    """A secondary's gap-free message count shortly after op ``op_id`` was acknowledged."""

    op_id: int
    node: str
    t: float  # when the answer arrived (or the attempt failed)
    count: int | None  # None: the node did not answer

    def describe(self) -> str:
        c = "no answer" if self.count is None else f"messages={self.count}"
        return f"sample after op#{self.op_id}: {self.node} {c} at {self.t:.3f}"


@dataclass
class FaultEvent:
    t: float
    action: str  # kill, restart, pause, resume, faults, heal
    target: str
    params: dict = field(default_factory=dict)
    ok: bool = True
    error: str | None = None
    took: float = 0.0  # how long the action itself took (a restart waits for the process)

    def describe(self) -> str:
        p = " ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        s = f"{self.t:8.3f} {self.action:<7} {self.target} {p}".rstrip()
        if self.took >= 0.05:
            s += f"  (took {self.took:.2f}s)"
        if not self.ok:
            s += f"  FAILED: {self.error}"
        return s


@dataclass
class ListSampleRec:
    """One ``GET /messages`` answer: previous sample's first ``base`` items + ``tail``."""

    node: str
    t: float
    base: int
    tail: list[str]


@dataclass
class FinalState:
    converged: bool = False
    converge_time: float | None = None  # seconds from "faults healed" to "converged"
    lists: dict[str, list[str] | None] = field(default_factory=dict)  # node -> messages
    health: dict | None = None  # the master's /health at the end
    errors: list[str] = field(default_factory=list)


def _common_prefix(a: list[str], b: list[str]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


class History:
    def __init__(self, seed: int | None = None, secondaries: list[str] | None = None,
                 meta: dict | None = None, clock=time.monotonic):
        self.seed = seed
        self.secondaries = list(secondaries or [])
        self.meta: dict[str, Any] = dict(meta or {})
        self._clock = clock
        self._t0 = clock()
        self._lock = threading.Lock()
        self.ops: list[Op] = []
        self.replica_samples: list[ReplicaSample] = []
        self.faults: list[FaultEvent] = []
        self.list_samples: list[ListSampleRec] = []
        self._last_list: dict[str, list[str]] = {}
        self.final = FinalState()
        self.notes: list[str] = []

    # -- clock -------------------------------------------------------------------------------
    def now(self) -> float:
        return self._clock() - self._t0

    @property
    def nodes(self) -> list[str]:
        return [MASTER] + self.secondaries

    # -- recording ---------------------------------------------------------------------------
    def invoke(self, client: str, message: str, w: int, timeout: float | None = None,
               key: str | None = None) -> Op:
        with self._lock:
            op = Op(id=len(self.ops), client=client, message=message, w=w, timeout=timeout,
                    key=key, invoke=self.now())
            self.ops.append(op)
            return op

    def complete(self, op: Op, outcome: str, status: int | None = None, seq: int | None = None,
                 acks: int | None = None, resp_w: int | None = None,
                 error: str | None = None) -> Op:
        assert outcome in OUTCOMES, outcome
        t = self.now()
        with self._lock:
            op.complete = t
            op.outcome = outcome
            op.status = status
            op.seq = seq
            op.acks = acks
            op.resp_w = resp_w
            op.error = error
        return op

    def replica_sample(self, op_id: int, node: str, count: int | None) -> None:
        s = ReplicaSample(op_id=op_id, node=node, t=self.now(), count=count)
        with self._lock:
            self.replica_samples.append(s)

    def fault(self, action: str, target: str, params: dict | None = None, ok: bool = True,
              error: str | None = None, t: float | None = None, took: float = 0.0) -> FaultEvent:
        """Record a fault action; ``t`` is when it began (default: now)."""
        ev = FaultEvent(t=self.now() if t is None else t, action=action, target=target,
                        params=dict(params or {}), ok=ok, error=error, took=took)
        with self._lock:
            self.faults.append(ev)
        return ev

    def list_sample(self, node: str, messages: list[str], t: float | None = None) -> None:
        t = self.now() if t is None else t
        with self._lock:
            prev = self._last_list.get(node, [])
            base = _common_prefix(prev, messages)
            self.list_samples.append(ListSampleRec(node, t, base, list(messages[base:])))
            self._last_list[node] = list(messages)

    def note(self, text: str) -> None:
        with self._lock:
            self.notes.append(f"{self.now():8.3f} {text}")

    # -- reading -----------------------------------------------------------------------------
    def iter_list_samples(self) -> Iterator[tuple[str, float, list[str]]]:
        """Yield (node, t, full list) for every list sample, in recording order."""
        cur: dict[str, list[str]] = {}
        for rec in self.list_samples:
            lst = cur.get(rec.node, [])
            lst = lst[:rec.base] + rec.tail
            cur[rec.node] = lst
            yield rec.node, rec.t, lst

    def ops_by_message(self) -> dict[str, list[Op]]:
        out: dict[str, list[Op]] = {}
        for op in self.ops:
            out.setdefault(op.message, []).append(op)
        return out

    def faults_between(self, t1: float, t2: float, target: str | None = None) -> list[FaultEvent]:
        return [f for f in self.faults if t1 <= f.t <= t2 and (target is None or f.target == target)]

    def outcome_counts(self) -> dict[str, int]:
        counts = {o: 0 for o in OUTCOMES}
        for op in self.ops:
            counts[op.outcome or "unfinished"] = counts.get(op.outcome or "unfinished", 0) + 1
        return counts

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            "secondaries": self.secondaries,
            "meta": self.meta,
            "ops": [asdict(o) for o in self.ops],
            "replica_samples": [asdict(s) for s in self.replica_samples],
            "faults": [asdict(f) for f in self.faults],
            "list_samples": [asdict(s) for s in self.list_samples],
            "final": asdict(self.final),
            "notes": self.notes,
        }

    def save(self, path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        h = cls(seed=d.get("seed"), secondaries=d.get("secondaries"), meta=d.get("meta"))
        h.ops = [Op(**o) for o in d.get("ops", [])]
        h.replica_samples = [ReplicaSample(**s) for s in d.get("replica_samples", [])]
        h.faults = [FaultEvent(**f) for f in d.get("faults", [])]
        h.list_samples = [ListSampleRec(**s) for s in d.get("list_samples", [])]
        h.final = FinalState(**d.get("final", {}))
        h.notes = list(d.get("notes", []))
        return h

    @classmethod
    def load(cls, path) -> "History":
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))
