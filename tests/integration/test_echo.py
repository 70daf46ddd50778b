"""Iteration 0: the echo server and client as real processes."""
import subprocess
import sys

from nodes.launcher import ROOT, Proc, wait_until


def test_echo_round_trip(cluster):
    server = Proc("echo", [sys.executable, "-m", "examples.echo.server", "--ns-port",
                           str(cluster.ns_port)], cluster.workdir / "echo.log", None).start()
    cluster.procs["echo"] = server
    wait_until(lambda: "ready" in server.log_path.read_text(), 15, what="the echo server")
    out = subprocess.run([sys.executable, "-m", "examples.echo.client", "héllo ✓", "--ns-port",
                          str(cluster.ns_port)], cwd=ROOT, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "héllo ✓"
