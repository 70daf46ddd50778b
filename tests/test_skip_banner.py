"""A machine without a Docker engine skips the container tests, and says so loudly at the end
of the run, in one process and on pytest-xdist's workers alike (where the skips happen in a
worker and only their reports reach the process that prints the summary)."""
import os
import subprocess
import sys

import pytest

from nodes.launcher import ROOT


@pytest.mark.parametrize("mode", [["-p", "no:xdist"], ["-n", "2", "--no-loadscope-reorder"]],
                         ids=["one-process", "two-workers"])
def test_the_skipped_container_tests_get_a_banner(mode):
    env = dict(os.environ, DOCKER_HOST="unix:///nonexistent/docker.sock")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *mode,
                          "tests/docker/test_docker_docblocks.py",
                          "tests/swarm/test_swarm_docblocks.py"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:]
    for kind in ("DOCKER", "SWARM"):
        assert f"{kind} TESTS SKIPPED" in out.stdout, out.stdout[-3000:]
    assert "no Docker engine answers" in out.stdout
    assert " passed" not in out.stdout
