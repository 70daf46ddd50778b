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


CONTAINERS = "containers"


def pytest_collection_modifyitems(config, items):
    """scripts/test.sh runs the suite on two pytest-xdist workers (`-n 2 --dist loadgroup
    --no-loadscope-reorder`): a worker takes a whole group at a time. The tests on containers
    (marked docker, the swarm ones included) are one group, run in order by one worker and
    scheduled first, since they are the longest lane (one image build, one Docker engine, one
    swarm); every other module is a group of its own (its module-scoped clusters start once),
    which the other worker works through meanwhile. Without xdist the marks do nothing."""
    for item in items:
        group = CONTAINERS if item.get_closest_marker("docker") else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: 0 if item.get_closest_marker("docker") else 1)
