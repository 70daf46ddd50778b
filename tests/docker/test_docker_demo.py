"""`replog demo all` on the Docker cluster, with `docker compose`/`docker-compose` as its
process control (stop, kill -9, pause, start of the secondaries' containers): docs/cli.md's
block, run as written (tests/docblocks.py) on a compose project of its own (its name in
COMPOSE_PROJECT_NAME, its host ports from MASTER_PORT... one after the other, as the demo
assumes and the block's `up` gives them; `docker compose` is `docker-compose` where only
Compose 1.29 is installed, as the documents say)."""
from __future__ import annotations

import re

import pytest

from tests import docblocks
from tests.docblocks import Shell, console_steps, substitute
from tests.integration.test_launcher import free_base

from .conftest import PORT_VARS, Cluster, _active

pytestmark = pytest.mark.docker


def test_demo_all_on_the_compose_cluster(image, compose_cmd, tmp_path):
    c = Cluster(compose_cmd, {}, tmp_path / "docker-logs")
    base = free_base(4)
    c.ports = {node: base + i for i, node in enumerate(PORT_VARS)}
    c.env.update({PORT_VARS[n]: str(p) for n, p in c.ports.items()})
    c.env["COMPOSE_PROJECT_NAME"] = c.project
    _active.append(c)
    shell = Shell(docblocks.ROOT, c.env, transcript=tmp_path / "transcript.txt")
    try:
        up, demo = console_steps(docblocks.block("cli-demo-compose"))
        shell.check(up.command, timeout=240)
        c.wait_http("master")
        rc, out = shell.run(substitute(demo.command, {5000: base}), timeout=400)
        assert rc == 0, out[-5000:]
        assert "skipped" not in out and "FAILED" not in out
        passed = re.search(r"(\d+) of (\d+) steps as expected", out)
        assert passed and passed.group(1) == passed.group(2) and int(passed.group(1)) >= 25
    finally:
        shell.close()
        _active.remove(c)
        c.down()
