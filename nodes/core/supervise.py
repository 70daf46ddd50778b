"""The launcher's decisions about a node process, in plain Python (no processes here).

- when a node that exited is started again (`--restart always`), with a delay that doubles
  while the node keeps dying soon after its start (a crash loop) and resets once it lived;
- how an exit status and a /proc state read to a person."""
from __future__ import annotations

import signal

POLICIES = ("no", "always")


class Restarts:
    """Restart decisions for one node.

    after_exit(lived) -> seconds to wait before starting it again, or None (leave it down).
    A node that lived less than `stable_after` seconds doubles the delay (up to max_delay);
    one that lived longer starts again after the base delay."""

    def __init__(self, policy: str, delay: float, max_delay: float = 30.0,
                 stable_after: float = 10.0) -> None:
        if policy not in POLICIES:
            raise ValueError(f"restart policy must be one of {POLICIES}, got {policy!r}")
        if delay < 0:
            raise ValueError("restart delay must be >= 0")
        self.policy = policy
        self.base = delay
        self.max_delay = max(max_delay, delay)
        self.stable_after = stable_after
        self._next = delay

    def after_exit(self, lived: float) -> float | None:
        if self.policy == "no":
            return None
        if lived >= self.stable_after:
            self._next = self.base
        delay = self._next
        self._next = min(self.max_delay, max(self._next * 2, 0.5))
        return delay


def describe_exit(returncode: int) -> str:
    """'killed by SIGKILL' for -9, 'exited with status 1' for 1."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


def is_paused(state: str | None) -> bool:
    """The state letter of /proc/PID/stat: T (stopped by a signal) or t (tracing stop)."""
    return state in ("T", "t")
