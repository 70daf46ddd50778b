import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


CONTAINERS = ("tests/docker/", "tests/swarm/")


def _lane(nodeid: str) -> str:
    """The unit of work a worker takes whole: every test on containers is one (one image
    build, one Docker engine, one swarm, run in order), every other module one of its own
    (its module-scoped clusters start once)."""
    path = nodeid.split("::")[0]
    return "containers" if path.startswith(CONTAINERS) else path


@pytest.hookimpl(optionalhook=True)     # (a hook of xdist's: unknown without it)
def pytest_xdist_make_scheduler(config, log):
    """scripts/test.sh runs the suite on two pytest-xdist workers. xdist's own grouping
    (--dist loadgroup) does nothing under pytest 9 (it renames item._nodeid, which pytest 9 no
    longer reads), so the units are chosen here, from the test ids: one worker takes the tests
    on containers, first, since they are the longest lane, and the other works through the
    rest module by module meanwhile."""
    from xdist.scheduler import LoadScopeScheduling

    class Lanes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _lane(nodeid)

    return Lanes(config, log)


def pytest_collection_modifyitems(config, items):
    """The tests on containers first (in their order), so that a worker starts on them at
    once; the rest keep their order."""
    items.sort(key=lambda item: 0 if _lane(item.nodeid) == "containers" else 1)


# The start of the skip reason of every Docker and Swarm test on a machine whose Docker engine
# does not answer (tests/docker/conftest.py, tests/swarm/conftest.py).
NO_ENGINE = "no Docker engine answers"


def pytest_terminal_summary(terminalreporter):
    """A loud banner when the container tests were skipped for want of an engine. Read from
    the skip reports, here: under pytest-xdist the skips happen in a worker, and only their
    reports reach the process that prints the summary."""
    reasons = {}
    for r in terminalreporter.stats.get("skipped", []):
        why = str(r.longrepr[2]) if isinstance(r.longrepr, tuple) else ""
        if NO_ENGINE in why:
            kind = "SWARM" if "marked swarm" in why else "DOCKER"
            reasons.setdefault(kind, why.removeprefix("Skipped: "))
    for kind, why in sorted(reasons.items()):
        terminalreporter.section(f"{kind} TESTS SKIPPED", sep="!", red=True, bold=True)
        terminalreporter.line(why, red=True, bold=True)
