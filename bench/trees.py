"""Other trees of this repository for the benchmark: a git ref checked out in a temporary
worktree, nodes started with their working directory there, and clean-up of node processes
an interrupt left behind. Used by bench/baseline.py and bench/shell.py (--shell-ref)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .common import REPO, log


def git(*argv: str, check: bool = True) -> str:
    out = subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
    if check and out.returncode != 0:
        raise RuntimeError(f"git {' '.join(argv)}: {out.stderr.strip()}")
    return out.stdout.strip()


@contextmanager
def worktree(ref: str):
    """A detached worktree of ref in a temporary directory; removed on the way out."""
    sha = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    path = Path(tempfile.mkdtemp(prefix="replog-baseline-"))
    added = False
    try:
        git("worktree", "add", "--detach", str(path), sha)
        added = True
        yield path, sha
    finally:
        if added:
            git("worktree", "remove", "--force", str(path), check=False)
        shutil.rmtree(path, ignore_errors=True)
        git("worktree", "prune", check=False)     # whatever a failed remove left registered
        log(f"baseline: worktree {path} removed")


def check_imports_from(root: Path) -> str:
    """Where a node started in root imports the nodes package from (it must be root): the
    editable install of this tree must not win over the working directory."""
    out = subprocess.run([sys.executable, "-c", "import nodes; print(nodes.__file__)"],
                         cwd=root, capture_output=True, text=True, timeout=60)
    where = out.stdout.strip()
    if out.returncode != 0 or not Path(where).resolve().is_relative_to(root.resolve()):
        raise RuntimeError(f"a node started in {root} imports nodes from {where!r} "
                           f"{out.stderr[-500:]}")
    return where


@contextmanager
def rooted_at(root: Path):
    """Start LocalCluster's nodes with their working directory at root (bench.run's Cluster
    and cases build their LocalCluster themselves, and its processes start in
    nodes.launcher.procs.ROOT, read at every start and restart)."""
    import nodes.launcher.procs as procs     # where a node process is started (cwd=ROOT)

    if not hasattr(procs, "ROOT"):
        raise RuntimeError("nodes.launcher.procs.ROOT is gone: cannot start another tree's nodes")
    old = procs.ROOT, procs.NEGATE_SWITCHES
    # an older tree may not know --no-failover and its kin: off switches are left out there
    procs.ROOT, procs.NEGATE_SWITCHES = root, root.resolve() == REPO.resolve()
    try:
        yield
    finally:
        procs.ROOT, procs.NEGATE_SWITCHES = old


def node_cwd(pid: int | None) -> str | None:
    import psutil

    try:
        return psutil.Process(pid).cwd() if pid else None
    except psutil.Error:
        return None


def reap_nodes() -> list[int]:
    """Kill -9, by pid, the node processes this process started and left running: an
    interrupt (Ctrl-C, SIGTERM) inside bench.run.Cluster.__init__, e.g. in a catch-up trial,
    leaves the nodes started so far with nobody to close them. Only our own descendants
    that run `-m nodes.*` or `-m nameserver`; returns their pids."""
    import psutil

    killed = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = p.cmdline()
            module = cmd[cmd.index("-m") + 1] if "-m" in cmd[:-1] else ""
            if module.split(".")[0] in ("nodes", "nameserver"):
                p.kill()
                killed.append(p.pid)
        except (psutil.Error, ValueError):
            continue
    if killed:
        log(f"killed node processes left running: {killed}")
    return killed
