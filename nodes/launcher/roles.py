"""Who is master of a failover cluster (--failover), as the launcher sees it: every node's
GET /health carries a "failover" object (node, role, epoch, master, writable, ...); the
launcher reads them and says what changed: the master lost, a new one elected (and how long
after), a node back as a secondary. Pure: the caller fetches the objects and logs the lines
(nodes/launcher/supervisor.py); tests/unit/test_launcher_roles.py feeds it by hand."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Roles:
    master: str | None = None             # the master the launcher last saw
    epoch: int = 0                        # ... and its epoch
    lost: str | None = None               # the master the launcher saw go last
    lost_at: float | None = None          # ... when (None once a new one is elected)
    views: dict[str, dict | None] = field(default_factory=dict)   # last failover objects
    elections: list[dict] = field(default_factory=list)           # every change of master
    returning: set[str] = field(default_factory=set)   # gone since seen; "back" not said yet

    @staticmethod
    def master_of(views: dict[str, dict | None]) -> tuple[str | None, int]:
        """The node that says it is master in the highest epoch any answer names (a deposed
        master still claiming a lower epoch loses to it), and that epoch; (None, epoch)
        while no node of the highest epoch claims it."""
        answers = [v for v in views.values() if v]
        if not answers:
            return None, 0
        top = max(int(v.get("epoch", 0)) for v in answers)
        masters = [v["node"] for v in answers
                   if v.get("role") == "master" and int(v.get("epoch", 0)) == top]
        return (masters[0] if masters else None), top

    def update(self, views: dict[str, dict | None], now: float) -> list[str]:
        """Take one look (name -> failover object, None for a node that did not answer);
        returns what changed since the last look, one line each."""
        lines: list[str] = []
        master, epoch = self.master_of(views)
        if self.master is not None and master != self.master:
            old = views.get(self.master)
            how = ("does not answer (down or paused)" if old is None else
                   f"still says master of epoch {old.get('epoch')}, but epoch {epoch} began"
                   if old.get("role") == "master" else
                   f"is a {old.get('role')} of epoch {old.get('epoch')} now")
            lines.append(f"master lost: {self.master} (master of epoch {self.epoch}) {how}; "
                         + ("an election is under way" if master is None else
                            f"{master} took over"))
            self.lost, self.lost_at = self.master, now
        if master is not None and master != self.master:
            seconds = None if self.lost_at is None else round(now - self.lost_at, 3)
            self.elections.append({"master": master, "epoch": epoch, "previous": self.lost,
                                   "seconds": seconds})
            stood = (views[master] or {}).get("elections_stood", "?")
            if self.lost is None:
                lines.append(f"election: {master} is master of epoch {epoch}")
            else:
                lines.append(f"election: {master} is master of epoch {epoch}, seen "
                             f"{seconds:.2f} s after the launcher saw {self.lost} go "
                             f"({master} stood {stood} time(s) so far)")
            self.lost_at = None
        for name, v in views.items():
            if v is None:
                if name in self.views:           # seen before, gone now: say when it is back
                    self.returning.add(name)
            elif name in self.returning and name != master and v.get("master"):
                self.returning.discard(name)     # back, and it heard from a master
                lines.append(f"{name} is back: a {v.get('role')} of epoch {v.get('epoch')}, "
                             f"following {v['master']}")
            elif name == master:
                self.returning.discard(name)
        self.master = master
        if master is not None:
            self.epoch = epoch
        self.views = dict(views)
        return lines

    def role_of(self, name: str) -> str:
        """'master (epoch N)', 'secondary', 'down' for the launcher's table and log."""
        v = self.views.get(name)
        if v is None:
            return "no answer"
        if v.get("node") == self.master and v.get("role") == "master":
            return f"MASTER (epoch {v.get('epoch')})"
        return str(v.get("role"))

    def summary(self, names: list[str]) -> str:
        return ", ".join(f"{n}: {self.role_of(n)}" for n in names)


def failover_of(report: Any) -> dict | None:
    """The "failover" object of a /health body, None when there is none."""
    if isinstance(report, dict) and isinstance(report.get("failover"), dict):
        return report["failover"]
    return None
