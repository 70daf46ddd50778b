"""Where the parts of ``python -m bench`` are registered.

The core parts (ceiling, http, pyro, catchup, memory, diagnostics) fill the main table
and are run by bench/run.py itself. Every other part is a module registered in PARTS
below, and needs nothing else to be run, printed and selectable with ``--only``:

    add_args(parser)             optional: adds the part's own flags to the argparse parser
    run(args, out: dict) -> None measures, and stores its results as out[name] (out is the
                                 report, so it can also read what earlier parts stored)
    render(section) -> str       optional: its text, printed after the main table, given
                                 out[name] (skipped when the part stored nothing there)

Beyond the parsed flags, `args` carries `workdir` (a temporary directory, removed at the
end unless --keep-workdir) and `master_flags` / `secondary_flags` (the --master-flag and
--secondary-flag values as dicts). Registered parts run in PARTS's order, after the core
parts, and print in that order after the main table.

A part module may import the shared modules (common, procs, cluster, driver, report,
render) and case modules, but never bench.run or bench.parts: tests/unit/test_import_graph.py
fails on the cycle that would make. Every registered module is imported at start-up (for
its flags) even when it does not run, so its module-level imports should stay light.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Part:
    name: str               # its name for --only, and its key in the report's JSON
    module: str             # the module to import, e.g. "bench.durable"
    default: bool = True    # run when --only is not given

    def load(self) -> ModuleType:
        # imported by name, so that registering a part is this one line and nothing else
        return importlib.import_module(self.module)


CORE_PARTS = ("ceiling", "http", "pyro", "catchup", "memory")

# Adding a part is one line here, e.g. Part("shell", "bench.shell", default=False).
PARTS = (
    Part("durable", "bench.durable"),
    Part("dashboard", "bench.dashboard"),
    Part("tls", "bench.tls"),
    Part("shell", "bench.shell", default=False),        # the master's shell (issue 18's figures)
    Part("baseline", "bench.baseline", default=False),  # this tree against --baseline REF
    Part("follow", "bench.follow", default=False),      # long-polls, streams, HTTP batches
    Part("security", "bench.security", default=False),  # HTTPS + tokens, hostile clients
    Part("failover", "bench.failover", default=False),  # kill -9/SIGSTOP of the master, cost
    Part("nameserver", "bench.nsdown", default=False),  # the name server down, back empty
)

# diagnostics last: it is never a default, and --help lists the parts in this order
ALL_PARTS = (*CORE_PARTS, *(p.name for p in PARTS), "diagnostics")
DEFAULT_PARTS = (*CORE_PARTS, *(p.name for p in PARTS if p.default))
