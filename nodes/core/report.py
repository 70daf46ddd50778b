"""The master's GET /health report, from its state machine (pure: `now` is passed in)."""
from __future__ import annotations

from .master import MasterState


def health(state: MasterState, now: float) -> dict:
    q = state.quorum(now)
    last = state.log.last_seq
    blocked = state.failed or state.recovering
    return {
        "role": "master",
        "read_only": not q.ok or blocked is not None,
        "reason": blocked or q.reason(),
        "last_seq": last,
        "durable_seq": state.durable,
        "epoch": state.epoch,
        "waiting": len(state.waits),
        "quorum": {"size": q.size, "needed": q.needed, "available": q.available},
        "secondaries": {
            name: {
                "status": state.status(name, now).value,
                "acked_seq": sec.acked,
                "lag": last - sec.acked,
                "last_answer_age": None if sec.last_answer is None
                else round(now - sec.last_answer, 3),
                "uri": sec.uri,
                "synced": state.synced(name),
                "sent": sec.sent,
                "in_flight": len(sec.calls),
            }
            for name, sec in sorted(state.secondaries.items())
        },
    }
