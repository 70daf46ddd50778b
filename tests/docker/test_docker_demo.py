"""`replog demo all` on the Docker cluster, with `docker compose`/`docker-compose` as its
process control (stop, kill -9, pause, start of the secondaries' containers)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import COMPOSE_FILE, Cluster

pytestmark = pytest.mark.docker

REPLOG = Path(sys.executable).with_name("replog")


def test_demo_all_on_the_compose_cluster(make_cluster):
    c: Cluster = make_cluster(SECONDARY2_DELAY="0")
    c.wait_statuses({"secondary1": "Healthy", "secondary2": "Healthy"})
    env = {k: v for k, v in c.env.items() if not k.startswith("REPLOG_DEMO")}
    r = subprocess.run([str(REPLOG), "demo", "all", "--master", c.url("master"),
                        "--secondary", f"secondary1={c.url('secondary1')}",
                        "--secondary", f"secondary2={c.url('secondary2')}",
                        "--control", "compose", "--compose-file", str(COMPOSE_FILE),
                        "--compose-project", c.project],
                       capture_output=True, text=True, env=env, timeout=400)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]
    assert "skipped" not in r.stdout and "FAILED" not in r.stdout
    passed = re.search(r"(\d+) of (\d+) steps as expected", r.stdout)
    assert passed and passed.group(1) == passed.group(2) and int(passed.group(1)) >= 25
